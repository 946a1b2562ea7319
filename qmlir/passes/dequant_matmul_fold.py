"""qmlir-fold-dequant-into-matmul: weight-only quantized matmuls read the integer weights.

After `qmlir-lower-quant`, a weight-only layer dequantizes its whole [K, N] weight to f32 on
every call (a generic writing K*N floats, 64 MB at 4096x4096) and multiplies by that. With
per-output-channel (or per-tensor) symmetric scales the scale factors out of the sum over K:

    y[m, n] = sum_k x[m, k] * (q[k, n] * s[n]) = s[n] * sum_k x[m, k] * q[k, n]

so this pass feeds the integer weight straight into the matmul (`linalg.matmul` converts
i8 -> f32 in its body; the CPU schedule does it in registers, reading 1 byte per weight
instead of 4) and scales the [M, N] result once:

    %w = linalg.generic ins(%q, %s, %zp : tensor<KxNxi8>, tensor<Nxf32>, tensor<Nxi64>)
           { sitofp, subf zp, mulf s }                           // zp all zero
    %y = linalg.matmul ins(%x, %w : tensor<MxKxf32>, tensor<KxNxf32>) outs(%zero)

becomes

    %p = linalg.matmul ins(%x, %q : tensor<MxKxf32>, tensor<KxNxi8>) outs(%zero)
    %y = linalg.generic ins(%p, %s) { mulf }                      // y[m, n] = p[m, n] * s[n]

Group-wise scales (which vary along K) and non-zero zero points are left alone.
"""
from __future__ import annotations

import numpy as np
from mlir import ir
from mlir.dialects import arith, linalg, tensor

from qmlir.ir.builders import generic
from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import constant_array, is_zero_fill
from qmlir.ir.matmul_layout import is_default_layout


def _all_zero(v: ir.Value) -> bool:
    if not isinstance(v, ir.OpResult) or v.owner.name != "arith.constant":
        return False
    attr = v.owner.attributes["value"]
    if isinstance(attr, ir.DenseElementsAttr) and attr.is_splat:
        value = attr.get_splat_value()
        return (ir.IntegerAttr(value).value if isinstance(value, ir.IntegerAttr) else ir.FloatAttr(value).value) == 0
    values = constant_array(v)
    return values is not None and not np.any(values != 0)


def _per_channel_dequant(w: ir.Value):
    """(q, scales value) when `w` is a lower-quant dequantize with scales along N and zp 0."""
    if not isinstance(w, ir.OpResult) or w.owner.name != "linalg.generic":
        return None
    g = w.owner
    if len(g.operands) != 4:  # q, scales, zero points, init
        return None
    q, s, zp = g.operands[0], g.operands[1], g.operands[2]
    if not isinstance(ir.RankedTensorType(q.type).element_type, ir.IntegerType):
        return None
    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(g.attributes["indexing_maps"])]
    d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
    if maps[0] != ir.AffineMap.get(2, 0, [d0, d1]) or maps[1] != ir.AffineMap.get(2, 0, [d1]) \
            or maps[2] != maps[1]:
        return None
    if not _all_zero(zp):
        return None
    body = [op.operation.name for op in g.regions[0].blocks[0].operations]
    if body[0] != "arith.sitofp" or body[-1] != "linalg.yield" or "arith.mulf" not in body:
        return None
    if any(name not in ("arith.sitofp", "arith.subf", "arith.mulf", "linalg.yield") for name in body):
        return None
    return q, s


def run(module: ir.Module) -> int:
    """Fold per-channel dequantization into the matmuls that consume it; returns how many."""
    folded = 0
    for op in find_ops(module, "linalg.matmul"):
        op = op.operation if hasattr(op, "operation") else op
        if ir.RankedTensorType(op.results[0].type).element_type != ir.F32Type.get():
            continue
        if not is_default_layout(op) or not is_zero_fill(op.operands[2]):
            continue
        found = _per_channel_dequant(op.operands[1])
        if found is None:
            continue
        q, s = found
        M, N = ir.RankedTensorType(op.results[0].type).shape
        d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
        full = ir.AffineMap.get(2, 0, [d0, d1])
        col = ir.AffineMap.get(2, 0, [d1])
        with op.location, ir.InsertionPoint(op):
            p = linalg.matmul(op.operands[0], q, outs=[op.operands[2]])
            y = generic([p, s], [full, col], [tensor.empty([M, N], ir.F32Type.get())], [full],
                        ["parallel", "parallel"], lambda v, sc, _: arith.mulf(v, sc))[0]
        dequant = op.operands[1].owner
        op.results[0].replace_all_uses_with(y)
        op.erase()
        if not list(dequant.results[0].uses):
            dequant.erase()
        folded += 1
    return folded


registry.register_pass(
    "qmlir-fold-dequant-into-matmul",
    "weight-only matmul: multiply by the integer weights, apply per-channel scales to the result",
    run,
)
