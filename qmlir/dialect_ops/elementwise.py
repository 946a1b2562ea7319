"""Elementwise ATen ops (arithmetic, comparisons, logic, activations) as broadcasting
linalg.generic ops. Float math on bf16/f16 runs in f32 and rounds once, as PyTorch's
CPU kernels do."""
from __future__ import annotations

import math
from typing import Callable

import torch
from mlir import ir
from mlir.dialects import arith
from mlir.dialects import math as m

from qmlir.ir.builders import const, dtype_of, elementwise, is_float_type
from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp
from qmlir.ir.types import compute_dtype

aten = torch.ops.aten


def _meta_like(v) -> object:
    """What torch.result_type needs to promote like the original operand."""
    if isinstance(v, (bool, int, float)):
        return v
    t = v.meta["val"] if isinstance(v, torch.fx.Node) else v
    return torch.empty([] if t.dim() == 0 else [1], dtype=t.dtype, device="meta")


def promoted_dtype(node: torch.fx.Node, *positions: int) -> torch.dtype:
    """torch's result dtype of the node's operands at `positions`."""
    ops = [_meta_like(node.args[i]) for i in positions]
    dt = ops[0].dtype if len(ops) == 1 and isinstance(ops[0], torch.Tensor) else None
    return dt if dt is not None else torch.result_type(*ops)


def _out(node):
    return node.meta["val"]


def _unary(node, x, fn, in_dtype=None):
    out = _out(node)
    dts = None if in_dtype is None else [in_dtype]
    return elementwise(out.shape, out.dtype, [x], fn, dts)


def _binary(node, a, b, fn, operand_dtype=None):
    out = _out(node)
    dts = None if operand_dtype is None else [operand_dtype, operand_dtype]
    return elementwise(out.shape, out.dtype, [a, b], fn, dts)


def _f(fop, iop):
    """Dispatch a binary scalar op on float vs integer element type."""
    return lambda x, y: fop(x, y) if is_float_type(x.type) else iop(x, y)


_add = _f(arith.addf, arith.addi)
_sub = _f(arith.subf, arith.subi)
_mul = _f(arith.mulf, arith.muli)


@lowering(aten.add.Tensor)
def add(ctx, node, a, b, alpha=1):
    if alpha == 1:
        return _binary(node, a, b, _add)
    return _binary(node, a, b, lambda x, y: _add(x, _mul(y, const(alpha, y.type))))


@lowering(aten.sub.Tensor)
def sub(ctx, node, a, b, alpha=1):
    if alpha == 1:
        return _binary(node, a, b, _sub)
    return _binary(node, a, b, lambda x, y: _sub(x, _mul(y, const(alpha, y.type))))


@lowering(aten.mul.Tensor, aten.mul.Scalar)
def mul(ctx, node, a, b):
    return _binary(node, a, b, _mul)


@lowering(aten.div.Tensor)
def div(ctx, node, a, b):
    if not _out(node).dtype.is_floating_point:
        raise UnsupportedOp(node, "true division with an integer result")
    return _binary(node, a, b, arith.divf)


@lowering(aten.div.Tensor_mode)
def div_mode(ctx, node, a, b, rounding_mode=None):
    out = _out(node)
    if out.dtype.is_floating_point:
        rnd = {None: lambda v: v, "trunc": m.trunc, "floor": m.floor}[rounding_mode]
        return _binary(node, a, b, lambda x, y: rnd(arith.divf(x, y)))
    if rounding_mode == "trunc":
        return _binary(node, a, b, arith.divsi)
    if rounding_mode == "floor":
        return _binary(node, a, b, arith.floordivsi)
    raise UnsupportedOp(node, "true division with an integer result")


@lowering(aten.remainder.Tensor, aten.remainder.Scalar)
def remainder(ctx, node, a, b):
    def rem(x, y):
        if is_float_type(x.type):  # Python-style: result takes the sign of the divisor
            return arith.subf(x, arith.mulf(m.floor(arith.divf(x, y)), y))
        r = arith.remsi(x, y)
        fix = arith.andi(arith.cmpi(arith.CmpIPredicate.ne, r, const(0, r.type)),
                         arith.cmpi(arith.CmpIPredicate.slt, arith.xori(r, y), const(0, r.type)))
        return arith.select(fix, arith.addi(r, y), r)
    return _binary(node, a, b, rem)


