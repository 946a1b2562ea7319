"""The kernel layer: one module per micro-kernel (matcher, tile choice, body), see base.py.

    portable    tile + vectorize (transform dialect), any CPU             stage tensors
    bf16_dot    AVX512_BF16 vdpbf16ps, bf16 NT matmuls                    stage tensors
    int8_vnni   AVX512_VNNI vpdpbusd, i8 x i8 -> i32 matmuls              stage buffers
    int8_block_dot  AVX512_VNNI vpdpbusd, block-scaled W8A8 (Q8_0)         stage buffers
    int8_block_avx2  AVX2 vpmaddwd / vpmaddubsw, the same without VNNI     stage buffers
    dequant_gemm  weight-only int8/int4 matmuls, dequantized in registers stage buffers
    row_reduce  last-dimension reductions in 16 lanes, vectorized          stage tensors

Kernels build on `qmlir.ir` only; the passes qmlir-select-kernels and qmlir-expand-kernels
(qmlir/passes) choose and expand them.
"""
from qmlir.kernels import (bf16_dot, dequant_gemm, int8_block_avx2, int8_block_dot, int8_vnni, portable,
                           row_reduce)  # noqa: F401  (each registers its kernel)
from qmlir.kernels.base import (KERNEL_ATTR, STAGES, Kernel, all_kernels, kernel_named, record,  # noqa: F401
                                recorded)
