"""Shared IR builders for lowerings: typed constants, casts, broadcasting elementwise
generics, reductions and reshapes (and the two readers the op matchers share: static shapes,
integer constants). They build at the current insertion point and
location, which the importer sets per FX node."""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
from mlir import ir
from mlir.dialects import arith, linalg, tensor

from qmlir.ir.types import compute_dtype, element_type, scalar_type, torch_dtype

Scalar = Union[int, float, bool]
Operand = Union[ir.Value, Scalar]


def shape_of(v: ir.Value) -> list[int]:
    return list(ir.RankedTensorType(v.type).shape)


def static_shape(t: ir.Type) -> Optional[list]:
    """The shape of a ranked tensor or memref type with static sizes; else None."""
    if not isinstance(t, (ir.RankedTensorType, ir.MemRefType)):
        return None
    st = ir.ShapedType(t)
    return list(st.shape) if st.has_static_shape else None


def integer_constant(v: ir.Value) -> Optional[int]:
    """The value of an integer (or index) `arith.constant`; else None."""
    if isinstance(v, ir.OpResult) and v.owner.name == "arith.constant":
        attr = v.owner.attributes["value"]
        if isinstance(attr, ir.IntegerAttr):
            return int(attr.value)
    return None


def dtype_of(v: Union[ir.Value, Scalar]) -> torch.dtype:
    if isinstance(v, bool):
        return torch.bool
    if isinstance(v, int):
        return torch.int64
    if isinstance(v, float):
        return torch.float32
    return torch_dtype(v.type)


def is_float_type(t: ir.Type) -> bool:
    return isinstance(t, (ir.F32Type, ir.F64Type, ir.BF16Type, ir.F16Type))


def const(value: Scalar, t: ir.Type) -> ir.Value:
    """A scalar arith.constant of type `t` (infinities and NaN included)."""
    if is_float_type(t):
        return arith.ConstantOp(t, ir.FloatAttr.get(t, float(value))).result
    width = ir.IntegerType(t).width
    if width == 1:
        return arith.ConstantOp(t, ir.IntegerAttr.get(t, int(bool(value)))).result
    if isinstance(value, float):
        if math.isinf(value):
            value = (1 << (width - 1)) - 1 if value > 0 else -(1 << (width - 1))
        else:
            value = int(value)
    return arith.ConstantOp(t, ir.IntegerAttr.get(t, int(value))).result


def lowest(t: ir.Type) -> Scalar:
    return -math.inf if is_float_type(t) else -(1 << (ir.IntegerType(t).width - 1))


def highest(t: ir.Type) -> Scalar:
    return math.inf if is_float_type(t) else (1 << (ir.IntegerType(t).width - 1)) - 1


def _float_width(t: ir.Type) -> int:
    return {ir.F64Type: 64, ir.F32Type: 32, ir.BF16Type: 16, ir.F16Type: 16}[type(t)]


def convert(v: ir.Value, to: ir.Type) -> ir.Value:
    """Scalar conversion with PyTorch semantics (float->int truncates, x->bool is x != 0)."""
    src = v.type
    if src == to:
        return v
    if is_float_type(src) and is_float_type(to):
        ws, wt = _float_width(src), _float_width(to)
        if ws == wt:  # bf16 <-> f16 goes through f32
            return convert(convert(v, ir.F32Type.get()), to)
        return arith.extf(to, v) if wt > ws else arith.truncf(to, v)
    if is_float_type(to):
        return arith.uitofp(to, v) if ir.IntegerType(src).width == 1 else arith.sitofp(to, v)
    wt = ir.IntegerType(to).width
    if is_float_type(src):
        if wt == 1:
            return arith.cmpf(arith.CmpFPredicate.UNE, v, const(0.0, src))
        return arith.fptosi(to, v)
    ws = ir.IntegerType(src).width
    if wt == 1:
        return arith.cmpi(arith.CmpIPredicate.ne, v, const(0, src))
    if wt > ws:
        return arith.extui(to, v) if ws == 1 else arith.extsi(to, v)
    return arith.trunci(to, v)


def empty(shape: Sequence[int], t: ir.Type) -> ir.Value:
    return tensor.empty([int(s) for s in shape], t)


def full(shape: Sequence[int], t: ir.Type, value: Scalar) -> ir.Value:
    return linalg.fill(const(value, t), outs=[empty(shape, t)])


def broadcast_map(in_shape: Sequence[int], out_shape: Sequence[int]) -> ir.AffineMap:
    """Right-aligned NumPy broadcasting as an indexing map: size-1 input dims read index 0."""
    rank, in_rank = len(out_shape), len(in_shape)
    exprs = []
    for i, size in enumerate(in_shape):
        d = rank - in_rank + i
        if size == 1 and out_shape[d] != 1:
            exprs.append(ir.AffineConstantExpr.get(0))
        else:
            exprs.append(ir.AffineDimExpr.get(d))
    return ir.AffineMap.get(rank, 0, exprs)


