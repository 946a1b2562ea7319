"""Tensor factories: full/zeros/ones (and *_like), scalar_tensor, arange."""
from __future__ import annotations

import torch
from mlir import ir
from mlir.dialects import arith, linalg

from qmlir.dialect_ops.builders import loop_index, const, convert, empty, full, generic
from qmlir.dialect_ops.registry import lowering
from qmlir.frontend.types import element_type

aten = torch.ops.aten


def _fill(node, value):
    out = node.meta["val"]
    return full(out.shape, element_type(out.dtype), value)


@lowering(aten.full.default, aten.new_full.default)
def full_(ctx, node, *args, **kwargs):
    value = args[-1] if node.target is aten.full.default else args[2]
    return _fill(node, value)


@lowering(aten.full_like.default)
def full_like(ctx, node, x, fill_value, **kwargs):
    return _fill(node, fill_value)


@lowering(aten.zeros.default, aten.zeros_like.default, aten.new_zeros.default,
          aten.empty.memory_format, aten.empty_like.default, aten.new_empty.default)
def zeros(ctx, node, *args, **kwargs):
    return _fill(node, 0)  # `empty` is allowed any contents; zeros keep runs reproducible


@lowering(aten.ones.default, aten.ones_like.default, aten.new_ones.default)
def ones(ctx, node, *args, **kwargs):
    return _fill(node, 1)


@lowering(aten.scalar_tensor.default)
def scalar_tensor(ctx, node, value, **kwargs):
    return _fill(node, value)


@lowering(aten.arange.start_step, aten.arange.start, aten.arange.default)
def arange(ctx, node, *args, **kwargs):
    """start + i * step, computed in f64 (floats) or i64 (integers), then cast like torch."""
    if node.target is aten.arange.default:
        start, step = 0, 1
    else:
        start = args[0]
        step = args[2] if node.target is aten.arange.start_step and len(args) > 2 else kwargs.get("step", 1)
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
