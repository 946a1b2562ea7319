"""The stages of qmlir's pipelines, as data: each function returns pipeline element texts that
`Pipeline.parse` reads. A Target (qmlir/target) fills in their options and runs them.

    quant_semantics()  target-independent, first in every pipeline of every door: matmuls of
                       dequantized i8 operands become i8 x i8 -> i32 matmuls, then quant casts
                       lower with round-half-even and saturation (qmlir-lower-quant)
    cpu_stages()       kernel selection -> bufferize (results as out-parameters) -> buffer
                       kernels -> loops -> outlining -> libgomp threads -> LLVM dialect
    cuda_stages()      bufferize -> device buffers -> one gpu.launch per linalg op -> kernel
                       outlining and dedupe -> NVVM -> PTX/cubin
"""
from __future__ import annotations

from typing import List, Sequence

from qmlir.passes import registry

PREPARE = "func.func(canonicalize,cse,canonicalize)"

BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    # written-in-place arguments are not results: nothing copies them into out-parameters
    "qmlir-drop-mutated-results,"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1}"
)


def quant_semantics() -> List[str]:
    """One quantization semantics: fuse first (integer multiply-accumulate), then lower what is
    left of the quant casts. Both are no-ops on a module without quant ops."""
    return ["qmlir-fuse-quantized-matmul{strict=false}", "qmlir-lower-quant"]


def cpu_stages(features: Sequence[str], threads: int, gomp: bool = True) -> List[str]:
    """linalg on tensors -> LLVM dialect for a CPU with `features` (kernel ISA) and `threads`
    workers; `gomp`: threaded loops run on libgomp's team (else on MLIR's async runtime)."""
    return quant_semantics() + [
        "qmlir-protect-arguments",
        "qmlir-polynomial-exp",  # no libm call per element: softmax and SiLU loops vectorize
        PREPARE,
        "qmlir-fold-dequant-into-matmul",
        "qmlir-fold-transpose-into-matmul",
        PREPARE,  # drops the transposes' now-unused destinations
        f"qmlir-select-kernels{{features={','.join(sorted(features))} threads={threads}}}",
        "qmlir-expand-kernels{stage=tensors}",
        # No linalg-fuse-elementwise-ops: before tiling its reshape folding turns named matmuls
        # into generics that are no longer tiled; after tiling it recomputes producers
        # (softmax's exp) and made SmolLM2 at 256 tokens 1.5x slower. Fusion needs a cost model.
        "qmlir-distinct-results",
        BUFFERIZE,
        "func.func(buffer-hoisting,promote-buffers-to-stack{max-alloc-size-in-bytes=4096})",
        "buffer-deallocation-pipeline,convert-bufferization-to-memref",
        "qmlir-expand-kernels{stage=buffers}",
        "func.func(convert-linalg-to-loops),convert-vector-to-scf",
        "qmlir-outline-loops",
        # scf.forall loops (the threaded tiles) -> tasks of libgomp's thread team, the OpenMP
        # runtime torch runs its own parallel ops on (qmlir/passes/forall_to_gomp.py: its workers
        # spin briefly between regions, so back-to-back kernels start at once). Foralls it cannot
        # take (dynamic bounds) go to MLIR's async runtime. No-ops when nothing is threaded.
        *([f"qmlir-forall-to-gomp{{threads={threads}}}"] if gomp and threads > 1 else []),
        "func.func(scf-forall-to-parallel)",
        f"async-parallel-for{{num-workers={threads} async-dispatch=0 min-task-size=1}}",
        "async-to-async-runtime,async-runtime-ref-counting,async-runtime-ref-counting-opt,convert-async-to-llvm",
        "expand-strided-metadata,lower-affine,convert-math-to-funcs,convert-scf-to-cf,arith-expand{include-bf16=1}",
        "convert-vector-to-llvm{enable-x86vector=1},finalize-memref-to-llvm",
        "convert-math-to-llvm,convert-math-to-libm",
        "convert-arith-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,convert-index-to-llvm",
        "convert-ub-to-llvm,reconcile-unrealized-casts",
    ]


CUDA_FORMATS = ("isa", "bin", "fatbin")


def cuda_stages(chip: str, features: str, opt_level: int, format: str, block_size: int, toolkit: str) -> List[str]:
    """linalg on tensors -> host code in the LLVM dialect launching an embedded GPU binary."""
    tk = f" toolkit={toolkit}" if toolkit else ""
    return quant_semantics() + [
        "qmlir-protect-arguments",
        PREPARE,
        "qmlir-distinct-results",
        BUFFERIZE + ",canonicalize",
        "qmlir-gpu-device-buffers",
        f"qmlir-gpu-map-loops{{block-size={block_size}}}",
        "func.func(scf-parallel-for-to-nested-fors),"
        "convert-math-to-funcs,"  # integer powers -> helper functions, cloned into the kernels
        "gpu-kernel-outlining",
        "qmlir-gpu-dedupe-kernels",
        "func.func(gpu-async-region)",
        "convert-vector-to-scf,convert-scf-to-cf,convert-nvvm-to-llvm,convert-func-to-llvm,expand-strided-metadata",
        f"nvvm-attach-target{{chip={chip} features={features} O={opt_level}}}",
        "lower-affine,convert-arith-to-llvm,convert-index-to-llvm,canonicalize,cse",
        "gpu.module(convert-gpu-to-nvvm,canonicalize,cse,reconcile-unrealized-casts)",
        "gpu-to-llvm",
        f"gpu-module-to-binary{{format={format}{tk}}}",
        "convert-math-to-llvm,canonicalize,cse,reconcile-unrealized-casts",
    ]


registry.register_pipeline(
    "qmlir-quant-semantics",
    "named pipeline, first in every target's: fuse quantized matmuls (integer MAC), then lower quant casts "
    "(round half to even, saturate)",
    quant_semantics,
)
