"""Outline each top-level loop nest (scf.for, scf.forall) of a bufferized function into its own public function,
and keep one copy of identical kernels.

LLVM's optimizer scales worse than linearly with function size (IndVarSimplify dominated: a
whole SmolLM2 in one function took minutes to JIT). One function per loop nest, marked
`noinline`, keeps compile time linear in model size; identical kernels (one per transformer
layer) are compiled once.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import func

from qmlir.ir.walk import captured, remap_operands
from qmlir.passes import registry


def _outline(loop: ir.Operation, name: str, module: ir.Module) -> None:
    """Move `loop` into a new function `name`; values it captures become arguments, except
    constants, which are cloned in (static trip counts let LLVM unroll and vectorize)."""
    args, consts, ops = captured(loop)
    with loop.location:
        with ir.InsertionPoint(module.body):
            fn = func.FuncOp(name, ir.FunctionType.get([v.type for v in args], []))
        block = fn.add_entry_block()
        with ir.InsertionPoint(block):
            ret = func.ReturnOp([])
    mapping = dict(zip(args, block.arguments))
    for c in consts:
        mapping[c] = c.owner.clone(ip=ir.InsertionPoint(ret)).results[0]
    with loop.location, ir.InsertionPoint(loop):
        func.CallOp([], ir.FlatSymbolRefAttr.get(name), args)
    loop.move_before(ret)
    remap_operands(ops, mapping)
    # never inlined back: that would rebuild the huge function this pass exists to avoid
    fn.operation.attributes["passthrough"] = ir.ArrayAttr.get([ir.StringAttr.get("noinline")])


def run(module: ir.Module) -> int:
    """Outline top-level `scf.for` / `scf.forall` nests of every function (a threaded matmul
    is one forall; outlined, its 30 per-layer copies become one kernel); returns how many."""
    names: list[str] = []
    for op in list(module.body.operations):
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            continue
        base = ir.StringAttr(op.operation.attributes["sym_name"]).value
        # loops that yield values stay where they are: a call could not carry their results
        loops = [o.operation for o in op.regions[0].blocks[0].operations
                 if o.operation.name in ("scf.for", "scf.forall") and len(o.operation.results) == 0]
        for loop in loops:
            name = f"{base}_kernel{len(names)}"
            _outline(loop, name, module)
            names.append(name)
    if names:
        _deduplicate(module, set(names))
    return len(names)


def _deduplicate(module: ir.Module, outlined: set) -> None:
    """Point calls of identical kernels (same body, e.g. one per transformer layer) at one copy."""
    canonical: dict[str, str] = {}
    rename: dict[str, str] = {}
    duplicates = []
    for op in module.body.operations:
        if op.operation.name != "func.func":
            continue
        name = ir.StringAttr(op.operation.attributes["sym_name"]).value
        if name not in outlined:
            continue
        key = op.operation.get_asm(use_local_scope=True, assume_verified=True).replace(f"@{name}(", "@_(", 1)
        if key in canonical:
            rename[name] = canonical[key]
            duplicates.append(op)
        else:
            canonical[key] = name
    if not rename:
        return
    for op in duplicates:
        op.operation.erase()

    def retarget(op):
        if op.name == "func.call":
            callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
            if callee in rename:
                op.attributes["callee"] = ir.FlatSymbolRefAttr.get(rename[callee])
        return ir.WalkResult.ADVANCE

    module.operation.walk(retarget)


registry.register_pass(
    "qmlir-outline-loops",
    "outline each top-level scf.for/scf.forall nest of a bufferized function into a noinline function; dedupe identical ones",
    run,
    anchor="builtin.module",
)
