"""qmlir-lower-quant: `quant.qcast` / `quant.dcast` to arith + linalg on storage integers,
rounding to nearest-even and saturating to the storage range.

Upstream `lower-quant-ops` computes x / scale + zp and converts with `fptosi`, which rounds
toward zero and is undefined out of range. This pass quantizes as PyTorch and NumPy do:

    q = clamp(roundeven(x / scale) + zp, storage_min, storage_max)      (NaN -> zp)
    x = (q - zp) * scale

for per-tensor, per-axis and sub-channel (block-wise) `!quant.uniform` types. Matches:

    %q = quant.qcast %x : tensor<4xf32> to tensor<4x!quant.uniform<i8:f32, 0.5:3>>
    %y = quant.dcast %q : tensor<4x!quant.uniform<i8:f32, 0.5:3>> to tensor<4xf32>

produces:

    %i = linalg.generic ... ins(%x : tensor<4xf32>) outs(... : tensor<4xi8>) {
      divf, math.roundeven, addf (zp), maximumf/minimumf (saturate), fptosi }
    %y = linalg.generic ... ins(%i : tensor<4xi8>) outs(... : tensor<4xf32>) {
      sitofp, subf (zp), mulf (scale) }

(LLVM 22's parser aborts on sub-channel types with a negative zero point, in mlir-opt too;
symmetric sub-channel types, the usual ones, are fine.)

Function arguments and results of quantized type become their storage type
(upstream `strip-func-quant-types`); `quant.scast` pairs left over fold away.

The two rewrites are a `RewritePatternSet` (one pattern per op), applied with MLIR's walk-based
driver (`walk_and_apply_patterns`: each op once, no folding, so the IR is exactly the rewrites').
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from mlir import ir, passmanager
from mlir.rewrite import RewritePatternSet, walk_and_apply_patterns
from mlir.dialects import arith, linalg, tensor
from mlir.dialects import math as m
from mlir.dialects import quant

from qmlir.ir.walk import functions, find_ops
from qmlir.passes import registry
from qmlir.errors import QmlirError


class QuantLoweringError(QmlirError):
    """A quant op this pass cannot lower; carries the op's location."""


@dataclass
class _Params:
    """Scale and zero point of a quantized element type, as scalars or as constant tensors
    read through an indexing map (per-axis and sub-channel)."""

    qtype: object
    storage: ir.Type
    expressed: ir.Type
    qmin: int
    qmax: int
    signed: bool
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    scales: Optional[np.ndarray] = None
    zero_points: Optional[np.ndarray] = None
    map_exprs: Optional[List[ir.AffineExpr]] = None  # output dims -> (scale tensor index)


def _params(qt: ir.Type, shape: List[int], where: ir.Location) -> _Params:
    p = _read_params(qt, shape, where)
    width = ir.IntegerType(p.storage).width if isinstance(p.storage, ir.IntegerType) else None
    if width not in _STORAGE_WIDTHS:
        raise QuantLoweringError(f"{where}: storage type {p.storage} of {qt}: qmlir lowers "
                                 f"{', '.join(f'i{w}' for w in sorted(_STORAGE_WIDTHS))} storage (int4 weights "
                                 "are stored in i8 with the range i8<-8:7>)")
    zps = [p.zero_point] if p.zero_point is not None else \
        ([] if p.zero_points is None else p.zero_points.reshape(-1).tolist())
    bad = [int(z) for z in zps if not p.qmin <= int(z) <= p.qmax]
    if bad:
        raise QuantLoweringError(f"{where}: zero point {bad[0]} of {qt} is outside its storage range "
                                 f"[{p.qmin}, {p.qmax}]")
    return p


# Storage widths the lowering supports: LLVM 22 cannot store memrefs of other integers below 8
# bits (it asserts); i4 values are lowered as before (they live in registers between casts).
_STORAGE_WIDTHS = {4, 8, 16, 32}


