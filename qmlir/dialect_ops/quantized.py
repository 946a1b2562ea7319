"""Quantized linear layers (`torch.ops.qmlir.*`, made by `qmlir.quantize`) in the quant dialect.

The IR is the contract of qmlir/passes/README.md, with the weight storage a function argument
(the model's buffer, passed by pointer) rather than a constant; scales are compile-time
constants written into the `!quant.uniform` types:

  weight-only   %w = quant.dcast(quant.scast %w_i8 : i8 -> !quant.uniform<i8<-128:127>:f32:1, {...}>)
                %y = linalg.matmul ins(%x, %w) outs(zero f32)
                int4: %w_i8 is unpacked from two-per-byte storage by a linalg.generic first, and
                the type is `i8<-8:7>` with sub-channel scales `{0:G, 1:1}` for groups.
  W8A8 static   %xd = quant.dcast(quant.qcast %x : f32 -> !quant.uniform<i8:f32, s:zp>)
                %y = linalg.matmul ins(%xd, %w) outs(zero f32)
                (qmlir-fuse-quantized-matmul, run by the CPU pipeline, turns this into an
                i8 x i8 -> i32 matmul with one rescale)
  W8A8 dynamic  per-token scales have no quant type: quantize rows, i8 x i8 -> i32, rescale.
  W8A8 block    scales per block of B columns of each row: quantize blocks, then the block-scaled
                integer matmul of qmlir/ir/block_matmul.py (an i32 sum and a rescale per block) on
                the weight panels (int4: nibble panels, W4A8).
  outliers      regular channels as above (outlier columns masked to 0, their weight rows are
                0 in storage); x[:, outliers] in the outlier dtype times the outlier rows,
                accumulated in f32, added.

Groups that do not divide K: the weight is stored with K padded to whole groups (zero rows)
and x is padded with zero columns here.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
from mlir import ir
from mlir.dialects import arith, linalg, tensor

from qmlir.ir import block_matmul
from qmlir.ir.builders import convert, generic
from qmlir.ir.dequant_matmul import int4_nibble
from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp

from qmlir.ir.quant import (
    F32, I8, add_f32, dense, fill, gather_columns, int_matmul, mask_columns, maps, per_axis_type, per_tensor_type,
    quant_op, quantize_blocks, quantize_rows, sub_channel_type,
)
from qmlir.ir import quant_ops  # noqa: F401  (defines torch.ops.qmlir.*)
from qmlir.ir.quant_storage import qrange

qops = torch.ops.qmlir


def _bind(node, args, kwargs) -> Dict[str, Any]:
    """Arguments by schema name: MLIR values (and Python scalars) as the lowering received them."""
    names = [a.name for a in node.target._schema.arguments]
    bound = dict(zip(names, args))
    bound.update(kwargs)
    fx = dict(zip(names, node.args))
    fx.update(node.kwargs)
    bound["_fx"] = fx
    return bound


def _shape(v: ir.Value) -> list:
    return list(ir.RankedTensorType(v.type).shape)


def _pad_columns(x: ir.Value, Kp: int) -> ir.Value:
    M, K = _shape(x)
    if K == Kp:
        return x
    return tensor.insert_slice(x, fill([M, Kp], F32(), 0.0), [], [], [], [0, 0], [M, K], [1, 1])


def _unpack_int4(packed: ir.Value, signed: bool = True) -> ir.Value:
    """[Kp/2, N] bytes -> [Kp, N] i8: row 2i is the low nibble, 2i+1 the high, sign-extended
    (or, unsigned, in [0, 15])."""
    half, N = _shape(packed)
    d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
    src = ir.AffineMap.get(2, 0, [ir.AffineExpr.get_floor_div(d0, 2), d1])
    out = ir.AffineMap.get(2, 0, [d0, d1])

    def body(b, _):
        return int4_nibble(b, 0, signed)

    return generic([packed], [src], [tensor.empty([2 * half, N], I8())], [out], ["parallel"] * 2, body)[0]


def _weight_type(node, scales: np.ndarray, zps, bits: int, group: int, Kp: int, N: int) -> ir.Type:
    qmin, qmax = qrange(bits, symmetric=zps is None)
    if zps is not None and zps.shape != scales.shape:
        raise UnsupportedOp(node, f"zero points of shape {zps.shape} for scales of shape {scales.shape}")
    if group:
        if scales.shape != (Kp // group, N):
            raise UnsupportedOp(node, f"group scales of shape {scales.shape}, expected {(Kp // group, N)}")
        return sub_channel_type(scales, group, qmin, qmax, zps)
    if scales.size == 1:
        return per_tensor_type(float(scales.reshape(-1)[0]), 0 if zps is None else int(zps.reshape(-1)[0]),
                               qmin, qmax)
    if scales.shape != (N,):
        raise UnsupportedOp(node, f"per-channel scales of shape {scales.shape}, expected {(N,)}")
    return per_axis_type(scales, 1, qmin, qmax, zps)


def _weight_storage(node, storage: ir.Value, bits: int, signed: bool = True) -> ir.Value:
    if ir.RankedTensorType(storage.type).element_type != I8():
        raise UnsupportedOp(node, f"weight storage must be int8, got {storage.type}")
    return _unpack_int4(storage, signed) if bits == 4 else storage


def _scales(ctx, b, what="weight scales") -> np.ndarray:
    return ctx.constant_array(b["_fx"]["scales"], what).astype(np.float32)


def _dequantized_weight(ctx, node, b, bits: int) -> ir.Value:
    fx_zps = b["_fx"].get("zero_points")
    zps = None if fx_zps is None else ctx.constant_array(fx_zps, "weight zero points").astype(np.int64)
    w_i8 = _weight_storage(node, b["weight"], bits, signed=zps is None)
    Kp, N = _shape(w_i8)
    qtype = _weight_type(node, _scales(ctx, b), zps, bits, int(b["group_size"]), Kp, N)
    wq = quant_op("quant.scast", w_i8, ir.RankedTensorType.get([Kp, N], qtype))
    return quant_op("quant.dcast", wq, ir.RankedTensorType.get([Kp, N], F32()))


def _check_x(node, x: ir.Value) -> None:
    t = ir.RankedTensorType(x.type)
    if t.rank != 2 or t.element_type != F32():
        raise UnsupportedOp(node, f"quantized linear input must be a 2-D f32 tensor, got {x.type}")


def _outliers(ctx, b):
    """(indices as NumPy or None, outlier weight value)."""
    fx_idx = b["_fx"].get("outlier_idx")
    if fx_idx is None:
        return None, None
    idx = ctx.constant_array(fx_idx, "outlier channel indices").astype(np.int64)
    return (idx, b["outlier_weight"]) if idx.size else (None, None)


def _regular(x: ir.Value, idx) -> ir.Value:
    if idx is None:
        return x
    keep = np.ones(_shape(x)[1], np.int8)
    keep[idx] = 0
    return mask_columns(x, dense(keep, I8()), True)


def _with_outliers(y: ir.Value, x: ir.Value, idx, w_out: ir.Value) -> ir.Value:
    if idx is None:
        return y
    xo = gather_columns(x, idx)
    otype = ir.RankedTensorType(w_out.type).element_type
    if otype != F32():
        full = maps(2, [0, 1])[0]
        xo = generic([xo], [full], [tensor.empty(_shape(xo), otype)], [full], ["parallel"] * 2,
                     lambda v, _: convert(v, otype))[0]
    M, N = _shape(y)
    yo = linalg.matmul(xo, w_out, outs=[fill([M, N], F32(), 0.0)])
    return add_f32(y, yo)


@lowering(qops.linear_weight_only.default)
def linear_weight_only(ctx, node, *args, **kwargs):
    b = _bind(node, args, kwargs)
    x = b["x"]
    _check_x(node, x)
    w = _dequantized_weight(ctx, node, b, int(b["bits"]))
    Kp, N = _shape(w)
    M = _shape(x)[0]
    return linalg.matmul(_pad_columns(x, Kp), w, outs=[fill([M, N], F32(), 0.0)])


def _w8a8_inputs(ctx, node, args, kwargs):
    """(bound arguments, x, outlier indices or None, outlier weight) of a W8A8 op."""
    b = _bind(node, args, kwargs)
    _check_x(node, b["x"])
    idx, w_out = _outliers(ctx, b)
    return b, b["x"], idx, w_out


@lowering(qops.linear_w8a8.default)
def linear_w8a8(ctx, node, *args, **kwargs):
    b, x, idx, w_out = _w8a8_inputs(ctx, node, args, kwargs)
    w = _dequantized_weight(ctx, node, b, 8)
    Kp, N = _shape(w)
    M = _shape(x)[0]
    xp = _pad_columns(_regular(x, idx), Kp)
    xtype = per_tensor_type(float(b["act_scale"]), int(b["act_zero_point"]))
    xq = quant_op("quant.qcast", xp, ir.RankedTensorType.get([M, Kp], xtype))
    xd = quant_op("quant.dcast", xq, ir.RankedTensorType.get([M, Kp], F32()))
    y = linalg.matmul(xd, w, outs=[fill([M, N], F32(), 0.0)])
    return _with_outliers(y, x, idx, w_out)


@lowering(qops.linear_w8a8_dynamic.default)
def linear_w8a8_dynamic(ctx, node, *args, **kwargs):
    b, x, idx, w_out = _w8a8_inputs(ctx, node, args, kwargs)
    w_i8 = _weight_storage(node, b["weight"], 8)
    Kp, N = _shape(w_i8)
    group = int(b["group_size"]) or None
    scales = _scales(ctx, b)
    if scales.size == 1:
        scales = np.full([N], float(scales.reshape(-1)[0]), np.float32)
    q, s = quantize_rows(_pad_columns(_regular(x, idx), Kp))
    groups = Kp // group if group else 1
    y = int_matmul(q, s, 0, w_i8, scales, group, np.zeros([groups, N], np.int64))
    return _with_outliers(y, x, idx, w_out)


@lowering(qops.linear_w8a8_block.default)
def linear_w8a8_block(ctx, node, *args, **kwargs):
    b, x, idx, w_out = _w8a8_inputs(ctx, node, args, kwargs)
    packed = b["weight"]
    pt = ir.RankedTensorType(packed.type)
    block, group, bits = int(b["block"]), int(b["group_size"]), int(b["bits"])
    if bits not in (4, 8):
        raise UnsupportedOp(node, f"{bits}-bit weights: block-dynamic layers take 8 or 4")
    scales = _scales(ctx, b)
    N = scales.shape[-1]
    if pt.element_type != I8() or pt.rank != 4 or list(pt.shape[2:]) != [block_matmul.PANEL, 4] \
            or pt.shape[0] != -(-N // block_matmul.PANEL):
        raise UnsupportedOp(node, f"weight storage {packed.type} is not the panel layout of {N} columns")
    Kp, Np = (4 if bits == 8 else 8) * pt.shape[1], block_matmul.PANEL * pt.shape[0]
    if block <= 0 or Kp % block or block % (4 if bits == 8 else 8) or (group and group % block):
        raise UnsupportedOp(node, f"activation blocks of {block} for a weight of {Kp} rows in groups of {group}: "
                                  "the block must divide the rows and the weight group")
    if scales.shape != ((Kp // group, N) if group else (N,)):
        raise UnsupportedOp(node, f"weight scales of shape {scales.shape} for a {Kp}x{N} weight")
    per_block = np.zeros((Kp // block, Np), np.float32)  # columns past N: zero weights, zero scales
    per_block[:, :N] = np.repeat(scales.reshape(Kp // group, N), group // block, axis=0) if group else scales[None, :]
    q, s = quantize_blocks(_pad_columns(_regular(x, idx), Kp), block)
    M = _shape(x)[0]
    by_panel = per_block.reshape(Kp // block, Np // block_matmul.PANEL, block_matmul.PANEL).transpose(1, 0, 2)
    y = block_matmul.build(q, packed, s, dense(np.ascontiguousarray(by_panel), F32()), block,
                           fill([M, Np], F32(), 0.0), bits)
    if Np != N:
        y = tensor.extract_slice(ir.RankedTensorType.get([M, N], F32()), y, [], [], [], [0, 0], [M, N], [1, 1])
    return _with_outliers(y, x, idx, w_out)
