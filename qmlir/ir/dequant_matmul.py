"""The dequantizing matmul: one `linalg.generic` that multiplies f32 activations by quantized
weights read in their storage form, the weight-only layers' product.

    y[m, n] += x[m, k] * ((float(q(k, n)) - zp[k / G, n]) * s[k / G, n])

with `q(k, n)` the storage `q[k, n]` (int8) or the nibble k % 2 of byte `q[k / 2, n]` (int4: the
low nibble for even k; sign-extended, or unsigned in [0, 15]), `s` and `zp` f32 of shape
[K / G, N] (G = K: one scale per output column), `zp` absent for symmetric weights. As IR
(iterators m, n, k):

    %y = linalg.generic {indexing_maps = [(m, n, k) -> (m, k), (m, n, k) -> (k floordiv 2, n),
                                          (m, n, k) -> (k floordiv G, n), ..., (m, n, k) -> (m, n)],
                         iterator_types = ["parallel", "parallel", "reduction"]}
           ins(%x, %q, %s[, %zp] : tensor<MxKxf32>, tensor<K/2xNxi8>, tensor<K/GxNxf32>[, ...])
           outs(%acc : tensor<MxNxf32>) { nibble, sitofp, [subf zp,] mulf s, mulf x, addf }

It is the same arithmetic as `quant.dcast` of the weight followed by `linalg.matmul` (what
`qmlir-lower-quant` makes of a weight-only layer), written so that no pass has to materialize
the dequantized [K, N] weight: `qmlir-fold-dequant-into-matmul` builds it, the `dequant_gemm`
kernel (qmlir/kernels) expands it, and any other door (`convert-linalg-to-loops`) runs it as
written. `build` and `match` are the one definition of its form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from mlir import ir
from mlir.dialects import arith

from qmlir.ir.builders import const, generic, integer_constant, loop_index, static_shape


@dataclass(frozen=True)
class DequantMatmul:
    """What a dequantizing matmul computes (shapes static)."""

    m: int
    n: int
    k: int           # the reduction length (storage rows: k, or k / 2 for int4)
    bits: int        # 8 or 4
    signed: bool     # int4 nibbles sign-extended (int8 storage is always signed)
    group: int       # rows of k per scale row (k: per output channel)
    zero_point: bool

    @property
    def scale_rows(self) -> int:
        return self.k // self.group


def _f32() -> ir.Type:
    return ir.F32Type.get()


def _i8() -> ir.Type:
    return ir.IntegerType.get_signless(8)


def indexing_maps(bits: int, group: int, zero_point: bool) -> List[ir.AffineMap]:
    d0, d1, d2 = (ir.AffineDimExpr.get(i) for i in range(3))
    q_row = ir.AffineExpr.get_floor_div(d2, 2) if bits == 4 else d2
    s_map = ir.AffineMap.get(3, 0, [ir.AffineExpr.get_floor_div(d2, group), d1])
    return ([ir.AffineMap.get(3, 0, [d0, d2]), ir.AffineMap.get(3, 0, [q_row, d1]), s_map]
            + ([s_map] if zero_point else []) + [ir.AffineMap.get(3, 0, [d0, d1])])


def _body_op_names(bits: int, signed: bool, zero_point: bool) -> List[str]:
    """The body's non-constant ops, in order (constants may be hoisted out by canonicalize)."""
    names = []
    if bits == 4:
        names += (["arith.shli", "arith.shrsi", "arith.shrsi"] if signed else
                  ["arith.andi", "arith.shrui", "arith.andi"])
        names += ["linalg.index", "arith.remui", "arith.cmpi", "arith.select"]
    names.append("arith.sitofp")
    if zero_point:
        names.append("arith.subf")
    return names + ["arith.mulf", "arith.mulf", "arith.addf", "linalg.yield"]


def int4_nibble(byte: ir.Value, dim: int, signed: bool) -> ir.Value:
    """Inside a generic body: nibble k % 2 of `byte`, k the loop index `dim` (the low nibble for
    even k), sign-extended or
    unsigned in [0, 15]. The one definition of int4 unpacking: the int4 lowering's unpacking
    generic and the dequantizing matmul both use it, and the fold matches its op sequence."""
    four = const(4, _i8())
    if signed:
        lo = arith.shrsi(arith.shli(byte, four), four)
        hi = arith.shrsi(byte, four)
    else:
        lo = arith.andi(byte, const(15, _i8()))
        hi = arith.andi(arith.shrui(byte, four), const(15, _i8()))
    k = loop_index(dim)
    index = ir.IndexType.get()
    even = arith.cmpi(arith.CmpIPredicate.eq, arith.remui(k, arith.constant(index, 2)), arith.constant(index, 0))
    return arith.select(even, lo, hi)


