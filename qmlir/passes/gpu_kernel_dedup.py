"""Keep one copy of identical GPU kernels.

`gpu-kernel-outlining` gives every `gpu.launch` its own `gpu.module`; a transformer repeats the
same kernels once per layer (SmolLM2: 30 layers, about 1000 launches). Each module is compiled
by LLVM's NVPTX back end and JIT-compiled again by the driver when loaded, so duplicates cost
compile time linearly in depth. Matched:

    gpu.launch_func @forward_kernel_7::@forward_kernel ...
    gpu.launch_func @forward_kernel_42::@forward_kernel ...   // module body identical to _7's
    gpu.module @forward_kernel_7 { gpu.func @forward_kernel(...) kernel { ... } }
    gpu.module @forward_kernel_42 { gpu.func @forward_kernel(...) kernel { ... } }

Produced: both launches name `@forward_kernel_7::@forward_kernel`; `@forward_kernel_42` is gone.
"""
from __future__ import annotations

from mlir import ir

from qmlir.passes import registry


def _key(op: ir.Operation, name: str) -> str:
    text = op.get_asm(use_local_scope=True, assume_verified=True)
    return text.replace(f"gpu.module @{name}", "gpu.module @_", 1)


def run(module: ir.Module) -> int:
    """Point launches of identical gpu.modules at one copy; returns how many were removed."""
    canonical: dict[str, str] = {}
    rename: dict[str, str] = {}
    duplicates = []
    for op in module.body.operations:
        if op.operation.name != "gpu.module":
            continue
        name = ir.StringAttr(op.operation.attributes["sym_name"]).value
        key = _key(op.operation, name)
        if key in canonical:
            rename[name] = canonical[key]
            duplicates.append(op.operation)
        else:
            canonical[key] = name
    if not rename:
        return 0

    def retarget(op):
        if op.name == "gpu.launch_func":
            path = ir.SymbolRefAttr(op.attributes["kernel"]).value
            if path[0] in rename:
                op.attributes["kernel"] = ir.SymbolRefAttr.get([rename[path[0]]] + path[1:])
        return ir.WalkResult.ADVANCE

    module.operation.walk(retarget)
    for op in duplicates:
        op.erase()
    return len(duplicates)


registry.register_pass(
    "qmlir-gpu-dedupe-kernels",
    "launches of identical gpu.modules share one copy (one per distinct kernel, not per layer)",
    run,
    anchor="builtin.module",
)
