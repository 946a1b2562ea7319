"""Shape and layout ops: view/reshape, permute, expand, slice, select, cat, split, copy.
Views become tensor reshapes and slices, which bufferize to memref views without copies."""
from __future__ import annotations

import torch
from mlir import ir
from mlir.dialects import linalg, tensor

from qmlir.ir.builders import dtype_of, elementwise, empty, reshape, shape_of
from qmlir.dialect_ops.registry import lowering
from qmlir.ir.types import element_type

aten = torch.ops.aten


def _out_shape(node) -> list[int]:
    return [int(s) for s in node.meta["val"].shape]


@lowering(aten.view.default, aten._unsafe_view.default, aten.reshape.default,
          aten.unsqueeze.default, aten.squeeze.dims)
def view(ctx, node, x, *shape_args):
    return reshape(x, _out_shape(node))


@lowering(aten.permute.default)
def permute(ctx, node, x, dims):
    rank = len(shape_of(x))
    perm = [d % rank for d in dims]
    if perm == list(range(rank)):
        return x
    et = ir.RankedTensorType(x.type).element_type
    return linalg.transpose(x, outs=[empty(_out_shape(node), et)], permutation=perm).result


@lowering(aten.expand.default)
def expand(ctx, node, x, sizes, implicit=False):
    return elementwise(_out_shape(node), node.meta["val"].dtype, [x], lambda v: v, [dtype_of(x)])


@lowering(aten.copy.default)
def copy(ctx, node, dst, src, non_blocking=False):
    return elementwise(_out_shape(node), node.meta["val"].dtype, [src], lambda v: v, [dtype_of(src)])


def extract(x: ir.Value, offsets, sizes, strides) -> ir.Value:
    et = ir.RankedTensorType(x.type).element_type
    return tensor.extract_slice(ir.RankedTensorType.get(list(sizes), et), x, [], [], [],
                                list(offsets), list(sizes), list(strides))


def _slice_bounds(size: int, start, end, step: int) -> tuple[int, int]:
    start = 0 if start is None else start
    end = size if end is None else end
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    start = min(max(start, 0), size)
    end = min(max(end, start), size)
    return start, max(0, (end - start + step - 1) // step)


def slice_geometry(shape, dim: int, start, end, step: int) -> tuple[list[int], list[int], list[int]]:
    """(offsets, sizes, strides) of `x[..., start:end:step, ...]` along `dim` of a tensor of `shape`."""
    d = dim % len(shape)
    begin, count = _slice_bounds(shape[d], start, end, step)
    offsets = [0] * len(shape)
    offsets[d] = begin
    sizes = list(shape)
    sizes[d] = count
    strides = [1] * len(shape)
    strides[d] = step
    return offsets, sizes, strides


@lowering(aten.slice.Tensor)
def slice_(ctx, node, x, dim=0, start=None, end=None, step=1):
    shape = shape_of(x)
    offsets, sizes, strides = slice_geometry(shape, dim, start, end, step)
    if sizes == shape and step == 1:
        return x
    return extract(x, offsets, sizes, strides)


@lowering(aten.select.int)
def select(ctx, node, x, dim, index):
    shape = shape_of(x)
    d = dim % len(shape)
    offsets = [0] * len(shape)
    offsets[d] = index % shape[d]
    sizes = list(shape)
    sizes[d] = 1
    return reshape(extract(x, offsets, sizes, [1] * len(shape)), _out_shape(node))


@lowering(aten.split_with_sizes.default)
def split_with_sizes(ctx, node, x, split_sizes, dim=0):
    shape = shape_of(x)
    d = dim % len(shape)
    parts, offset = [], 0
    for size in split_sizes:
        offsets = [0] * len(shape)
        offsets[d] = offset
        sizes = list(shape)
        sizes[d] = size
        parts.append(extract(x, offsets, sizes, [1] * len(shape)))
        offset += size
    return tuple(parts)


@lowering(aten.cat.default)
def cat(ctx, node, tensors, dim=0):
    out_shape = _out_shape(node)
    out_dtype = node.meta["val"].dtype
    d = dim % len(out_shape)
    result = empty(out_shape, element_type(out_dtype))
    offset = 0
    for t in tensors:
        shape = shape_of(t)
        if len(shape) != len(out_shape):  # legacy: 1-D empty tensors are skipped by torch.cat
            continue
        if dtype_of(t) != out_dtype:
            t = elementwise(shape, out_dtype, [t], lambda v: v, [dtype_of(t)])
        offsets = [0] * len(shape)
        offsets[d] = offset
        result = tensor.insert_slice(t, result, [], [], [], offsets, shape, [1] * len(shape))
        offset += shape[d]
    return result