def generic(
    inputs: Sequence[ir.Value],
    input_maps: Sequence[ir.AffineMap],
    inits: Sequence[ir.Value],
    init_maps: Sequence[ir.AffineMap],
    iterators: Sequence[str],
    body: Callable[..., Union[ir.Value, Sequence[ir.Value]]],
) -> list[ir.Value]:
    """linalg.generic with `body(*input_scalars, *init_scalars)` returning the yielded values."""
    it = {"parallel": linalg.IteratorType.parallel, "reduction": linalg.IteratorType.reduction}
    op = linalg.GenericOp(
        [v.type for v in inits],
        list(inputs),
        list(inits),
        ir.ArrayAttr.get([ir.AffineMapAttr.get(m) for m in list(input_maps) + list(init_maps)]),
        ir.ArrayAttr.get([ir.Attribute.parse(f"#linalg.iterator_type<{i}>") for i in iterators]),
    )
    block = op.regions[0].blocks.append(
        *[ir.RankedTensorType(v.type).element_type for v in list(inputs) + list(inits)]
    )
    with ir.InsertionPoint(block):
        out = body(*block.arguments)
        linalg.YieldOp(list(out) if isinstance(out, (list, tuple)) else [out])
    return list(op.results)


def elementwise(
    out_shape: Sequence[int],
    out_dtype: torch.dtype,
    operands: Sequence[Operand],
    body: Callable[..., ir.Value],
    operand_dtypes: Sequence[torch.dtype] | None = None,
) -> ir.Value:
    """A broadcasting elementwise op. Each operand (tensor or Python scalar) is converted to its
    entry of `operand_dtypes` (default: the compute dtype of `out_dtype`, so bf16/f16 math runs in
    f32 and rounds once, as PyTorch's CPU kernels do); `body` gets those scalars and its result is
    converted to `out_dtype`."""
    out_shape = [int(s) for s in out_shape]
    if operand_dtypes is None:
        operand_dtypes = [compute_dtype(out_dtype)] * len(operands)
    tensors = [v for v in operands if isinstance(v, ir.Value)]
    maps = [broadcast_map(shape_of(v), out_shape) for v in tensors]
    out_t = element_type(out_dtype)
    identity = ir.AffineMap.get_identity(len(out_shape))

    def scalar_body(*args):
        it = iter(args)
        vals = []
        for v, dt in zip(operands, operand_dtypes):
            target = scalar_type(dt)
            if isinstance(v, ir.Value):
                vals.append(convert(next(it), target))
            else:
                vals.append(const(v, target))
        # to the result's value type first (x -> bool is x != 0), then to its storage type
        return convert(convert(body(*vals), scalar_type(out_dtype)), out_t)

    return generic(tensors, maps, [empty(out_shape, out_t)], [identity],
                   ["parallel"] * len(out_shape), scalar_body)[0]


def reshape(v: ir.Value, new_shape: Sequence[int]) -> ir.Value:
    """Row-major reshape of a static tensor, as collapse_shape to 1-D then expand_shape."""
    new_shape = [int(s) for s in new_shape]
    old = shape_of(v)
    if old == new_shape:
        return v
    et = ir.RankedTensorType(v.type).element_type
    if not old:  # rank 0 -> all-ones shape
        return tensor.expand_shape(ir.RankedTensorType.get(new_shape, et), v, [], [], new_shape)
    if not new_shape:  # all-ones shape -> rank 0
        return tensor.collapse_shape(ir.RankedTensorType.get([], et), v, [])
    flat = v
    n = math.prod(old)
    if len(old) != 1:
        flat = tensor.collapse_shape(ir.RankedTensorType.get([n], et), v,
                                     [list(range(len(old)))])
    if len(new_shape) == 1:
        return flat
    return tensor.expand_shape(ir.RankedTensorType.get(new_shape, et), flat,
                               [list(range(len(new_shape)))], [], new_shape)


def reduce(
    x: ir.Value,
    dims: Sequence[int],
    acc_type: ir.Type,
    init: Scalar,
    combine: Callable[[ir.Value, ir.Value], ir.Value],
    keepdim: bool = False,
) -> ir.Value:
    """Reduce `x` over `dims` with `combine(acc, element_converted_to_acc_type)`."""
    shape = shape_of(x)
    rank = len(shape)
    dims = sorted({d % rank for d in dims}) if rank else []
    kept = [d for d in range(rank) if d not in dims]
    out_shape = [shape[d] for d in kept]
    init_v = full(out_shape, acc_type, init)
    in_map = ir.AffineMap.get_identity(rank)
    out_map = ir.AffineMap.get(rank, 0, [ir.AffineDimExpr.get(d) for d in kept])
    iters = ["reduction" if d in dims else "parallel" for d in range(rank)]
    res = generic([x], [in_map], [init_v], [out_map], iters,
                  lambda a, acc: combine(acc, convert(a, acc_type)))[0]
    if keepdim:
        res = reshape(res, [1 if d in dims else shape[d] for d in range(rank)])
    return res


def loop_index(dim: int) -> ir.Value:
    """linalg.index inside a generic body (`linalg.index` in the bindings is opdsl's, not the op)."""
    return linalg.IndexOp(dim).result
