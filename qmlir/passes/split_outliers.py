"""qmlir-split-outliers: LLM.int8()-style mixed precision. A float `linalg.matmul` with a
constant weight splits into an int8 matmul over the regular input channels plus a
higher-precision (`outlier-type`) matmul over the outlier channels, summed in f32.

mode=static: outlier channels are those whose calibrated absmax (the matmul's
  `qmlir.act_channel_absmax`, a dense [K] attribute written by calibration) exceeds
  `threshold`. The regular part becomes quantize/dequantize IR (activations per tensor,
  scale from the regular channels' absmax; weights per output channel, outlier rows zeroed),
  ready for qmlir-fuse-quantized-matmul; the outlier columns of x are gathered and multiply
  the outlier rows of the weight, kept in `outlier-type`.
mode=dynamic: a channel is an outlier when any |x[m, k]| of the current input exceeds
  `threshold`, decided at run time with static shapes by masking (as bitsandbytes does): the
  regular part is quantized per token and multiplied in i8 -> i32; the masked outlier part
  multiplies the weight in `outlier-type`.

threshold=inf gives the pure int8 result bit for bit; threshold=0 (outlier-type=f32) the float
result. Before:

    %y = linalg.matmul {qmlir.act_channel_absmax = dense<[...]> : tensor<Kxf32>}
           ins(%x, %w_const : tensor<MxKxf32>, tensor<KxNxf32>) outs(%zero)

after (static):

    %xr = linalg.generic { x * regular_mask[k] }          %xo = linalg.generic { gather x[m, outliers[j]] }
    %yi = linalg.matmul ins(quant.dcast(quant.qcast %xr), quant.dcast(%w_q_regular_rows)) outs(%zero)
    %yo = linalg.matmul ins(%xo, %w_outlier_rows : tensor<MxOxf16>, tensor<OxNxf16>) outs(%zero)
    %y  = linalg.generic { yi + yo }
"""
from __future__ import annotations

import math

import numpy as np
import torch
from mlir import ir
from mlir.dialects import arith, linalg, tensor
from mlir.dialects import math as m

from qmlir.ir.builders import const, convert, generic, loop_index
from qmlir.ir.constants import dense_constant
from qmlir.ir.types import torch_dtype
from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import (
    F32, I8, QuantPassError, constant_array, dense, fill as _fill, int_matmul, is_zero_fill, per_axis_type,
    per_tensor_type, quant_op, quantize_rows, quantize_weight, maps, mask_columns, gather_columns, add_f32,
)

CHANNEL_ABSMAX_ATTR = "qmlir.act_channel_absmax"
_TYPES = {"f16": ir.F16Type.get, "bf16": ir.BF16Type.get, "f32": ir.F32Type.get}


def _float_matmul(x: ir.Value, w: np.ndarray, otype: ir.Type) -> ir.Value:
    """x [M, J] (f32) @ w [J, N] with both operands in `otype`, accumulating in f32."""
    M, J = ir.RankedTensorType(x.type).shape
    N = w.shape[1]
    xs = x
    if otype != F32():
        full = maps(2, [0, 1])[0]
        xs = generic([x], [full], [tensor.empty([M, J], otype)], [full], ["parallel"] * 2,
                     lambda v, _: convert(v, otype))[0]
    wv = dense_constant(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).to(torch_dtype(otype)))
    return linalg.matmul(xs, wv, outs=[_fill([M, N], F32(), 0.0)])


