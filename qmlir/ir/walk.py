"""Finding ops in IR: one walk, used by passes, kernels and the compile step."""
from __future__ import annotations

from typing import Callable

from mlir import ir


def _root(scope) -> ir.Operation:
    """The operation to walk: `scope` itself, or its `.operation` (an ir.Module, a pass's module view)."""
    return scope.operation if hasattr(scope, "operation") else scope


def find_ops(scope, *names: str) -> list:
    """Every op named one of `names` under `scope`, in walk order (collected before any rewrite)."""
    found = []

    def visit(op):
        if op.name in names:
            found.append(op)
        return ir.WalkResult.ADVANCE

    _root(scope).walk(visit)
    return found


def contains(scope, matches: Callable[[ir.Operation], bool]) -> bool:
    """True when some op under `scope` satisfies `matches(op)` (the walk stops at the first)."""
    found = []

    def visit(op):
        if matches(op):
            found.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    _root(scope).walk(visit)
    return bool(found)


def has_quant_ops(scope) -> bool:
    """True when quant-dialect ops are left under `scope`."""
    return contains(scope, lambda op: op.name.startswith("quant."))


def functions(module) -> list:
    """The func.func ops with a body at the top level of `module`."""
    body = module.body if hasattr(module, "body") else module.regions[0].blocks[0]
    return [op.operation for op in body.operations
            if op.operation.name == "func.func" and op.operation.regions[0].blocks]


def captured(root: ir.Operation) -> tuple:
    """What a region-holding op `root` (a loop nest to move into a function of its own) uses from
    outside itself: (values, constants, ops). values: in first-use order, not arith.constant
    results (they become arguments); constants: the arith.constant results among them (cloned
    into the new function, so static trip counts stay constants); ops: every op under `root`,
    `root` included, in walk order (their operands are the ones to remap)."""
    ops: list = []
    inside: set = set()

    def collect(op):
        ops.append(op)
        inside.update(op.results)
        for region in op.regions:
            for block in region.blocks:
                inside.update(block.arguments)
        return ir.WalkResult.ADVANCE

    root.walk(collect)
    values, consts, seen = [], [], set()
    for op in ops:
        for v in op.operands:
            if v in inside or v in seen:
                continue
            seen.add(v)
            is_const = isinstance(v, ir.OpResult) and v.owner.name == "arith.constant"
            (consts if is_const else values).append(v)
    return values, consts, ops


def remap_operands(ops, mapping: dict) -> None:
    """Point every operand of `ops` found in `mapping` at its replacement."""
    for op in ops:
        for i, v in enumerate(op.operands):
            if v in mapping:
                op.operands[i] = mapping[v]