@lowering(aten.neg.default)
def neg(ctx, node, x):
    return _unary(node, x, lambda v: arith.negf(v) if is_float_type(v.type) else arith.subi(const(0, v.type), v))


@lowering(aten.abs.default)
def abs_(ctx, node, x):
    return _unary(node, x, lambda v: m.absf(v) if is_float_type(v.type) else m.absi(v))


def _float_unary(fn: Callable[[ir.Value], ir.Value]):
    def lower(ctx, node, x):
        if not _out(node).dtype.is_floating_point:
            raise UnsupportedOp(node, f"integer input (result dtype {_out(node).dtype})")
        return _unary(node, x, fn)
    return lower


def _one(v):
    return const(1.0, v.type)


def _sigmoid(v):
    return arith.divf(_one(v), arith.addf(_one(v), m.exp(arith.negf(v))))


def _gelu_erf(v):
    half = const(0.5, v.type)
    return arith.mulf(arith.mulf(half, v), arith.addf(_one(v), m.erf(arith.mulf(v, const(math.sqrt(0.5), v.type)))))


def _gelu_tanh(v):
    inner = arith.mulf(const(math.sqrt(2.0 / math.pi), v.type),
                       arith.addf(v, arith.mulf(const(0.044715, v.type), arith.mulf(v, arith.mulf(v, v)))))
    return arith.mulf(arith.mulf(const(0.5, v.type), v), arith.addf(_one(v), m.tanh(inner)))


_FLOAT_UNARY = {
    aten.exp.default: m.exp,
    aten.log.default: m.log,
    aten.log1p.default: m.log1p,
    aten.expm1.default: m.expm1,
    aten.sqrt.default: m.sqrt,
    aten.rsqrt.default: m.rsqrt,
    aten.sin.default: m.sin,
    aten.cos.default: m.cos,
    aten.tanh.default: m.tanh,
    aten.erf.default: m.erf,
    aten.floor.default: m.floor,
    aten.ceil.default: m.ceil,
    aten.reciprocal.default: lambda v: arith.divf(_one(v), v),
    aten.sigmoid.default: _sigmoid,
}
for _op, _fn in _FLOAT_UNARY.items():
    lowering(_op)(_float_unary(_fn))


@lowering(aten.gelu.default)
def gelu(ctx, node, x, approximate="none"):
    return _float_unary({"none": _gelu_erf, "tanh": _gelu_tanh}[approximate])(ctx, node, x)


@lowering(aten.relu.default)
def relu(ctx, node, x):
    def body(v):
        if is_float_type(v.type):  # NaN propagates, as in torch
            return arith.select(arith.cmpf(arith.CmpFPredicate.UGT, v, const(0.0, v.type)), v,
                                arith.select(arith.cmpf(arith.CmpFPredicate.UNO, v, v), v, const(0.0, v.type)))
        return arith.maxsi(v, const(0, v.type))
    return _unary(node, x, body)


def _pow_scalar_exponent(v, e):
    if e == 2:
        return arith.mulf(v, v)
    if e == 3:
        return arith.mulf(arith.mulf(v, v), v)
    if e == 0.5:
        return m.sqrt(v)
    if e == -0.5:
        return m.rsqrt(v)
    if e == -1:
        return arith.divf(_one(v), v)
    if e == 1:
        return v
    return m.powf(v, const(float(e), v.type))


@lowering(aten.pow.Tensor_Scalar)
def pow_tensor_scalar(ctx, node, x, exponent):
    out = _out(node)
    if out.dtype.is_floating_point:
        return elementwise(out.shape, out.dtype, [x], lambda v: _pow_scalar_exponent(v, exponent))
    if not isinstance(exponent, int) or exponent < 0:
        raise UnsupportedOp(node, "integer tensor to a negative or non-integer power")
    return elementwise(out.shape, out.dtype, [x], lambda v: m.ipowi(v, const(exponent, v.type)))


@lowering(aten.pow.Tensor_Tensor, aten.pow.Scalar)
def pow_general(ctx, node, a, b):
    if not _out(node).dtype.is_floating_point:
        raise UnsupportedOp(node, "integer power of a tensor exponent")
    return _binary(node, a, b, m.powf)