def _static(op, x, w, threshold, otype):
    if CHANNEL_ABSMAX_ATTR not in op.attributes:
        raise QuantPassError(f"{op.location}: mode=static needs per-channel calibration: a "
                             f"'{CHANNEL_ABSMAX_ATTR}' attribute (dense [K]) on the matmul")
    absmax = np.array(ir.DenseFPElementsAttr(op.attributes[CHANNEL_ABSMAX_ATTR]), dtype=np.float32)
    K, N = w.shape
    if absmax.shape != (K,):
        raise QuantPassError(f"{op.location}: {CHANNEL_ABSMAX_ATTR} has {absmax.size} values for K={K}")
    outliers = np.nonzero(absmax > threshold)[0]
    regular = np.nonzero(absmax <= threshold)[0]
    parts = []
    if len(regular):
        keep = np.zeros(K, np.int8)
        keep[regular] = 1
        xr = x if len(outliers) == 0 else mask_columns(x, dense(keep, I8()), True)
        wr = w.copy()
        wr[outliers] = 0.0
        q, scales, qmin, qmax = quantize_weight(wr, 8, None)
        wq = quant_op("quant.scast", dense(q, I8()), ir.RankedTensorType.get([K, N], per_axis_type(scales, 1, qmin, qmax)))
        wd = quant_op("quant.dcast", wq, ir.RankedTensorType.get([K, N], F32()))
        a_absmax = float(absmax[regular].max()) or 1.0
        M = ir.RankedTensorType(x.type).shape[0]
        xq = quant_op("quant.qcast", xr, ir.RankedTensorType.get([M, K], per_tensor_type(a_absmax / 127.0)))
        xd = quant_op("quant.dcast", xq, ir.RankedTensorType.get([M, K], F32()))
        parts.append(linalg.matmul(xd, wd, outs=[_fill([M, N], F32(), 0.0)]))
    if len(outliers):
        parts.append(_float_matmul(gather_columns(x, outliers), w[outliers], otype))
    return parts[0] if len(parts) == 1 else add_f32(parts[0], parts[1])


def _dynamic(op, x, w, threshold, otype):
    M, K = ir.RankedTensorType(x.type).shape
    N = w.shape[1]
    full, col = maps(2, [0, 1], [1])
    thr = threshold

    def flag(v, acc):
        big = arith.cmpf(arith.CmpFPredicate.OGT, m.absf(v), const(thr if math.isfinite(thr) else 3.0e38, v.type))
        return arith.ori(acc, arith.extui(I8(), big))

    is_outlier = generic([x], [full], [_fill([K], I8(), 0)], [col], ["reduction", "parallel"], flag)[0]
    q, scales, _, _ = quantize_weight(w, 8, None)
    xr = mask_columns(x, is_outlier, False)
    xq, xs = quantize_rows(xr)
    yi = int_matmul(xq, xs, 0, dense(q, I8()), scales, None, np.zeros([N], np.int64))
    yo = _float_matmul(mask_columns(x, is_outlier, True), w, otype)
    return add_f32(yi, yo)


def run(module: ir.Module, threshold: float = 6.0, mode: str = "static", outlier_type: str = "f16") -> int:
    """Split every f32 matmul with a constant weight; returns how many were split."""
    if threshold < 0:
        raise QuantPassError(f"threshold must be >= 0, got {threshold}")
    otype = _TYPES[outlier_type]()
    count = 0
    for op in find_ops(module, "linalg.matmul"):
        x, wv, out = op.operands[0], op.operands[1], op.operands[2]
        if any(ir.RankedTensorType(v.type).element_type != F32() for v in (x, wv, out)):
            continue
        w = constant_array(wv)
        if w is None:
            continue
        if not is_zero_fill(out):
            raise QuantPassError(f"{op.location}: the matmul accumulates into a non-zero tensor")
        with op.location, ir.InsertionPoint(op):
            y = (_static if mode == "static" else _dynamic)(op, x, w.astype(np.float32), threshold, otype)
        op.results[0].replace_all_uses_with(y)
        op.erase()
        count += 1
    return count


registry.register_pass(
    "qmlir-split-outliers",
    "LLM.int8() decomposition: int8 matmul over regular input channels + higher-precision matmul over outliers",
    run,
    {
        "threshold": registry.Option(float, 6.0, "activation magnitude above which a channel is an outlier (inf: none)"),
        "mode": registry.Option(str, "static", "outliers from calibration (static) or from each input (dynamic)",
                                ("static", "dynamic")),
        "outlier-type": registry.Option(str, "f16", "precision of the outlier path", ("f16", "bf16", "f32")),
    },
)