def _read_params(qt: ir.Type, shape: List[int], where: ir.Location) -> _Params:
    if isinstance(qt, quant.UniformQuantizedType):
        u = quant.UniformQuantizedType(qt)
        return _Params(u, u.storage_type, u.expressed_type, u.storage_type_min, u.storage_type_max,
                       u.is_signed, scale=u.scale, zero_point=u.zero_point)
    if isinstance(qt, quant.UniformQuantizedPerAxisType):
        p = quant.UniformQuantizedPerAxisType(qt)
        axis = p.quantized_dimension
        return _Params(p, p.storage_type, p.expressed_type, p.storage_type_min, p.storage_type_max, p.is_signed,
                       scales=np.array(p.scales, dtype=np.float32), zero_points=np.array(p.zero_points, dtype=np.int64),
                       map_exprs=[ir.AffineDimExpr.get(axis)])
    if isinstance(qt, quant.UniformQuantizedSubChannelType):
        s = quant.UniformQuantizedSubChannelType(qt)
        blocks = dict(zip(s.quantized_dimensions, s.block_sizes))
        scales = np.array(ir.DenseFPElementsAttr(s.scales), dtype=np.float32)
        zps = np.array(ir.DenseIntElementsAttr(s.zero_points), dtype=np.int64)
        exprs = []
        for d in range(len(shape)):
            block = blocks.get(d, shape[d])
            exprs.append(ir.AffineExpr.get_floor_div(ir.AffineDimExpr.get(d), block) if block != 1
                         else ir.AffineDimExpr.get(d))
        return _Params(s, s.storage_type, s.expressed_type, s.storage_type_min, s.storage_type_max, s.is_signed,
                       scales=scales, zero_points=zps, map_exprs=exprs)
    raise QuantLoweringError(f"{where}: unsupported quantized type {qt} (uniform per-tensor, per-axis and "
                             "sub-channel types are supported)")


def _const_tensor(values: np.ndarray, et: ir.Type) -> ir.Value:
    t = ir.RankedTensorType.get(list(values.shape), et)
    return arith.ConstantOp(t, ir.DenseElementsAttr.get(np.ascontiguousarray(values), type=et)).result


def _f32(v: ir.Value) -> ir.Value:
    f32 = ir.F32Type.get()
    if v.type == f32:
        return v
    return arith.extf(f32, v) if ir.FloatType(v.type).width < 32 else arith.truncf(f32, v)


def _elementwise(src: ir.Value, out_et: ir.Type, p: _Params, body) -> ir.Value:
    shape = list(ir.RankedTensorType(src.type).shape)
    rank = len(shape)
    ident = ir.AffineMap.get_identity(rank)
    inputs, maps = [src], [ident]
    if p.scales is not None:
        pmap = ir.AffineMap.get(rank, 0, p.map_exprs)
        inputs += [_const_tensor(p.scales, ir.F32Type.get()), _const_tensor(p.zero_points, ir.IntegerType.get_signless(64))]
        maps += [pmap, pmap]
    init = tensor.empty(shape, out_et)
    op = linalg.GenericOp([init.type], inputs, [init],
                          ir.ArrayAttr.get([ir.AffineMapAttr.get(x) for x in maps + [ident]]),
                          ir.ArrayAttr.get([ir.Attribute.parse("#linalg.iterator_type<parallel>")] * rank))
    block = op.regions[0].blocks.append(*[ir.RankedTensorType(v.type).element_type for v in inputs], out_et)
    with ir.InsertionPoint(block):
        f32 = ir.F32Type.get()
        if p.scales is not None:
            scale, zp = block.arguments[1], arith.sitofp(f32, block.arguments[2])
        else:
            scale = arith.ConstantOp(f32, ir.FloatAttr.get(f32, p.scale)).result
            zp = arith.ConstantOp(f32, ir.FloatAttr.get(f32, float(p.zero_point))).result
        linalg.YieldOp([body(block.arguments[0], scale, zp)])
    return op.result


