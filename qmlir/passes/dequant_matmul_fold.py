"""qmlir-fold-dequant-into-matmul: weight-only quantized matmuls read the stored weights.

After `qmlir-lower-quant`, a weight-only layer dequantizes its whole weight to f32 on every
call (a generic writing K*N floats: 64 MB at 4096x4096, whatever the storage) and multiplies by
that; an int4 layer first unpacks its nibbles into a [K, N] i8 tensor. This pass replaces

    %u = linalg.generic (k floordiv 2, n) -> (k, n) { nibble k % 2 of q }      // int4 only
    %w = linalg.generic ins(%u, %s, %zp) { sitofp, subf zp, mulf s }           // per column or per group
    %y = linalg.matmul ins(%x, %w : tensor<MxKxf32>, tensor<KxNxf32>) outs(%zero)

by one dequantizing matmul on the storage (`qmlir.ir.dequant_matmul`):

    %y = linalg.generic ins(%x, %q, %s[, %zp] : tensor<MxKxf32>, tensor<K/2xNxi8>, tensor<K/GxNxf32>, ...)
           outs(%zero) { nibble, sitofp, subf zp, mulf s, mulf x, addf }

the same arithmetic, which the `dequant_gemm` kernel runs reading each stored byte once
(dequantizing in registers) and any other door runs as written. Scales (per output column,
or per group of G rows along K) and zero points must be constants; all-zero zero points are
dropped. Per-tensor scales and non-constant parameters are left alone.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mlir import ir

from qmlir.ir import dequant_matmul
from qmlir.ir.matmul_layout import is_default_layout
from qmlir.ir.quant import constant_array, dense, is_zero_fill
from qmlir.ir.walk import find_ops
from qmlir.passes import registry


def _values(v: ir.Value) -> Optional[np.ndarray]:
    """A constant's values (integer splats included), or None."""
    if isinstance(v, ir.OpResult) and v.owner.name == "arith.constant":
        attr = v.owner.attributes["value"]
        if isinstance(attr, ir.DenseElementsAttr) and attr.is_splat:
            value = attr.get_splat_value()
            scalar = ir.IntegerAttr(value).value if isinstance(value, ir.IntegerAttr) else ir.FloatAttr(value).value
            return np.full(list(ir.RankedTensorType(v.type).shape), scalar)
    return constant_array(v)


def _maps(op: ir.Operation) -> list:
    return [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]


def _body(op: ir.Operation) -> list:
    return [o.operation.name for o in op.regions[0].blocks[0].operations if o.operation.name != "arith.constant"]


def _dequant(w: ir.Value):
    """(q, scales [R, N], zero points [R, N]) when `w` is lower-quant's dequantization of a
    [K, N] integer tensor with scales per column (R = 1) or per group of K / R rows."""
    if not isinstance(w, ir.OpResult) or w.owner.name != "linalg.generic" or len(w.owner.operands) != 4:
        return None
    g = w.owner
    q, s, zp = g.operands[0], g.operands[1], g.operands[2]
    if ir.RankedTensorType(q.type).element_type != ir.IntegerType.get_signless(8):
        return None
    k, n = ir.RankedTensorType(q.type).shape
    d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
    maps = _maps(g)
    if maps[0] != ir.AffineMap.get(2, 0, [d0, d1]) or maps[3] != maps[0] or maps[2] != maps[1]:
        return None
    if maps[1] == ir.AffineMap.get(2, 0, [d1]):
        rows = 1
    else:
        rows = ir.RankedTensorType(s.type).shape[0] if ir.RankedTensorType(s.type).rank == 2 else 0
        if not rows or k % rows or maps[1] != ir.AffineMap.get(2, 0, [ir.AffineExpr.get_floor_div(d0, k // rows), d1]):
            return None
    if _body(g) != ["arith.sitofp", "arith.sitofp", "arith.subf", "arith.mulf", "linalg.yield"]:
        return None
    scales, zps = _values(s), _values(zp)
    if scales is None or zps is None:
        return None
    return q, scales.astype(np.float32).reshape(rows, n), zps.astype(np.float64).reshape(rows, n)


def _unpacked_int4(q: ir.Value):
    """(packed storage, signed) when `q` is the nibble unpacking of the int4 lowering."""
    if not isinstance(q, ir.OpResult) or q.owner.name != "linalg.generic" or len(q.owner.operands) != 2:
        return None
    g = q.owner
    d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
    if _maps(g) != [ir.AffineMap.get(2, 0, [ir.AffineExpr.get_floor_div(d0, 2), d1]), ir.AffineMap.get(2, 0, [d0, d1])]:
        return None
    tail = ["linalg.index", "arith.remui", "arith.cmpi", "arith.select", "linalg.yield"]
    names = _body(g)
    if names == ["arith.shli", "arith.shrsi", "arith.shrsi"] + tail:
        return g.operands[0], True
    if names == ["arith.andi", "arith.shrui", "arith.andi"] + tail:
        return g.operands[0], False
    return None


def _erase_if_unused(v: ir.Value) -> None:
    if isinstance(v, ir.OpResult) and not list(v.uses):
        op = v.owner
        inputs = list(op.operands)
        op.erase()
        for inner in inputs:
            if isinstance(inner, ir.OpResult) and inner.owner.name == "linalg.generic":
                _erase_if_unused(inner)


def run(module: ir.Module) -> int:
    """Fold weight dequantizations into the matmuls that consume them; returns how many."""
    folded = 0
    f32 = ir.F32Type.get()
    for op in find_ops(module, "linalg.matmul"):
        op = op.operation if hasattr(op, "operation") else op
        if ir.RankedTensorType(op.results[0].type).element_type != f32:
            continue
        if not is_default_layout(op) or not is_zero_fill(op.operands[2]):
            continue
        if ir.RankedTensorType(op.operands[0].type).element_type != f32:
            continue
        found = _dequant(op.operands[1])
        if found is None:
            continue
        q, scales, zps = found
        bits, signed, storage = 8, True, q
        unpacked = _unpacked_int4(q)
        if unpacked is not None:
            storage, signed = unpacked
            bits = 4
        k = ir.RankedTensorType(q.type).shape[0]
        group = k // scales.shape[0]
        if bits == 4 and (k % 2 or group % 2):
            continue
        with op.location, ir.InsertionPoint(op):
            s = dense(scales, f32)
            zp = dense(zps.astype(np.float32), f32) if np.any(zps != 0) else None
            y = dequant_matmul.build(op.operands[0], storage, s, zp, bits, signed, group, op.operands[2])
        w = op.operands[1]
        op.results[0].replace_all_uses_with(y)
        op.erase()
        _erase_if_unused(w)
        folded += 1
    return folded


registry.register_pass(
    "qmlir-fold-dequant-into-matmul",
    "weight-only matmul (int8/int4, per channel or group, zero points): one dequantizing matmul on the stored "
    "weights instead of a dequantized f32 copy",
    run,
)
