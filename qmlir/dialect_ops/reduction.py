"""Reductions and scans: sum, mean, amax/amin, any/all, softmax, log_softmax, cumsum.
bf16/f16 inputs accumulate in f32, as PyTorch's CPU reductions do."""
from __future__ import annotations

import math

import torch
from mlir import ir
from mlir.dialects import arith
from mlir.dialects import math as m

from qmlir.ir.builders import (loop_index, dtype_of, 
    const, convert, elementwise, full, generic, highest, is_float_type, lowest, reduce, shape_of,
)
from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp
from qmlir.ir.types import compute_dtype, element_type

aten = torch.ops.aten


def _dims(x: ir.Value, dim) -> list[int]:
    rank = len(shape_of(x))
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [d % rank for d in dims] if rank else []


def _finish(node, acc_value, acc_dtype):
    out = node.meta["val"]
    if acc_dtype == out.dtype:
        return acc_value
    return elementwise(out.shape, out.dtype, [acc_value], lambda v: v, [acc_dtype])


def _sum(node, x, dim, keepdim):
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    add = arith.addf if acc.is_floating_point else arith.addi
    init = 0.0 if acc.is_floating_point else 0
    return reduce(x, _dims(x, dim), element_type(acc), init, add, keepdim), acc


@lowering(aten.sum.dim_IntList)
def sum_dim(ctx, node, x, dim=None, keepdim=False, dtype=None):
    res, acc = _sum(node, x, dim, keepdim)
    return _finish(node, res, acc)


@lowering(aten.mean.dim, aten.mean.default)
def mean(ctx, node, x, dim=None, keepdim=False, dtype=None):
    out = node.meta["val"]
    if not out.dtype.is_floating_point:
        raise UnsupportedOp(node, "mean of an integer tensor")
    res, acc = _sum(node, x, dim, keepdim)
    shape = shape_of(x)
    count = math.prod(shape[d] for d in _dims(x, dim))
    return elementwise(out.shape, out.dtype, [res], lambda v: arith.divf(v, const(float(count), v.type)), [acc])


def _extremum_init(t: ir.Type, is_max: bool):
    return lowest(t) if is_max else highest(t)


def _extremum_lowering(is_max: bool):
    def lower(ctx, node, x, dim=None, keepdim=False):
        t = element_type(node.meta["val"].dtype)
        if is_float_type(t):  # NaN-propagating, like torch.amax
            comb = arith.maximumf if is_max else arith.minimumf
        else:
            comb = arith.maxsi if is_max else arith.minsi
        return reduce(x, _dims(x, dim), t, _extremum_init(t, is_max), comb, keepdim)
    return lower


lowering(aten.amax.default)(_extremum_lowering(True))
lowering(aten.amin.default)(_extremum_lowering(False))


def _bool_reduce(is_any: bool):
    def lower(ctx, node, x, dim=None, keepdim=False):
        if node.args[0].meta["val"].dtype != torch.bool:
            x = elementwise(shape_of(x), torch.bool, [x], lambda v: v, [dtype_of(x)])
        return reduce(x, _dims(x, dim), element_type(torch.bool), 0 if is_any else 1,
                      arith.ori if is_any else arith.andi, keepdim)
    return lower


lowering(aten.any.dim, aten.any.dims, aten.any.default)(_bool_reduce(True))


def _softmax_parts(node, x, dim):
    """(x - max, log-sum-exp denominators) pieces, computed in f32 for bf16/f16."""
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    t = element_type(acc)
    shape = shape_of(x)
    d = dim % len(shape)
    mx = reduce(x, [d], t, -math.inf, arith.maximumf, keepdim=True)
    shifted = elementwise(shape, acc, [x, mx], arith.subf)
    exps = elementwise(shape, acc, [shifted], m.exp)
    total = reduce(exps, [d], t, 0.0, arith.addf, keepdim=True)
    return out, acc, shifted, exps, total


@lowering(aten._softmax.default)
def softmax(ctx, node, x, dim, half_to_float=False):
    out, acc, _, exps, total = _softmax_parts(node, x, dim)
    return elementwise(out.shape, out.dtype, [exps, total], arith.divf, [acc, acc])


@lowering(aten._log_softmax.default)
def log_softmax(ctx, node, x, dim, half_to_float=False):
    out, acc, shifted, _, total = _softmax_parts(node, x, dim)
    return elementwise(out.shape, out.dtype, [shifted, total],
                       lambda s, z: arith.subf(s, m.log(z)), [acc, acc])


@lowering(aten.cumsum.default)
def cumsum(ctx, node, x, dim, dtype=None):
    """Inclusive scan as a triangular reduction: out[..i..] = sum_{k<=i} x[..k..]."""
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    t = element_type(acc)
    shape = shape_of(x)
    rank = len(shape)
    if rank == 0:
        return elementwise(out.shape, out.dtype, [x], lambda v: v)
    d = dim % rank
    init = full(shape, t, 0.0 if acc.is_floating_point else 0)
    # iteration space: the output dims, then k (the scanned position)
    n = rank + 1
    in_map = ir.AffineMap.get(n, 0, [ir.AffineDimExpr.get(rank) if i == d else ir.AffineDimExpr.get(i)
                                     for i in range(rank)])
    out_map = ir.AffineMap.get(n, 0, [ir.AffineDimExpr.get(i) for i in range(rank)])

    def body(v, a):
        i = loop_index(d)
        k = loop_index(rank)
        take = arith.cmpi(arith.CmpIPredicate.ule, k, i)
        v = convert(v, t)
        zero = const(0.0 if acc.is_floating_point else 0, t)
        add = arith.addf if acc.is_floating_point else arith.addi
        return add(a, arith.select(take, v, zero))

    res = generic([x], [in_map], [init], [out_map], ["parallel"] * rank + ["reduction"], body)[0]
    return _finish(node, res, acc)
