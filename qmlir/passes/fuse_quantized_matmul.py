"""qmlir-fuse-quantized-matmul: a `linalg.matmul` of dequantized operands becomes an integer
matmul (i8 x i8 -> i32), a zero-point correction and one float rescale epilogue.

Matches (activation per-tensor, any zero point; weight symmetric per-tensor, per-axis on the
output channel, or sub-channel in groups along K; accumulator a zero fill):

    %a = quant.dcast %aq : tensor<MxKx!quant.uniform<i8:f32, sa:za>> to tensor<MxKxf32>
    %w = quant.dcast %wq : tensor<KxNx!quant.uniform<i8:f32:1, {sw_n}>> to tensor<KxNxf32>
    %y = linalg.matmul ins(%a, %w) outs(%zero : tensor<MxNxf32>)

produces:

    %ai = quant.scast %aq : ... to tensor<MxKxi8>      %wi = quant.scast %wq : ... to tensor<KxNxi8>
    %acc = linalg.matmul ins(%ai, %wi : tensor<MxKxi8>, tensor<KxNxi8>) outs(%zero_i32 : tensor<MxNxi32>)
    %y = linalg.generic { (acc - za * colsum_w[n]) * sa * sw[n] }     (sub-channel: one i32 partial
         sum per group via linalg.batch_matmul, scaled per group and summed)

Integer products are exact; only the final rescale rounds.
"""
from __future__ import annotations

import numpy as np
from mlir import ir
from mlir.dialects import quant

from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import (
    F32, I8, QuantPassError, column_sums, constant_array, int_matmul, is_zero_fill, quant_op,
)


def _dcast_source(v: ir.Value):
    if isinstance(v, ir.OpResult) and v.owner.name == "quant.dcast":
        return v.owner.operands[0]
    return None


def _storage_constant(q: ir.Value):
    """The i8 constant behind `quant.scast %c` (NumPy), if there is one."""
    if isinstance(q, ir.OpResult) and q.owner.name == "quant.scast":
        return constant_array(q.owner.operands[0])
    return None


def _weight_params(qt, K: int, N: int, where):
    """(scales [N] or [K/G, N], group or None) of a symmetric weight type."""
    if isinstance(qt, quant.UniformQuantizedType):
        if qt.zero_point != 0:
            raise QuantPassError(f"{where}: weight zero point {qt.zero_point}: weights must be symmetric")
        return np.full([N], qt.scale, np.float32), None
    if isinstance(qt, quant.UniformQuantizedPerAxisType):
        if qt.quantized_dimension != 1:
            raise QuantPassError(f"{where}: weight quantized along dim {qt.quantized_dimension}; expected 1 (output channels)")
        if any(qt.zero_points):
            raise QuantPassError(f"{where}: weight zero points must be 0 (symmetric weights)")
        return np.array(qt.scales, np.float32), None
    if isinstance(qt, quant.UniformQuantizedSubChannelType):
        blocks = dict(zip(qt.quantized_dimensions, qt.block_sizes))
        group = blocks.get(0, K)
        if blocks.get(1, 1) != 1:
            raise QuantPassError(f"{where}: sub-channel weight must have block size 1 along N, got {blocks.get(1)}")
        scales = np.array(ir.DenseFPElementsAttr(qt.scales), np.float32).reshape(K // group, N)
        if np.any(np.array(ir.DenseIntElementsAttr(qt.zero_points))):
            raise QuantPassError(f"{where}: weight zero points must be 0 (symmetric weights)")
        return scales, group
    raise QuantPassError(f"{where}: unsupported weight quantization {qt}")


def run(module: ir.Module, strict: bool = True) -> int:
    """Fuse every matched matmul; returns how many were fused. strict=False (the CPU pipeline)
    leaves a matmul of dequantized operands it cannot fuse to run in float after qmlir-lower-quant."""
    count = 0
    for op in find_ops(module, "linalg.matmul"):
        try:
            count += _fuse(op)
        except QuantPassError:
            if strict:
                raise
    return count


def _fuse(op) -> int:
    """Fuse one matmul if its operands are both dequantized; QuantPassError if they cannot be."""
    aq, wq = _dcast_source(op.operands[0]), _dcast_source(op.operands[1])
    if aq is None or wq is None:
        return 0
    at = ir.RankedTensorType(aq.type).element_type
    wt = ir.RankedTensorType(wq.type).element_type
    M, K = ir.RankedTensorType(aq.type).shape
    N = ir.RankedTensorType(wq.type).shape[1]
    if not isinstance(at, quant.UniformQuantizedType):
        raise QuantPassError(f"{op.location}: activation quantization must be per-tensor, got {at}")
    if not (at.is_signed and wt.is_signed and at.storage_type == I8() and wt.storage_type == I8()):
        raise QuantPassError(f"{op.location}: signed i8 storage expected for both operands")
    if ir.RankedTensorType(op.results[0].type).element_type != F32() or not is_zero_fill(op.operands[2]):
        raise QuantPassError(f"{op.location}: expected an f32 matmul into a zero fill")
    scales, group = _weight_params(wt, K, N, op.location)
    zp_a = int(at.zero_point)
    w_const = _storage_constant(wq)
    groups = 1 if group is None else K // group
    with op.location, ir.InsertionPoint(op):
        ai = quant_op("quant.scast", aq, ir.RankedTensorType.get([M, K], I8()))
        wi = quant_op("quant.scast", wq, ir.RankedTensorType.get([K, N], I8()))
        if w_const is not None:
            colsum = w_const.astype(np.int64).reshape(groups, K // groups, N).sum(axis=1)
        elif zp_a != 0:  # a weight argument: its column sums are computed at run time
            colsum = column_sums(wi, group)
        else:
            colsum = np.zeros([groups, N], np.int64)
        y = int_matmul(ai, float(at.scale), zp_a, wi, scales, group, colsum)  # it reshapes per group
    op.results[0].replace_all_uses_with(y)
    op.erase()
    return 1


registry.register_pass(
    "qmlir-fuse-quantized-matmul",
    "matmul of quant.dcast operands -> i8 x i8 -> i32 matmul, zero-point correction, one rescale",
    run,
    {"strict": registry.Option(bool, True, "a matmul of dequantized operands that cannot be fused is an error "
                                           "(false: it stays in float and qmlir-lower-quant lowers its casts)")},
)
