"""Writes: index_put (index_copy decomposes to it), scatter / scatter_add, slice_scatter, and
copy_ into a graph input (input mutation). (select_scatter decomposes to a where.)

Functional writes produce a new tensor from their destination operand; bufferization turns
each into a write in place when nothing reads the old value afterwards (a KV-cache update
`index_put(cache, [None, None, pos], kv)` writes only the new rows, it copies nothing else).

Input mutation: AOT autograd (keep_inference_input_mutations) ends a graph that mutates an
input with `aten.copy_(input, new_value)`. The input's argument is declared
`bufferization.writable = true` and the new value becomes a trailing result named in
`qmlir.mutated_results` (qmlir/ir/specs.py). One-shot bufferization computes an index_put chain
rooted at the input in its own buffer (no copy of a KV cache); after it,
qmlir-drop-mutated-results writes any value computed elsewhere into the argument and removes
those results. The compiled code writes the caller's tensor in place; every other argument
stays read-only (qmlir-protect-arguments).

Data-dependent indices are bounds-checked like gathers (qmlir/ir/checks.py): a write goes to
the index clamped into range, never outside the tensor, and the call raises
`qmlir.IndexOutOfRangeError` when one was out of range.
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from mlir import ir
from mlir.dialects import arith, scf, tensor

from qmlir.dialect_ops.elementwise import _add as _add_scalar
from qmlir.dialect_ops.registry import lowering
from qmlir.dialect_ops.shape import slice_geometry
from qmlir.errors import UnsupportedOp
from qmlir.ir.builders import const, dtype_of, elementwise, reshape, shape_of
from qmlir.ir.checks import clamp_index, index_range_check
from qmlir.ir.types import element_type

aten = torch.ops.aten

WRITABLE = "bufferization.writable"


def _index(v: int) -> ir.Value:
    return arith.constant(ir.IndexType.get(), int(v))


def _delinearize(flat: ir.Value, shape: Sequence[int]) -> List[ir.Value]:
    """Row-major coordinates (index values) of position `flat` in `shape`."""
    coords, rest = [], flat
    for d in range(len(shape) - 1, -1, -1):
        if d == 0:
            coords.append(rest)
        else:
            coords.append(arith.remui(rest, _index(shape[d])))
            rest = arith.divui(rest, _index(shape[d]))
    return coords[::-1]


def _as(v: ir.Value, shape: Sequence[int], dtype: torch.dtype) -> ir.Value:
    """`v` broadcast to `shape` and converted to `dtype` (a copy only when it is not already)."""
    if shape_of(v) == list(shape) and dtype_of(v) == dtype:
        return v
    return elementwise(shape, dtype, [v], lambda x: x, [dtype])


def _loop(n: int, dest: ir.Value, body) -> ir.Value:
    """scf.for i in [0, n) carrying `dest`; `body(i, dest) -> new dest`. The loop-carried tensor
    bufferizes in place, so each iteration writes only what `body` inserts."""
    loop = scf.ForOp(_index(0), _index(n), _index(1), [dest])
    with ir.InsertionPoint(loop.body):
        scf.YieldOp([body(loop.induction_variable, loop.inner_iter_args[0])])
    return loop.results[0]


def _mixed(offsets) -> tuple[list, list]:
    """(dynamic offset values, static offsets with the dynamic marker) of int-or-index offsets."""
    dyn = [o for o in offsets if isinstance(o, ir.Value)]
    static = [ir.ShapedType.get_dynamic_stride_or_offset() if isinstance(o, ir.Value) else int(o) for o in offsets]
    return dyn, static


def _slice(x: ir.Value, offsets, sizes) -> ir.Value:
    """tensor.extract_slice of `sizes` (full rank, unit strides) at int-or-index `offsets`."""
    et = ir.RankedTensorType(x.type).element_type
    dyn, static = _mixed(offsets)
    return tensor.extract_slice(ir.RankedTensorType.get(list(sizes), et), x, dyn, [], [],
                                static, list(sizes), [1] * len(sizes))


def _insert(src: ir.Value, dest: ir.Value, offsets, sizes) -> ir.Value:
    dyn, static = _mixed(offsets)
    return tensor.insert_slice(src, dest, dyn, [], [], static, list(sizes), [1] * len(sizes))


@lowering(aten.index_put.default)
def index_put(ctx, node, x, indices, values, accumulate=False):
    """out = x; out[indices] = values (or += with accumulate), NumPy placement of the indexed
    dims; one loop iteration per index position writes one slice of the un-indexed dims."""
    shape = shape_of(x)
    rank = len(shape)
    dtype = node.meta["val"].dtype
    indices = list(indices) + [None] * (rank - len(indices))
    pos = [i for i, t in enumerate(indices) if t is not None]
    if not pos:
        raise UnsupportedOp(node, "index_put without an index tensor")
    for i in pos:
        if node.args[1][i].meta["val"].dtype == torch.bool:
            raise UnsupportedOp(node, "boolean-mask index_put (masked writes): use torch.where")
        if shape[i] == 0:
            raise UnsupportedOp(node, f"index_put into dimension {i} of size 0")
    idx_shapes = [shape_of(indices[i]) for i in pos]
    b_shape = list(torch.broadcast_shapes(*[torch.Size(s) for s in idx_shapes]))
    free = [d for d in range(rank) if d not in pos]
    adjacent = pos == list(range(pos[0], pos[-1] + 1))
    b_at = pos[0] if adjacent else 0  # where the broadcast index dims sit in the indexed view
    view = [shape[d] for d in free]
    view[b_at:b_at] = b_shape
    vals = _as(values, view, dtype)
    for i in pos:
        ctx.add_check(node, index_range_check(indices[i], -shape[i], shape[i]),
                      f"index {{index}} is out of bounds for dimension {i} with size {shape[i]}")
    nb = len(b_shape)

    def body(flat, dest):
        b = _delinearize(flat, b_shape) if b_shape else []
        where = {}
        for i, s in zip(pos, idx_shapes):
            # right-aligned broadcast of this index tensor onto b_shape
            at = [_index(0) if size == 1 and b_shape[nb - len(s) + k] != 1 else b[nb - len(s) + k]
                  for k, size in enumerate(s)]
            where[i] = clamp_index(tensor.extract(indices[i], at), shape[i], True)
        offsets = [where.get(d, 0) for d in range(rank)]
        sizes = [1 if d in where else shape[d] for d in range(rank)]
        v_off = [0] * (len(view))
        v_off[b_at:b_at + nb] = b
        v_sizes = list(view)
        v_sizes[b_at:b_at + nb] = [1] * nb
        # full-rank slices reshaped, not rank-reducing ones: canonicalize folds a rank-reduced
        # slice of a one-trip loop into an out-of-bounds one (MLIR 22)
        piece = reshape(_slice(vals, v_off, v_sizes), sizes)
        if accumulate:
            piece = elementwise(sizes, dtype, [_slice(dest, offsets, sizes), piece], _add_scalar)
        return _insert(piece, dest, offsets, sizes)

    return _loop(math.prod(b_shape), x, body)


def _scatter(ctx, node, x, dim, index, src, combine=None):
    """out = x; out[..., index[p], ...] (dim `dim`) = src[p] (or combine(out, src[p])) for every
    position p of `index`; src is a tensor (read at p) or a scalar."""
    shape = shape_of(x)
    rank = len(shape)
    d = dim % rank if rank else 0
    dtype = node.meta["val"].dtype
    ishape = shape_of(index)
    if math.prod(ishape) == 0:
        return x
    if shape[d] == 0:
        raise UnsupportedOp(node, f"scatter into dimension {d} of size 0")
    ctx.add_check(node, index_range_check(index, 0, shape[d]),
                  f"index {{index}} is out of bounds for dimension {d} with size {shape[d]}")
    et = element_type(dtype)
    if isinstance(src, ir.Value):
        src = _as(src, shape_of(src), dtype)

    def body(flat, dest):
        p = _delinearize(flat, ishape) if ishape else []
        at = list(p)
        if rank:
            at[d] = clamp_index(tensor.extract(index, p), shape[d], False)
        if isinstance(src, ir.Value):
            v = tensor.extract(src, p)
        else:
            v = const(src, et)
        if combine is not None:
            v = combine(tensor.extract(dest, at), v)
        return tensor.insert(v, dest, at)

    return _loop(math.prod(ishape), x, body)


@lowering(aten.scatter.src, aten.scatter.value)
def scatter(ctx, node, x, dim, index, src):
    return _scatter(ctx, node, x, dim, index, src)


@lowering(aten.scatter_add.default)
def scatter_add(ctx, node, x, dim, index, src):
    if node.meta["val"].dtype in (torch.bfloat16, torch.float16):
        raise UnsupportedOp(node, "scatter_add in bf16/f16 (accumulation order differs from eager's)")
    return _scatter(ctx, node, x, dim, index, src, combine=_add_scalar)


@lowering(aten.slice_scatter.default)
def slice_scatter(ctx, node, x, src, dim=0, start=None, end=None, step=1):
    offsets, sizes, strides = slice_geometry(shape_of(x), dim, start, end, step)
    if 0 in sizes:
        return x  # an empty slice writes nothing
    src = _as(src, sizes, node.meta["val"].dtype)
    return tensor.insert_slice(src, x, [], [], [], offsets, sizes, strides)


@lowering(aten.copy_.default)
def copy_(ctx, node, dst, src, non_blocking=False):
    """The write-back of a mutated graph input: `src` (broadcast and converted to the input's
    dtype) is the input's new value, written into its buffer (the argument is declared writable)."""
    target = node.args[0]
    if not (isinstance(target, torch.fx.Node) and target.op == "placeholder"):
        raise UnsupportedOp(node, "copy_ into a value that is not a graph input (functionalization "
                                  "leaves copy_ only for input mutations)")
    if target in ctx.constants:
        raise UnsupportedOp(node, "the graph writes into a compile-time constant input (a frozen buffer)")
    value = _as(src, shape_of(dst), node.meta["val"].dtype)
    arg = ir.BlockArgument(dst)
    if any(a == arg.arg_number for a, _ in ctx.mutations):
        raise UnsupportedOp(node, "a second copy_ into the same graph input")
    mark_writable(arg)
    ctx.mutations.append((arg.arg_number, value))
    return value


def mark_writable(arg: ir.BlockArgument) -> None:
    """Declare a function argument written in place: `{bufferization.writable = true}`."""
    fn = arg.owner.owner
    n = len(arg.owner.arguments)
    old = list(ir.ArrayAttr(fn.attributes["arg_attrs"])) if "arg_attrs" in fn.attributes \
        else [ir.DictAttr.get({})] * n
    entries = {a.name: a.attr for a in ir.DictAttr(old[arg.arg_number])}
    entries[WRITABLE] = ir.BoolAttr.get(True)
    old[arg.arg_number] = ir.DictAttr.get(entries)
    fn.attributes["arg_attrs"] = ir.ArrayAttr.get(old)