def build(x: ir.Value, q: ir.Value, scales: ir.Value, zero_points: Optional[ir.Value], bits: int, signed: bool,
          group: int, init: ir.Value) -> ir.Value:
    """The generic at the current insertion point; returns its result (init + x @ dequant(q))."""
    if bits not in (4, 8):
        raise ValueError(f"dequantizing matmul of {bits}-bit weights: 4 or 8 expected")
    zp = zero_points is not None

    def body(xv, qv, sv, *rest):
        acc = rest[-1]
        if bits == 4:
            qv = int4_nibble(qv, 2, signed)
        w = arith.sitofp(_f32(), qv)
        if zp:
            w = arith.subf(w, rest[0])
        w = arith.mulf(w, sv)
        return arith.addf(acc, arith.mulf(xv, w))

    inputs = [x, q, scales] + ([zero_points] if zp else [])
    maps = indexing_maps(bits, group, zp)
    return generic(inputs, maps[:-1], [init], maps[-1:], ["parallel", "parallel", "reduction"], body)[0]


def _wired(op: ir.Operation, bits: int, zp: bool) -> bool:
    """The body computes what `build` writes: its shifts, masks and the parity test use the
    constants `build` uses, and the values flow x * ((w - zp) * s) + acc."""
    block = op.regions[0].blocks[0]
    args = list(block.arguments)
    body = [o.operation for o in block.operations if o.operation.name != "arith.constant"]
    by_name = {}
    for o in body:
        by_name.setdefault(o.name, []).append(o)
    expected = {"arith.shli": 4, "arith.shrsi": 4, "arith.shrui": 4, "arith.andi": 15, "arith.remui": 2}
    for name, value in expected.items():
        if any(integer_constant(o.operands[1]) != value for o in by_name.get(name, [])):
            return False
    if bits == 4:
        cmp, sel = by_name["arith.cmpi"][0], by_name["arith.select"][0]
        chain = body[:3]
        if int(ir.IntegerAttr(cmp.attributes["predicate"]).value) != 0 or integer_constant(cmp.operands[1]) != 0:
            return False
        if cmp.operands[0] != by_name["arith.remui"][0].results[0] or sel.operands[0] != cmp.results[0]:
            return False
        lo, hi = (chain[1], chain[2]) if chain[0].name == "arith.shli" else (chain[0], chain[2])
        if sel.operands[1] != lo.results[0] or sel.operands[2] != hi.results[0] or chain[0].operands[0] != args[1]:
            return False
        if by_name["linalg.index"][0].attributes["dim"] != ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 2):
            return False
    to_float = by_name["arith.sitofp"][0]
    if to_float.operands[0] != (by_name["arith.select"][0].results[0] if bits == 4 else args[1]):
        return False
    w = to_float.results[0]
    if zp:
        sub = by_name["arith.subf"][0]
        if sub.operands[0] != w or sub.operands[1] != args[3]:
            return False
        w = sub.results[0]
    scale, prod = by_name["arith.mulf"]
    add, yld = by_name["arith.addf"][0], by_name["linalg.yield"][0]
    return (list(scale.operands) == [w, args[2]] and list(prod.operands) == [args[0], scale.results[0]]
            and list(add.operands) == [args[-1], prod.results[0]] and yld.operands[0] == add.results[0])


def match(op: ir.Operation) -> Optional[DequantMatmul]:
    """The DequantMatmul `op` computes, when it is exactly the generic `build` makes; else None."""
    if op.name != "linalg.generic" or len(op.results) > 1 or len(op.operands) not in (4, 5):
        return None
    zp = len(op.operands) == 5
    types = [v.type for v in op.operands]
    shapes = [static_shape(t) for t in types]
    if any(s is None or len(s) != 2 for s in shapes):
        return None
    elements = [ir.ShapedType(t).element_type for t in types]
    if elements[1] != _i8() or any(e != _f32() for i, e in enumerate(elements) if i != 1):
        return None
    (m, k), (rows, n), (srows, sn), out = shapes[0], shapes[1], shapes[2], shapes[-1]
    if out != [m, n] or sn != n or srows <= 0 or k % srows or (zp and shapes[3] != [srows, n]):
        return None
    if rows == k:
        bits = 8
    elif 2 * rows == k:
        bits = 4
    else:
        return None
    group = k // srows
    iterators = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    if iterators != ["#linalg.iterator_type<parallel>"] * 2 + ["#linalg.iterator_type<reduction>"]:
        return None
    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]
    if maps != indexing_maps(bits, group, zp):
        return None
    names = [o.operation.name for o in op.regions[0].blocks[0].operations if o.operation.name != "arith.constant"]
    signed = "arith.shrsi" in names
    if names != _body_op_names(bits, signed or bits == 8, zp) or not _wired(op, bits, zp):
        return None
    return DequantMatmul(m=m, n=n, k=k, bits=bits, signed=signed or bits == 8, group=group, zero_point=zp)
