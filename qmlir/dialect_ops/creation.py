"""Tensor factories: full/zeros/ones (and *_like), scalar_tensor, arange."""
from __future__ import annotations

import torch
from mlir import ir
from mlir.dialects import arith

from qmlir.ir.builders import loop_index, const, convert, empty, full, generic
from qmlir.dialect_ops.registry import lowering
from qmlir.ir.types import element_type

aten = torch.ops.aten


def _fill(node, value):
    out = node.meta["val"]
    return full(out.shape, element_type(out.dtype), value)


@lowering(aten.full.default)
def full_(ctx, node, size, fill_value, **kwargs):
    return _fill(node, fill_value)


@lowering(aten.full_like.default)
def full_like(ctx, node, x, fill_value, **kwargs):
    return _fill(node, fill_value)


# zeros/ones/new_* and *_like reach qmlir already decomposed into full / full_like.
@lowering(aten.empty.memory_format, aten.empty_permuted.default)
def empty_(ctx, node, *args, **kwargs):
    return _fill(node, 0)  # `empty` may hold anything; zeros keep runs reproducible


@lowering(aten.scalar_tensor.default)
def scalar_tensor(ctx, node, value, **kwargs):
    return _fill(node, value)


@lowering(aten.arange.start_step)  # arange(end) and arange(start, end) decompose to this
def arange(ctx, node, start, end, step=1, **kwargs):
    """start + i * step, computed in f64 (floats) or i64 (integers), then cast like torch."""
    out = node.meta["val"]
    et = element_type(out.dtype)
    wide = ir.F64Type.get() if out.dtype.is_floating_point else ir.IntegerType.get_signless(64)
    identity = ir.AffineMap.get_identity(1)

    def body(_):
        i = arith.index_cast(ir.IntegerType.get_signless(64), loop_index(0))
        i = convert(i, wide)
        mul = arith.mulf if out.dtype.is_floating_point else arith.muli
        add = arith.addf if out.dtype.is_floating_point else arith.addi
        return convert(add(const(start, wide), mul(i, const(step, wide))), et)

    return generic([], [], [empty(out.shape, et)], [identity], ["parallel"], body)[0]
