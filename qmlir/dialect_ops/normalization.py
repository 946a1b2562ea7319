"""Normalizations: layer norm (two-pass mean/variance in f32) and batch norm in eval mode."""
from __future__ import annotations

import torch
from mlir import ir
from mlir.dialects import arith
from mlir.dialects import math as m

from qmlir.ir.builders import const, elementwise, full, reduce, reshape, shape_of
from qmlir.dialect_ops.registry import lowering
from qmlir.ir.types import compute_dtype, element_type

aten = torch.ops.aten


def _affine(y: ir.Value, weight_bias, has_weight: bool, has_bias: bool) -> ir.Value:
    """y * weight + bias, each optional; `weight_bias` holds the present ones in that order."""
    it = iter(weight_bias)
    if has_weight:
        y = arith.mulf(y, next(it))
    if has_bias:
        y = arith.addf(y, next(it))
    return y


@lowering(aten.native_layer_norm.default)
def native_layer_norm(ctx, node, x, normalized_shape, weight, bias, eps):
    """Returns (out, mean, rstd) like ATen; mean and rstd have the normalized dims kept as 1."""
    out_meta, mean_meta, rstd_meta = node.meta["val"]
    acc = compute_dtype(out_meta.dtype)
    t = element_type(acc)
    shape = shape_of(x)
    dims = list(range(len(shape) - len(normalized_shape), len(shape)))
    count = float(torch.Size(normalized_shape).numel())
    total = reduce(x, dims, t, 0.0, arith.addf, keepdim=True)
    mean = elementwise(shape_of(total), acc, [total], lambda s: arith.divf(s, const(count, s.type)))
    centered = elementwise(shape, acc, [x, mean], arith.subf)
    sq = reduce(centered, dims, t, 0.0, lambda a, c: arith.addf(a, arith.mulf(c, c)), keepdim=True)
    rstd = elementwise(shape_of(sq), acc, [sq],
                       lambda s: m.rsqrt(arith.addf(arith.divf(s, const(count, s.type)), const(eps, s.type))))
    operands = [centered, rstd]
    if weight is not None:
        operands.append(weight)
    if bias is not None:
        operands.append(bias)

    def body(c, r, *wb):
        return _affine(arith.mulf(c, r), wb, weight is not None, bias is not None)

    out = elementwise(shape, out_meta.dtype, operands, body)
    mean_out = elementwise(mean_meta.shape, mean_meta.dtype, [reshape(mean, mean_meta.shape)], lambda v: v, [acc])
    rstd_out = elementwise(rstd_meta.shape, rstd_meta.dtype, [reshape(rstd, rstd_meta.shape)], lambda v: v, [acc])
    return out, mean_out, rstd_out


def _channel_view(v: ir.Value, rank: int) -> ir.Value:
    """[C] -> [C, 1, ..., 1] so that it broadcasts along dim 1 of an N, C, ... tensor."""
    return reshape(v, [shape_of(v)[0]] + [1] * (rank - 2))


@lowering(aten._native_batch_norm_legit_no_training.default)
def batch_norm_eval(ctx, node, x, weight, bias, running_mean, running_var, momentum, eps):
    out_meta, save_mean, save_rstd = node.meta["val"]
    rank = len(shape_of(x))
    operands = [x, _channel_view(running_mean, rank), _channel_view(running_var, rank)]
    if weight is not None:
        operands.append(_channel_view(weight, rank))
    if bias is not None:
        operands.append(_channel_view(bias, rank))

    def body(v, mu, var, *wb):
        y = arith.mulf(arith.subf(v, mu), m.rsqrt(arith.addf(var, const(eps, var.type))))
        return _affine(y, wb, weight is not None, bias is not None)

    out = elementwise(out_meta.shape, out_meta.dtype, operands, body)
    empties = [full(s.shape, element_type(s.dtype), 0.0) for s in (save_mean, save_rstd)]
    return out, empties[0], empties[1]
