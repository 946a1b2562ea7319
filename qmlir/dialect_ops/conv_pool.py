"""Convolution and pooling on NCHW tensors via linalg's named conv/pooling ops."""
from __future__ import annotations

import math
import operator

import torch
from mlir import ir
from mlir.dialects import arith, linalg, tensor

from qmlir.ir.builders import (loop_index, 
    const, convert, elementwise, empty, full, generic, lowest, reshape, shape_of,
)
from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp
from qmlir.ir.types import compute_dtype, element_type

aten = torch.ops.aten


def _pad(x: ir.Value, low: list[int], high: list[int], value) -> ir.Value:
    """Pad the trailing spatial dims by inserting `x` into a tensor filled with `value`."""
    if not any(low) and not any(high):
        return x
    shape = shape_of(x)
    lead = len(shape) - len(low)
    padded = shape[:lead] + [s + lo + hi for s, lo, hi in zip(shape[lead:], low, high)]
    base = full(padded, ir.RankedTensorType(x.type).element_type, value)
    return tensor.insert_slice(x, base, [], [], [], [0] * lead + list(low), shape, [1] * len(shape))


def _attr(values) -> list[int]:
    return [int(v) for v in values]


@lowering(aten.convolution.default)
def convolution(ctx, node, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    out = node.meta["val"]
    if transposed:
        raise UnsupportedOp(node, "transposed convolution")
    if len(shape_of(x)) != 4:
        raise UnsupportedOp(node, f"{len(shape_of(x)) - 2}-D convolution (2-D is supported)")
    acc = compute_dtype(out.dtype)
    t = element_type(acc)
    xp = _pad(x, list(padding), list(padding), 0.0)
    n, c, h, wd = shape_of(xp)
    f = shape_of(w)[0]
    oh, ow = out.shape[2], out.shape[3]
    strides, dilations = _attr(list(stride)), _attr(list(dilation))
    if groups == 1:
        init = full([n, f, oh, ow], t, 0.0)
        res = linalg.conv_2d_nchw_fchw(xp, w, outs=[init], strides=strides, dilations=dilations)
    else:
        g = groups
        xg = reshape(xp, [n, g, c // g, h, wd])
        wg = reshape(w, [g, f // g] + shape_of(w)[1:])
        init = full([n, g, f // g, oh, ow], t, 0.0)
        res = reshape(linalg.conv_2d_ngchw_gfchw(xg, wg, outs=[init], strides=strides, dilations=dilations),
                      [n, f, oh, ow])
    if bias is None:
        return elementwise(out.shape, out.dtype, [res], lambda v: v, [acc])
    return elementwise(out.shape, out.dtype, [res, reshape(bias, [f, 1, 1])], arith.addf, [acc, acc])


def _pool_geometry(node, x, kernel, stride, padding, dilation, ceil_mode):
    kernel = list(kernel)
    stride = list(stride) if stride else kernel
    padding = list(padding) * (2 // len(padding)) if padding else [0, 0]
    dilation = list(dilation) * (2 // len(dilation)) if dilation else [1, 1]
    out = node.meta["val"][0] if isinstance(node.meta["val"], (list, tuple)) else node.meta["val"]
    h, w = shape_of(x)[2:]
    high = []
    for i, size in enumerate((h, w)):
        need = (out.shape[2 + i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
        high.append(max(padding[i], need - size - padding[i]))  # ceil_mode may read past the end
    return kernel, stride, padding, high, dilation, out


@lowering(aten.max_pool2d_with_indices.default)
def max_pool2d(ctx, node, x, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    for user in node.users:
        if user.target is operator.getitem and user.args[1] == 1:
            raise UnsupportedOp(node, "max_pool2d indices are used (only the values are lowered)")
    kernel, stride, pad, high, dil, out = _pool_geometry(node, x, kernel_size, stride, padding, dilation, ceil_mode)
    et = element_type(out.dtype)
    xp = _pad(x, pad, high, lowest(et))
    init = full(out.shape, et, lowest(et))
    window = empty(kernel, et)
    res = linalg.pooling_nchw_max(xp, window, outs=[init], strides=_attr(stride), dilations=_attr(dil))
    return res, None  # the indices result is never read (checked above)


@lowering(aten.avg_pool2d.default)
def avg_pool2d(ctx, node, x, kernel_size, stride=(), padding=(0,), ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    kernel, stride, pad, high, dil, out = _pool_geometry(node, x, kernel_size, stride, padding, (1,), ceil_mode)
    if ceil_mode and any(h != p for h, p in zip(high, pad)):
        raise UnsupportedOp(node, "avg_pool2d with ceil_mode windows that run past the input")
    acc = compute_dtype(out.dtype)
    t = element_type(acc)
    xp = _pad(x, pad, high, 0.0)
    window = empty(kernel, t)
    sums = linalg.pooling_nchw_sum(xp, window, outs=[full(out.shape, t, 0.0)],
                                   strides=_attr(stride), dilations=_attr(dil))
    if divisor_override:
        divisor = float(divisor_override)
        return elementwise(out.shape, out.dtype, [sums], lambda s: arith.divf(s, const(divisor, s.type)), [acc])
    if count_include_pad or not any(pad):
        divisor = float(math.prod(kernel))
        return elementwise(out.shape, out.dtype, [sums], lambda s: arith.divf(s, const(divisor, s.type)), [acc])
    # count only real input elements: pool a ones image padded with zeros
    h, w = shape_of(x)[2:]
    ones = _pad(full([1, 1, h, w], t, 1.0), pad, high, 0.0)
    counts = linalg.pooling_nchw_sum(ones, window, outs=[full([1, 1] + list(out.shape[2:]), t, 0.0)],
                                     strides=_attr(stride), dilations=_attr(dil))
    return elementwise(out.shape, out.dtype, [sums, counts], arith.divf, [acc, acc])


@lowering(aten._adaptive_avg_pool2d.default)
def adaptive_avg_pool2d(ctx, node, x, output_size):
    """Window i spans [floor(i*H/OH), ceil((i+1)*H/OH)); a generic over (n, c, oh, ow, kh, kw)
    with the largest window, masking positions outside each window."""
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    t = element_type(acc)
    n, c, h, w = shape_of(x)
    oh, ow = out.shape[2], out.shape[3]
    kh = max(math.ceil((i + 1) * h / oh) - (i * h) // oh for i in range(oh))
    kw = max(math.ceil((j + 1) * w / ow) - (j * w) // ow for j in range(ow))
    idx = ir.IndexType.get()
    window = empty([kh, kw], t)
    imap = ir.AffineMap.get(6, 0, [ir.AffineDimExpr.get(4), ir.AffineDimExpr.get(5)])
    omap = ir.AffineMap.get(6, 0, [ir.AffineDimExpr.get(i) for i in range(4)])

    def bounds(o, size, osize):
        start = arith.floordivsi(arith.muli(o, const_index(size)), const_index(osize))
        end = arith.ceildivsi(arith.muli(arith.addi(o, const_index(1)), const_index(size)), const_index(osize))
        return start, end

    def const_index(v):
        return arith.ConstantOp(idx, ir.IntegerAttr.get(idx, v)).result

    def body(_, acc_v):
        hs, he = bounds(loop_index(2), h, oh)
        ws, we = bounds(loop_index(3), w, ow)
        hi = arith.addi(hs, loop_index(4))
        wi = arith.addi(ws, loop_index(5))
        inside = arith.andi(arith.cmpi(arith.CmpIPredicate.slt, hi, he), arith.cmpi(arith.CmpIPredicate.slt, wi, we))
        hc = arith.minsi(hi, const_index(h - 1))
        wc = arith.minsi(wi, const_index(w - 1))
        v = convert(tensor.extract(x, [loop_index(0), loop_index(1), hc, wc]), t)
        return arith.addf(acc_v, arith.select(inside, v, const(0.0, t)))

    sums = generic([window], [imap], [full([n, c, oh, ow], t, 0.0)], [omap],
                   ["parallel"] * 4 + ["reduction"] * 2, body)[0]

    def average(s):
        hs, he = bounds(loop_index(2), h, oh)
        ws, we = bounds(loop_index(3), w, ow)
        count = arith.muli(arith.subi(he, hs), arith.subi(we, ws))
        cnt = arith.sitofp(t, arith.index_cast(ir.IntegerType.get_signless(64), count))
        return arith.divf(s, cnt)

    return elementwise(out.shape, out.dtype, [sums], average, [acc])
