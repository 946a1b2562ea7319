"""qmlir-quantize-matmul: quantization at the MLIR level. A float `linalg.matmul` whose right
operand (the weight, [K, N]) is a constant becomes a quantized matmul.

Weights are quantized here, at compile time: symmetric, per output channel (`channel`) or per
group of `group-size` input channels (`group`), to int8 ([-128, 127], scale absmax/127) or
int4 ([-8, 7] in i8 storage, scale absmax/7), rounding half to even. Activations:

  act=static   from the matmul's `qmlir.act_absmax` attribute (calibration; or the act-absmax
               option): per-tensor symmetric int8, as `quant.qcast`/`quant.dcast`.
  act=dynamic  per token at run time (scale = row absmax / 127), emitted directly as integer
               IR: an i8 x i8 -> i32 matmul and one float rescale.
  act=none     weight-only: the weight is dequantized (quant.dcast) and the matmul stays float.

Matches (weight through linalg.transpose of a constant too, as linear layers import):

    %w = arith.constant dense<...> : tensor<KxNxf32>
    %y = linalg.matmul ins(%x, %w : tensor<MxKxf32>, tensor<KxNxf32>) outs(%zero : tensor<MxNxf32>)

produces, for act=static:

    %ws = arith.constant dense<...> : tensor<KxNxi8>
    %wq = quant.scast %ws : tensor<KxNxi8> to tensor<KxNx!quant.uniform<i8<-128:127>:f32:1, {...}>>
    %xq = quant.qcast %x : tensor<MxKxf32> to tensor<MxKx!quant.uniform<i8<-128:127>:f32, s:0>>
    %y  = linalg.matmul ins(quant.dcast %xq, quant.dcast %wq) outs(%zero)

which qmlir-fuse-quantized-matmul turns into integer arithmetic and qmlir-lower-quant lowers.
"""
from __future__ import annotations

import numpy as np
from mlir import ir

from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import (
    F32, I8, QuantPassError, constant_array, dense, int_matmul, is_zero_fill, per_axis_type, per_tensor_type,
    quant_op, quantize_rows, quantize_weight, sub_channel_type,
)

ABSMAX_ATTR = "qmlir.act_absmax"


def run(module: ir.Module, weight_type: str = "i8", granularity: str = "channel", group_size: int = 128,
        act: str = "static", act_absmax: float = 0.0) -> int:
    """Quantize every eligible matmul in `module`; returns how many were quantized."""
    bits = 8 if weight_type == "i8" else 4
    count = 0
    for op in find_ops(module, "linalg.matmul"):
        x, w_val, out = op.operands[0], op.operands[1], op.operands[2]
        if any(ir.RankedTensorType(v.type).element_type != F32() for v in (x, w_val, out)):
            continue  # only f32 matmuls (mixed precision and quantized ones are left alone)
        w = constant_array(w_val)
        if w is None:
            continue
        K, N = w.shape
        group = None
        if granularity == "group":
            group = min(group_size, K)
            if K % group:
                raise QuantPassError(f"{op.location}: K={K} is not a multiple of group-size={group}")
        if not is_zero_fill(out):
            raise QuantPassError(f"{op.location}: the matmul accumulates into a non-zero tensor; "
                                 "expected outs(linalg.fill 0)")
        q, scales, qmin, qmax = quantize_weight(w.astype(np.float32), bits, group)
        qtype = per_axis_type(scales, 1, qmin, qmax) if group is None else sub_channel_type(scales, group, qmin, qmax)
        with op.location, ir.InsertionPoint(op):
            storage = dense(q, I8())
            if act == "dynamic":
                xq, xs = quantize_rows(x)
                colsum = np.zeros_like(scales, dtype=np.int64)  # symmetric activations: zp 0, no correction
                y = int_matmul(xq, xs, 0, storage, scales, group, colsum)
                op.results[0].replace_all_uses_with(y)
                op.erase()
                count += 1
                continue
            wq = quant_op("quant.scast", storage, ir.RankedTensorType.get([K, N], qtype))
            wd = quant_op("quant.dcast", wq, ir.RankedTensorType.get([K, N], F32()))
            op.operands[1] = wd
            if act == "static":
                absmax = act_absmax
                if ABSMAX_ATTR in op.attributes:
                    absmax = float(ir.FloatAttr(op.attributes[ABSMAX_ATTR]).value)
                if absmax <= 0:
                    raise QuantPassError(f"{op.location}: act=static needs the activation range: a "
                                         f"'{ABSMAX_ATTR}' attribute on the matmul or the act-absmax option")
                xt = ir.RankedTensorType(x.type)
                atype = per_tensor_type(absmax / 127.0)
                xq = quant_op("quant.qcast", x, ir.RankedTensorType.get(list(xt.shape), atype))
                op.operands[0] = quant_op("quant.dcast", xq, x.type)
        count += 1
    return count


registry.register_pass(
    "qmlir-quantize-matmul",
    "quantize f32 matmuls with constant weights (per-channel/group, int8/int4; activations static/dynamic/none)",
    run,
    {
        "weight-type": registry.Option(str, "i8", "weight storage", ("i8", "i4")),
        "granularity": registry.Option(str, "channel", "weight scales per output channel or per group", ("channel", "group")),
        "group-size": registry.Option(int, 128, "input channels per scale group (granularity=group)", minimum=1,
                                      requires=("granularity", "group")),
        "act": registry.Option(str, "static", "activation quantization", ("static", "dynamic", "none")),
        "act-absmax": registry.Option(float, 0.0, "activation range for act=static when the matmul has no qmlir.act_absmax"),
    },
)
