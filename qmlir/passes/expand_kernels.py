"""qmlir-expand-kernels: replace every op carrying a `qmlir.kernel` choice by that kernel's body.

`stage=tensors` expands the kernels that work on tensors (bf16_dot, portable: before
bufferization), `stage=buffers` those that need buffers (int8_vnni: after it). Within a stage,
kernels expand in priority order, each over all of its ops at once. The choice (kernel name and
tile sizes) is read off the op, as qmlir-select-kernels wrote it or as a test wrote it by hand:

    linalg.matmul {qmlir.kernel = {name = "bf16_dot", mr = 4 : i64, nr = 4 : i64, nc = 8 : i64, kc = 64 : i64}} ...

becomes the bf16 dot-product loop nest (scf.forall over N blocks, x86vector.avx512.dot).
An unknown kernel name is an error naming it.
"""
from __future__ import annotations

from qmlir.errors import CompileError
from qmlir.kernels import STAGES, all_kernels, recorded
from qmlir.ir.walk import find_ops
from qmlir.passes import registry


def run(module, stage: str = "tensors") -> int:
    """Expand the recorded choices of kernels of `stage`; returns how many ops were expanded."""
    kernels = {k.name: k for k in all_kernels()}
    by_kernel: dict = {}
    names = sorted({n for k in kernels.values() for n in k.ops})
    for op in find_ops(module, *names):
        op = op.operation if hasattr(op, "operation") else op
        choice = recorded(op)
        if choice is None:
            continue
        name, config = choice
        if name not in kernels:
            raise CompileError(f"{op.location}: qmlir.kernel names an unknown kernel '{name}' "
                               f"(kernels: {', '.join(sorted(kernels))})")
        if kernels[name].stage == stage:
            by_kernel.setdefault(name, []).append((op, config))
    count = 0
    for kernel in all_kernels():
        if kernel.name in by_kernel:
            try:
                count += kernel.expand(module, by_kernel[kernel.name])
            except (KeyError, TypeError) as e:
                where = by_kernel[kernel.name][0][0].location
                raise CompileError(f"{where}: kernel {kernel.name}: bad qmlir.kernel config "
                                   f"({type(e).__name__}: {e})") from None
    return count


registry.register_pass(
    "qmlir-expand-kernels",
    "expand every op's recorded qmlir.kernel choice into the kernel's body (tensors: before bufferization; buffers: after)",
    run,
    {"stage": registry.Option(str, "tensors", "which kernels to expand", choices=STAGES)},
)