_CMP = {
    "eq": (arith.CmpFPredicate.OEQ, arith.CmpIPredicate.eq),
    "ne": (arith.CmpFPredicate.UNE, arith.CmpIPredicate.ne),
    "lt": (arith.CmpFPredicate.OLT, arith.CmpIPredicate.slt),
    "le": (arith.CmpFPredicate.OLE, arith.CmpIPredicate.sle),
    "gt": (arith.CmpFPredicate.OGT, arith.CmpIPredicate.sgt),
    "ge": (arith.CmpFPredicate.OGE, arith.CmpIPredicate.sge),
}


def _compare(fpred, ipred):
    def lower(ctx, node, a, b):
        operand = compute_dtype(promoted_dtype(node, 0, 1))
        if operand == torch.bool:
            operand = torch.int8  # compare booleans as 0/1 integers (i1 'slt' would see 1 as -1)
        return _binary(node, a, b, lambda x, y: arith.cmpf(fpred, x, y) if is_float_type(x.type)
                       else arith.cmpi(ipred, x, y), operand)
    return lower


for _name, (_fp, _ip) in _CMP.items():
    lowering(getattr(aten, _name).Tensor, getattr(aten, _name).Scalar)(_compare(_fp, _ip))


def _extreme(fop, iop):
    def lower(ctx, node, a, b):
        return _binary(node, a, b, lambda x, y: fop(x, y) if is_float_type(x.type) else iop(x, y))
    return lower


lowering(aten.maximum.default)(_extreme(arith.maximumf, arith.maxsi))
lowering(aten.minimum.default)(_extreme(arith.minimumf, arith.minsi))


@lowering(aten.clamp.default)
def clamp(ctx, node, x, min=None, max=None):
    def body(v):
        if min is not None:
            lo = const(min, v.type)
            v = arith.maximumf(v, lo) if is_float_type(v.type) else arith.maxsi(v, lo)
        if max is not None:
            hi = const(max, v.type)
            v = arith.minimumf(v, hi) if is_float_type(v.type) else arith.minsi(v, hi)
        return v
    return _unary(node, x, body)


@lowering(aten.where.self)
def where(ctx, node, cond, a, b):
    out = _out(node)
    ct = compute_dtype(out.dtype)
    return elementwise(out.shape, out.dtype, [cond, a, b], arith.select, [torch.bool, ct, ct])


def _logical(fn):
    def lower(ctx, node, a, b):
        return _binary(node, a, b, fn, torch.bool)
    return lower


lowering(aten.logical_and.default)(_logical(arith.andi))
lowering(aten.logical_or.default)(_logical(arith.ori))
lowering(aten.logical_xor.default)(_logical(arith.xori))


@lowering(aten.logical_not.default)
def logical_not(ctx, node, x):
    return _unary(node, x, lambda v: arith.xori(v, const(1, v.type)), torch.bool)


def _bitwise(fn):
    def lower(ctx, node, a, b):
        out = _out(node)
        if out.dtype.is_floating_point:
            raise UnsupportedOp(node, "bitwise op on floats")
        return _binary(node, a, b, fn)
    return lower


lowering(aten.bitwise_and.Tensor, aten.bitwise_and.Scalar)(_bitwise(arith.andi))
lowering(aten.bitwise_or.Tensor, aten.bitwise_or.Scalar)(_bitwise(arith.ori))
lowering(aten.bitwise_xor.Tensor, aten.bitwise_xor.Scalar)(_bitwise(arith.xori))


@lowering(aten.bitwise_not.default)
def bitwise_not(ctx, node, x):
    # bool values are i1 inside the body, so xor with 1 flips them; integers flip every bit
    return _unary(node, x, lambda v: arith.xori(v, const(-1 if v.type.width > 1 else 1, v.type)))


@lowering(aten._to_copy.default)
def to_copy(ctx, node, x, dtype=None, layout=None, device=None, pin_memory=None,
            non_blocking=False, memory_format=None):
    out = _out(node)
    src = node.args[0].meta["val"].device
    if out.device != src:  # a dtype change stays on the graph's device (CPU or CUDA target)
        raise UnsupportedOp(node, f"copy from {src} to device {out.device}")
    return elementwise(out.shape, out.dtype, [x], lambda v: v, [dtype_of(x)])


@lowering(aten.clone.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default)
def identity(ctx, node, x, memory_format=None):
    return x
