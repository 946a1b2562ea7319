"""Run-time checks in compiled code: what a lowering cannot know at compile time (an index
read from data) is checked while the function runs, and reported after it returns.

A check is a `tensor<2xi64>` result of the compiled function: [how many elements failed, one
failing value]. The importer appends one result per check and records, on the function, a
message template per check (`qmlir.checks = ["... index {index} ..."]`); the runtime strips
these results and raises `qmlir.IndexOutOfRangeError` with the first failed check's message.
The checks are one reduction pass each over an index tensor (outside the gather's loop), and
the gather itself reads at the index clamped into range, so an out-of-range index is never
read, whatever the data.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, tensor

from qmlir.ir.builders import const, full, generic

CHECKS_ATTR = "qmlir.checks"


def _i64(v: ir.Value) -> ir.Value:
    t = ir.IntegerType(v.type)
    return v if t.width == 64 else arith.extsi(ir.IntegerType.get_signless(64), v)


def out_of_range(v: ir.Value, lo: int, hi: int) -> ir.Value:
    """i1: the integer `v` is outside [lo, hi)."""
    v = _i64(v)
    return arith.ori(arith.cmpi(arith.CmpIPredicate.slt, v, const(lo, v.type)),
                     arith.cmpi(arith.CmpIPredicate.sge, v, const(hi, v.type)))


def index_range_check(indices: ir.Value, lo: int, hi: int) -> ir.Value:
    """tensor<2xi64>: [number of elements of `indices` outside [lo, hi), one such element]."""
    t = ir.RankedTensorType(indices.type)
    i64 = ir.IntegerType.get_signless(64)
    rank = t.rank
    in_map = ir.AffineMap.get_identity(rank)
    out_map = ir.AffineMap.get(rank, 0, [])
    iters = ["reduction"] * rank

    def count(v, acc):
        return arith.addi(acc, arith.extui(i64, out_of_range(v, lo, hi)))

    def witness(v, acc):
        return arith.select(out_of_range(v, lo, hi), _i64(v), acc)

    n = generic([indices], [in_map], [full([], i64, 0)], [out_map], iters, count)[0]
    w = generic([indices], [in_map], [full([], i64, 0)], [out_map], iters, witness)[0]
    return tensor.from_elements(ir.RankedTensorType.get([2], i64), [tensor.extract(n, []), tensor.extract(w, [])])


def clamp_index(v: ir.Value, size: int, wrap_negative: bool) -> ir.Value:
    """`v` as an `index` in [0, size): negative values wrapped first (v + size) where the op
    wraps them, then clamped, so a read never leaves the source whatever `v` is."""
    v = _i64(v)
    if wrap_negative:
        v = arith.select(arith.cmpi(arith.CmpIPredicate.slt, v, const(0, v.type)),
                         arith.addi(v, const(size, v.type)), v)
    v = arith.maxsi(v, const(0, v.type))
    v = arith.minsi(v, const(max(size - 1, 0), v.type))
    return arith.index_cast(ir.IndexType.get(), v)
