"""Gathers: embedding, advanced indexing (index.Tensor), gather, index_select. Each is a
linalg.generic over the output whose body reads the source with tensor.extract.

Indices come from data, so they are bounds-checked (qmlir/ir/checks.py): the read is at the index
clamped into range (never out of bounds), and a run-time check over the index tensor makes the
call raise `qmlir.IndexOutOfRangeError` as eager raises IndexError. Negative indices follow
PyTorch: advanced indexing wraps them (-1 is the last), embedding, index_select and gather
reject them."""
from __future__ import annotations

from typing import Sequence

import torch
from mlir import ir
from mlir.dialects import tensor

from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp
from qmlir.ir.builders import empty, generic, loop_index, shape_of
from qmlir.ir.checks import clamp_index, index_range_check
from qmlir.ir.types import element_type

aten = torch.ops.aten


def _checked(ctx, node, indices: ir.Value, size: int, dim: int, wrap_negative: bool) -> None:
    """Bounds-check `indices` against a source dimension of `size` (the lowering clamps the read)."""
    if size == 0:
        raise UnsupportedOp(node, f"indexing into dimension {dim} of size 0")
    lo = -size if wrap_negative else 0
    ctx.add_check(node, index_range_check(indices, lo, size),
                  f"index {{index}} is out of bounds for dimension {dim} with size {size}")


def _map(shape: Sequence[int], target: Sequence[int], offset: int, rank: int) -> ir.AffineMap:
    """Broadcast `shape` right-aligned onto output dims [offset, offset + len(target))."""
    exprs = []
    for i, size in enumerate(shape):
        d = offset + len(target) - len(shape) + i
        exprs.append(ir.AffineConstantExpr.get(0) if size == 1 and target[d - offset] != 1
                     else ir.AffineDimExpr.get(d))
    return ir.AffineMap.get(rank, 0, exprs)


def _gather_generic(out_node, src: ir.Value, index_inputs, index_maps, coords) -> ir.Value:
    """Generic over the output; `coords(idx_scalars) -> list[index]` says where to read `src`."""
    out = out_node.meta["val"]
    rank = len(out.shape)
    et = element_type(out.dtype)
    identity = ir.AffineMap.get_identity(rank)
    return generic(index_inputs, index_maps, [empty(out.shape, et)], [identity], ["parallel"] * rank,
                   lambda *a: tensor.extract(src, coords(a[:-1])))[0]


@lowering(aten.embedding.default)
def embedding(ctx, node, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    rows = shape_of(weight)[0]
    r = len(shape_of(indices))
    _checked(ctx, node, indices, rows, 0, wrap_negative=False)
    m = ir.AffineMap.get(r + 1, 0, [ir.AffineDimExpr.get(i) for i in range(r)])
    return _gather_generic(node, weight, [indices], [m],
                           lambda a: [clamp_index(a[0], rows, False), loop_index(r)])


@lowering(aten.index_select.default)
def index_select(ctx, node, x, dim, index):
    shape = shape_of(x)
    d = dim % len(shape)
    rank = len(shape)
    _checked(ctx, node, index, shape[d], d, wrap_negative=False)
    m = ir.AffineMap.get(rank, 0, [ir.AffineDimExpr.get(d)])
    return _gather_generic(node, x, [index], [m],
                           lambda a: [clamp_index(a[0], shape[d], False) if i == d else loop_index(i)
                                      for i in range(rank)])


@lowering(aten.gather.default)
def gather(ctx, node, x, dim, index, sparse_grad=False):
    shape = shape_of(x)
    rank = len(shape)
    d = dim % rank
    identity = ir.AffineMap.get_identity(rank)
    _checked(ctx, node, index, shape[d], d, wrap_negative=False)
    return _gather_generic(node, x, [index], [identity],
                           lambda a: [clamp_index(a[0], shape[d], False) if i == d else loop_index(i)
                                      for i in range(rank)])


@lowering(aten.index.Tensor)
def index(ctx, node, x, indices):
    """x[i0, :, i2, ...] with integer index tensors (None = whole dim), NumPy placement rules."""
    shape = shape_of(x)
    out_shape = [int(s) for s in node.meta["val"].shape]
    rank = len(out_shape)
    indices = list(indices) + [None] * (len(shape) - len(indices))
    pos = [i for i, t in enumerate(indices) if t is not None]
    for i in pos:
        if node.args[1][i].meta["val"].dtype == torch.bool:
            raise UnsupportedOp(node, "boolean-mask indexing (its result shape depends on the data)")
    idx_shapes = [shape_of(indices[i]) for i in pos]
    b_rank = max(len(s) for s in idx_shapes)
    adjacent = pos == list(range(pos[0], pos[-1] + 1))
    b_offset = pos[0] if adjacent else 0
    b_shape = out_shape[b_offset:b_offset + b_rank]
    maps = [_map(s, b_shape, b_offset, rank) for s in idx_shapes]
    # output dims that walk the un-indexed source dims, in order
    free_out = [d for d in range(rank) if not (b_offset <= d < b_offset + b_rank)]
    free_src = [d for d in range(len(shape)) if d not in pos]
    for i in pos:
        _checked(ctx, node, indices[i], shape[i], i, wrap_negative=True)

    def coords(a):
        it = iter(a)
        where = dict(zip(free_src, free_out))
        return [clamp_index(next(it), shape[d], True) if d in pos else loop_index(where[d])
                for d in range(len(shape))]

    return _gather_generic(node, x, [indices[i] for i in pos], maps, coords)