def _quantize(x: ir.Value, p: _Params) -> ir.Value:
    f32 = ir.F32Type.get()

    def body(v, scale, zp):
        v = _f32(v)
        r = arith.addf(m.roundeven(arith.divf(v, scale)), zp)
        lo = arith.ConstantOp(f32, ir.FloatAttr.get(f32, float(p.qmin))).result
        hi = arith.ConstantOp(f32, ir.FloatAttr.get(f32, float(p.qmax))).result
        r = arith.minimumf(arith.maximumf(r, lo), hi)
        r = arith.select(arith.cmpf(arith.CmpFPredicate.UNO, v, v), zp, r)  # NaN -> zero point
        return arith.fptosi(p.storage, r) if p.signed else arith.fptoui(p.storage, r)

    return _elementwise(x, p.storage, p, body)


def _dequantize(q: ir.Value, p: _Params) -> ir.Value:
    f32 = ir.F32Type.get()

    def body(v, scale, zp):
        f = arith.sitofp(f32, v) if p.signed else arith.uitofp(f32, v)
        y = arith.mulf(arith.subf(f, zp), scale)
        return y if p.expressed == f32 else arith.truncf(p.expressed, y)

    return _elementwise(q, p.expressed, p, body)


def _scast(v: ir.Value, to: ir.Type) -> ir.Value:
    return ir.Operation.create("quant.scast", results=[to], operands=[v]).result


def _lower_qcast(op, rewriter) -> None:
    src, res = op.operands[0], op.results[0]
    shape = list(ir.RankedTensorType(src.type).shape)
    with rewriter.ip, op.location:
        p = _params(ir.RankedTensorType(res.type).element_type, shape, op.location)
        new = _scast(_quantize(src, p), res.type)
    rewriter.replace_op(op, [new])


def _lower_dcast(op, rewriter) -> None:
    src = op.operands[0]
    shape = list(ir.RankedTensorType(src.type).shape)
    with rewriter.ip, op.location:
        p = _params(ir.RankedTensorType(src.type).element_type, shape, op.location)
        new = _dequantize(_scast(src, ir.RankedTensorType.get(shape, p.storage)), p)
    rewriter.replace_op(op, [new])


def _patterns(context: ir.Context):
    patterns = RewritePatternSet(context)
    patterns.add("quant.qcast", _lower_qcast)
    patterns.add("quant.dcast", _lower_dcast)
    return patterns.freeze()


def run(module: ir.Module) -> int:
    """Lower every qcast/dcast in `module`; returns how many were lowered. A module without
    quant ops or types is left as it is."""
    targets = find_ops(module, "quant.qcast", "quant.dcast")
    if not targets and not any("!quant." in str(fn.attributes["function_type"]) for fn in functions(module)):
        return 0
    for op in targets:  # check everything before rewriting anything (a pattern must not raise)
        src = op.operands[0]
        if not isinstance(src.type, ir.RankedTensorType):
            raise QuantLoweringError(f"{op.location}: '{op.name}' on a {src.type}: only ranked tensors are lowered")
        qt = op.results[0].type if op.name == "quant.qcast" else src.type
        _params(ir.RankedTensorType(qt).element_type, list(ir.RankedTensorType(src.type).shape), op.location)
    if targets:
        walk_and_apply_patterns(module.operation, _patterns(module.context))
    pm = passmanager.PassManager.parse("builtin.module(strip-func-quant-types,canonicalize)", context=module.context)
    pm.run(module.operation)
    leftover = []

    def check(op):
        if op.name.startswith("quant."):
            leftover.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(check)
    if leftover:
        op = leftover[0]
        users = ", ".join(sorted({u.owner.name for r in op.results for u in r.uses})) or "nothing"
        raise QuantLoweringError(f"{op.location}: '{op.name}' remains after lowering (its value is used by {users}); "
                                 "quantized values must be dequantized or consumed by a quantized-matmul pass first")
    return len(targets)


registry.register_pass(
    "qmlir-lower-quant",
    "quant.qcast/dcast to arith+linalg with round-to-nearest-even and saturation (per-tensor, per-axis, sub-channel)",
    run,
)
