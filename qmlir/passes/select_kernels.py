"""qmlir-select-kernels: choose a micro-kernel for every matmul and record it on the op.

For each op a kernel may match, the kernels in `qmlir/kernels` whose CPU features are all in
`features` are asked in priority order (int8_vnni, bf16_dot, portable); the first that takes the
op writes its name and tile choice on it:

    %y = linalg.matmul ins(%x, %w : tensor<8x64xi8>, tensor<64x128xi8>) outs(%f : tensor<8x128xi32>)

becomes, with features=avx512_vnni threads=2,

    %y = linalg.matmul {qmlir.kernel = {kc = 64 : i64, mr = 4 : i64, name = "int8_vnni", nc = 64 : i64}} ...

An op no kernel takes is left as it is (the scalar path). `qmlir-expand-kernels` expands the
choices. The target decides `features` and `threads` (qmlir.Target.cpu(): the running CPU's).
"""
from __future__ import annotations


from qmlir.kernels import all_kernels, record
from qmlir.ir.walk import find_ops
from qmlir.passes import registry


def parse_features(text: str) -> frozenset:
    return frozenset(f.strip() for f in text.replace("+", ",").split(",") if f.strip())


def run(module, features: str = "", threads: int = 1) -> int:
    """Record a kernel on every op some allowed kernel takes; returns how many were chosen."""
    allowed = parse_features(features)
    threads = max(1, threads)
    kernels = [k for k in all_kernels() if k.features <= allowed]
    names = sorted({n for k in kernels for n in k.ops})
    chosen = 0
    for op in find_ops(module, *names):
        op = op.operation if hasattr(op, "operation") else op
        for kernel in kernels:
            if op.name not in kernel.ops:
                continue
            config = kernel.select(op, threads)
            if config is not None:
                record(op, kernel.name, config)
                chosen += 1
                break
    return chosen


registry.register_pass(
    "qmlir-select-kernels",
    "choose a micro-kernel (qmlir/kernels) for every matmul the target's CPU features allow; record it as qmlir.kernel",
    run,
    {"features": registry.Option(str, "", "CPU features the kernels may use, comma-separated (avx2,avx512_bf16,avx512_vnni)"),
     "threads": registry.Option(int, 1, "worker threads the tile choice may split over", minimum=1)},
)
