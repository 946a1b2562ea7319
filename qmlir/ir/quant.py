"""IR pieces shared by the quantization passes: constants to and from NumPy, quant types from
scales, and the integer matmul (i8 x i8 -> i32, zero-point correction, one float rescale)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
from mlir import ir
from mlir.dialects import arith, linalg, tensor
from mlir.dialects import math as m

from qmlir.ir.builders import const, generic, loop_index, reshape
from qmlir.errors import QmlirError


class QuantPassError(QmlirError):
    """A quantization pass cannot handle an op; the message starts with its location."""


F32 = lambda: ir.F32Type.get()  # noqa: E731
I8 = lambda: ir.IntegerType.get_signless(8)  # noqa: E731
I32 = lambda: ir.IntegerType.get_signless(32)  # noqa: E731


def constant_array(v: ir.Value) -> Optional[np.ndarray]:
    """NumPy value of `v` if it is an arith.constant with dense elements (through linalg.transpose)."""
    if not isinstance(v, ir.OpResult):
        return None
    op = v.owner
    if op.name == "linalg.transpose":
        inner = constant_array(op.operands[0])
        if inner is None:
            return None
        perm = list(ir.DenseI64ArrayAttr(op.attributes["permutation"]))
        return np.ascontiguousarray(np.transpose(inner, perm))
    if op.name != "arith.constant":
        return None
    attr = op.attributes["value"]
    if not isinstance(attr, ir.DenseElementsAttr):
        return None
    shape = list(ir.RankedTensorType(v.type).shape)
    if attr.is_splat:
        return np.full(shape, float(ir.FloatAttr(attr.get_splat_value()).value), dtype=np.float32)
    return np.array(attr).reshape(shape)


def quantize_weight(w: np.ndarray, bits: int, group: int | None):
    """Symmetric round-half-even quantization of a [K, N] weight: (q int8, scales, qmin, qmax)."""
    qmax = 127 if bits == 8 else 7
    qmin = -qmax - 1
    K, N = w.shape
    if group is None:
        scales = np.abs(w).max(axis=0) / qmax
        scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
        q = np.clip(np.rint(w / scales[None, :]), qmin, qmax)
    else:
        g = w.reshape(K // group, group, N)
        scales = np.abs(g).max(axis=1) / qmax
        scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
        q = np.clip(np.rint(g / scales[:, None, :]), qmin, qmax).reshape(K, N)
    return q.astype(np.int8), scales, qmin, qmax


def dense(values: np.ndarray, element: ir.Type) -> ir.Value:
    """An arith.constant tensor holding `values` as `element`."""
    t = ir.RankedTensorType.get(list(values.shape), element)
    return arith.ConstantOp(t, ir.DenseElementsAttr.get(np.ascontiguousarray(values), type=element)).result


def fmt(x: float) -> str:
    """A float literal MLIR parses (it needs a '.'), exact for f32 (9 significant digits)."""
    return "%.8e" % float(x)


def _param(s: float, zp) -> str:
    return fmt(s) if zp is None or int(zp) == 0 else f"{fmt(s)}:{int(zp)}"


def per_axis_type(scales: np.ndarray, axis: int, qmin: int, qmax: int,
                  zero_points: Optional[np.ndarray] = None) -> ir.Type:
    zps = [None] * len(scales) if zero_points is None else zero_points.reshape(-1)
    items = ",".join(_param(s, z) for s, z in zip(scales, zps))
    return ir.Type.parse(f"!quant.uniform<i8<{qmin}:{qmax}>:f32:{axis}, {{{items}}}>")


def sub_channel_type(scales: np.ndarray, group: int, qmin: int, qmax: int,
                     zero_points: Optional[np.ndarray] = None) -> ir.Type:
    """Scales [K/G, N] for a [K, N] weight: blocks of `group` along dim 0 (LLVM 22's parser
    aborts on a negative zero point here: asymmetric storage ranges start at 0)."""
    zps = np.zeros(scales.shape, np.int64) if zero_points is None else zero_points.reshape(scales.shape)
    rows = ", ".join("{" + ", ".join(_param(s, z) for s, z in zip(row, zrow)) + "}" for row, zrow in zip(scales, zps))
    return ir.Type.parse(f"!quant.uniform<i8<{qmin}:{qmax}>:f32:{{0:{group}, 1:1}}, {{{rows}}}>")


def per_tensor_type(scale: float, zero_point: int = 0, qmin: int = -128, qmax: int = 127) -> ir.Type:
    return ir.Type.parse(f"!quant.uniform<i8<{qmin}:{qmax}>:f32, {fmt(scale)}:{int(zero_point)}>")


def quant_op(name: str, value: ir.Value, result_type: ir.Type) -> ir.Value:
    return ir.Operation.create(name, results=[result_type], operands=[value]).result


def is_zero_fill(v: ir.Value) -> bool:
    if not isinstance(v, ir.OpResult) or v.owner.name != "linalg.fill":
        return False
    scalar = v.owner.operands[0]
    if not isinstance(scalar, ir.OpResult) or scalar.owner.name != "arith.constant":
        return False
    return float(ir.FloatAttr(scalar.owner.attributes["value"]).value) == 0.0


def fill(shape: Sequence[int], t: ir.Type, value) -> ir.Value:
    return linalg.fill(const(value, t), outs=[tensor.empty(list(shape), t)])


def int_matmul(a_i8: ir.Value, a_scale: Union[float, ir.Value], a_zp: int, w_i8: ir.Value,
               w_scales: np.ndarray, group: Optional[int], w_colsum: Union[np.ndarray, ir.Value]) -> ir.Value:
    """y[m, n] = sum_g s_a[m] * s_w[g, n] * (sum_{k in g} a[m, k] * w[k, n] - zp_a * colsum_w[g, n])

    a_i8 [M, K] signed storage; a_scale a float (per tensor) or a [M] f32 tensor (per token);
    w_i8 [K, N]; w_scales [N] (per channel) or [K/G, N] (groups of G along K), w_colsum likewise
    (NumPy for a constant weight, or an i32 tensor from `column_sums` for a weight argument).
    The products accumulate exactly in i32; one float rescale per group at the end.
    """
    M, K = ir.RankedTensorType(a_i8.type).shape
    N = ir.RankedTensorType(w_i8.type).shape[1]
    f32, i32 = F32(), I32()
    if group is None:
        acc = linalg.matmul(a_i8, w_i8, outs=[fill([M, N], i32, 0)])
        acc3 = reshape(acc, [1, M, N])
        scales, groups = w_scales.reshape(1, N), 1
    else:
        groups = K // group
        a3 = reshape(a_i8, [M, groups, group])
        a3 = linalg.transpose(a3, outs=[tensor.empty([groups, M, group], I8())], permutation=[1, 0, 2]).result
        w3 = reshape(w_i8, [groups, group, N])
        acc3 = linalg.batch_matmul(a3, w3, outs=[fill([groups, M, N], i32, 0)])
        scales = w_scales.reshape(groups, N)
    d = [ir.AffineDimExpr.get(i) for i in range(3)]  # (m, n, g)
    amap = ir.AffineMap.get(3, 0, [d[2], d[0], d[1]])
    gmap = ir.AffineMap.get(3, 0, [d[2], d[1]])
    omap = ir.AffineMap.get(3, 0, [d[0], d[1]])
    if isinstance(w_colsum, ir.Value):  # weight known only at run time: zp * column sums in IR
        corr = generic([w_colsum], [maps(2, [0, 1])[0]], [tensor.empty([groups, N], i32)], [maps(2, [0, 1])[0]],
                       ["parallel"] * 2, lambda c, _: arith.muli(c, const(int(a_zp), i32)))[0]
    else:
        corr = dense((w_colsum.reshape(groups, N) * a_zp).astype(np.int32), i32)
    inputs = [acc3, dense(scales.astype(np.float32), f32), corr]
    in_maps = [amap, gmap, gmap]
    per_token = isinstance(a_scale, ir.Value)
    if per_token:
        inputs.append(a_scale)
        in_maps.append(ir.AffineMap.get(3, 0, [d[0]]))

    def body(acc_v, s_w, corr, *rest):
        out = rest[-1]
        s_a = rest[0] if per_token else const(float(a_scale), f32)
        v = arith.sitofp(f32, arith.subi(acc_v, corr))
        return arith.addf(out, arith.mulf(v, arith.mulf(s_a, s_w)))

    return generic(inputs, in_maps, [fill([M, N], f32, 0.0)], [omap],
                   ["parallel", "parallel", "reduction"], body)[0]


def column_sums(w_i8: ir.Value, group: Optional[int]) -> ir.Value:
    """Per-group column sums of an i8 [K, N] weight known only at run time: i32 [K/G, N]."""
    K, N = ir.RankedTensorType(w_i8.type).shape
    G = group or K
    w3 = reshape(w_i8, [K // G, G, N])
    return generic([w3], [maps(3, [0, 1, 2])[0]], [fill([K // G, N], I32(), 0)], [maps(3, [0, 2])[0]],
                   ["parallel", "reduction", "parallel"],
                   lambda v, acc: arith.addi(acc, arith.extsi(I32(), v)))[0]


def quantize_rows(x: ir.Value, qmax: int = 127):
    """Dynamic per-token quantization: (x_i8 [M, K], scale [M] f32) with scale = max|x_m| / qmax
    (a zero row gets scale 1), q = clamp(roundeven(x / scale), -qmax, qmax)."""
    M, K = ir.RankedTensorType(x.type).shape
    f32 = F32()
    d0, d1 = ir.AffineDimExpr.get(0), ir.AffineDimExpr.get(1)
    full = ir.AffineMap.get(2, 0, [d0, d1])
    row = ir.AffineMap.get(2, 0, [d0])
    amax = generic([x], [full], [fill([M], f32, 0.0)], [row], ["parallel", "reduction"],
                   lambda v, acc: arith.maximumf(acc, m.absf(v)))[0]
    one = ir.AffineMap.get(1, 0, [ir.AffineDimExpr.get(0)])

    def to_scale(a, _):
        s = arith.divf(a, const(float(qmax), f32))
        return arith.select(arith.cmpf(arith.CmpFPredicate.OEQ, a, const(0.0, f32)), const(1.0, f32), s)

    scale = generic([amax], [one], [tensor.empty([M], f32)], [one], ["parallel"], to_scale)[0]

    def to_int(v, s, _):
        r = m.roundeven(arith.divf(v, s))
        r = arith.minimumf(arith.maximumf(r, const(float(-qmax), f32)), const(float(qmax), f32))
        return arith.fptosi(I8(), r)

    q = generic([x, scale], [full, row], [tensor.empty([M, K], I8())], [full], ["parallel", "parallel"], to_int)[0]
    return q, scale


def quantize_blocks(x: ir.Value, block: int, qmax: int = 127):
    """Dynamic quantization per block of `block` columns of each row: (x_i8 [M, K], scale
    [M, K / block] f32), scale = max|x| / qmax over the block (1 for a zero block), q =
    clamp(roundeven(x / scale), -qmax, qmax). K % block == 0."""
    M, K = ir.RankedTensorType(x.type).shape
    G = K // block
    f32 = F32()
    x3 = reshape(x, [M, G, block])
    full, row = maps(3, [0, 1, 2], [0, 1])
    amax = generic([x3], [full], [fill([M, G], f32, 0.0)], [row], ["parallel", "parallel", "reduction"],
                   lambda v, acc: arith.maximumf(acc, m.absf(v)))[0]
    same = maps(2, [0, 1])[0]

    def to_scale(a, _):
        s = arith.divf(a, const(float(qmax), f32))
        return arith.select(arith.cmpf(arith.CmpFPredicate.OEQ, a, const(0.0, f32)), const(1.0, f32), s)

    scale = generic([amax], [same], [tensor.empty([M, G], f32)], [same], ["parallel"] * 2, to_scale)[0]

    def to_int(v, s, _):
        r = m.roundeven(arith.divf(v, s))
        r = arith.minimumf(arith.maximumf(r, const(float(-qmax), f32)), const(float(qmax), f32))
        return arith.fptosi(I8(), r)

    q = generic([x3, scale], [full, row], [tensor.empty([M, G, block], I8())], [full], ["parallel"] * 3, to_int)[0]
    return reshape(q, [M, K]), scale


def maps(rank_iter, *exprs_lists):
    """Affine maps over `rank_iter` loop dims, each given as the list of dims it reads."""
    return [ir.AffineMap.get(rank_iter, 0, [ir.AffineDimExpr.get(d) for d in e]) for e in exprs_lists]


def mask_columns(x: ir.Value, keep: ir.Value, keep_when: bool) -> ir.Value:
    """x[m, k] where keep[k] == keep_when, else 0 (keep: an i8 tensor [K])."""
    M, K = ir.RankedTensorType(x.type).shape
    full, col = maps(2, [0, 1], [1])

    def body(v, k, _):
        on = arith.cmpi(arith.CmpIPredicate.ne, k, const(0, k.type))
        if not keep_when:
            on = arith.xori(on, const(1, on.type))
        return arith.select(on, v, const(0.0, v.type))

    return generic([x, keep], [full, col], [tensor.empty([M, K], F32())], [full], ["parallel"] * 2, body)[0]


def gather_columns(x: ir.Value, cols: np.ndarray) -> ir.Value:
    """x[:, cols] (f32 [M, len(cols)]) with the column indices as a constant."""
    M = ir.RankedTensorType(x.type).shape[0]
    J = len(cols)
    idx = dense(cols.astype(np.int64), ir.IntegerType.get_signless(64))
    full, col = maps(2, [0, 1], [1])

    def body(k, _):
        return tensor.extract(x, [loop_index(0), arith.index_cast(ir.IndexType.get(), k)])

    return generic([idx], [col], [tensor.empty([M, J], F32())], [full], ["parallel"] * 2, body)[0]


def add_f32(a: ir.Value, b: ir.Value) -> ir.Value:
    """a + b for two f32 [M, N] tensors."""
    M, N = ir.RankedTensorType(a.type).shape
    full = maps(2, [0, 1])[0]
    return generic([a, b], [full, full], [tensor.empty([M, N], F32())], [full], ["parallel"] * 2,
                   lambda u, v, _: arith.addf(u, v))[0]
