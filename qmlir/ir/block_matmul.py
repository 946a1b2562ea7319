"""The block-scaled integer matmul: i8 x i8 products summed exactly in i32 per block of B rows
of K, each block's sum rescaled by its own activation and weight scales, the blocks added in
order. It is the arithmetic of the block-dynamic W8A8 layers (`act_granularity=block`, llama.cpp's
Q8_0 x Q8_0 dot product):

    y[m, n] += sum_g f32(sum_{b < B} x[m, g, b] * w[g, b, n]) * (sa[m, g] * sw[g, n])

(sw is stored by panels too: [N/64, G, 64], each panel's scales contiguous.)

w is in the panel layout of `qmlir.ir.quant_storage.pack_panels` (packed once, when the model
is quantized): panels of 64 columns, rows in fours with one column's four values adjacent, so a
panel is contiguous and each 64 bytes of it is one `vpdpbusd` operand. As IR, one generic over x
viewed by blocks (expand_shape: free) and the packed w, with two outputs, the running i32 block
sum and y (iterators m, n parallel; g, b reductions, in that order):

    %acc, %y = linalg.generic
        ins(%x : tensor<MxGxBxi8> at (m, g, b),
            %w : tensor<N/64 x K/4 x 64 x 4 x i8> at (n floordiv 64, (g B + b) floordiv 4, n mod 64, b mod 4),
            %sa : tensor<MxGxf32> at (m, g), %sw : tensor<N/64 x G x 64 x f32> at (n floordiv 64, g, n mod 64))
        outs(%scratch : tensor<MxNxi32> at (m, n), %init : tensor<MxNxf32> at (m, n)) {
      a  = (b == 0 ? 0 : acc) + extsi(x) * extsi(w)          the block's sum, restarted per block
      y' = b == B - 1 ? y + f32(a) * (sa * sw) : y            one rescale per block, in order
    }

With 4-bit weights (W4A8, llama.cpp's Q4_0 x Q8_0) w is in the nibble panels of
`pack_panels_int4` ([N/64, K/8, 64, 4] bytes, row k in the low nibble when (k / 4) is even, as
q + 8) and the body takes the nibble and subtracts 8 before the product.

The scratch output's initial value is never read (b == 0 restarts the sum), so any door runs the
op as written; the `int8_block_dot` kernel (qmlir/kernels) expands it with the block sums in
registers, in the same order. `build` and `match` are the one definition of the form; the eager
reference is `qmlir.ir.quant_ops.block_matmul_reference`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from mlir import ir
from mlir.dialects import arith, tensor

from qmlir.ir import quant_storage
from qmlir.ir.builders import const, generic, integer_constant, loop_index, reshape, static_shape


@dataclass(frozen=True)
class BlockMatmul:
    m: int
    n: int
    k: int
    block: int
    bits: int = 8  # 4: the weight panels hold two unsigned nibbles (q + 8) per byte

    @property
    def blocks(self) -> int:
        return self.k // self.block


def _i8() -> ir.Type:
    return ir.IntegerType.get_signless(8)


def _i32() -> ir.Type:
    return ir.IntegerType.get_signless(32)


def _f32() -> ir.Type:
    return ir.F32Type.get()


def _dims(n: int):
    return [ir.AffineDimExpr.get(i) for i in range(n)]


PANEL = quant_storage.PANEL  # columns per weight panel


def indexing_maps(block: int, bits: int = 8) -> List[ir.AffineMap]:
    m, n, g, b = _dims(4)
    k = g * block + b
    rows = 4 if bits == 8 else 8  # rows of k per panel row
    w = [ir.AffineExpr.get_floor_div(n, PANEL), ir.AffineExpr.get_floor_div(k, rows), n % PANEL, k % 4]
    sw = [ir.AffineExpr.get_floor_div(n, PANEL), g, n % PANEL]
    return [ir.AffineMap.get(4, 0, e) for e in ([m, g, b], w, [m, g], sw, [m, n], [m, n])]


_NIBBLE = ["arith.andi", "arith.shrui", "arith.andi", "arith.divui", "arith.remui", "arith.cmpi", "arith.select",
           "arith.subi"]
_TAIL = ["arith.extsi", "arith.extsi", "arith.muli", "arith.cmpi", "arith.select", "arith.addi",
         "arith.cmpi", "arith.sitofp", "arith.mulf", "arith.mulf", "arith.addf", "arith.select", "linalg.yield"]
_ITERATORS = ["#linalg.iterator_type<parallel>"] * 2 + ["#linalg.iterator_type<reduction>"] * 2


def _body_names(bits: int) -> List[str]:
    return ["linalg.index"] + (_NIBBLE if bits == 4 else []) + _TAIL


def _nibble(byte: ir.Value, b: ir.Value) -> ir.Value:
    """Inside the body: the int4 value of row k = g B + b from its panel byte: the low nibble for
    (b / 4) even, the high one for odd, minus 8."""
    i8, index = _i8(), ir.IndexType.get()
    lo = arith.andi(byte, const(15, i8))
    hi = arith.andi(arith.shrui(byte, const(4, i8)), const(15, i8))
    half = arith.remui(arith.divui(b, arith.constant(index, 4)), arith.constant(index, 2))
    even = arith.cmpi(arith.CmpIPredicate.eq, half, arith.constant(index, 0))
    return arith.subi(arith.select(even, lo, hi), const(8, i8))


def build(x_i8: ir.Value, w_i8: ir.Value, x_scales: ir.Value, w_scales: ir.Value, block: int,
          init: ir.Value, bits: int = 8) -> ir.Value:
    """The generic at the current insertion point; returns init + the block-scaled product.
    x_i8 [M, K], w_i8 [N/64, K/4, 64, 4] panels (bits=4: [N/64, K/8, 64, 4] nibble panels),
    x_scales [M, K/B] f32, w_scales [N/64, K/B, 64] f32 (panels), init [M, N] f32."""
    M, K = ir.RankedTensorType(x_i8.type).shape
    P, Q = ir.RankedTensorType(w_i8.type).shape[:2]
    N = P * PANEL
    rows = 4 if bits == 8 else 8
    if bits not in (4, 8) or K % block or block % rows or rows * Q != K:
        raise ValueError(f"block matmul: K={K}, block {block}, {rows * Q} weight rows of {bits} bits")
    G = K // block
    i32, f32 = _i32(), _f32()
    x3 = reshape(x_i8, [M, G, block])

    def body(xv, wv, sa, sw, acc, y):
        b = loop_index(3)
        if bits == 4:
            wv = _nibble(wv, b)
        prod = arith.muli(arith.extsi(i32, xv), arith.extsi(i32, wv))
        first = arith.cmpi(arith.CmpIPredicate.eq, b, arith.constant(ir.IndexType.get(), 0))
        a = arith.addi(arith.select(first, const(0, i32), acc), prod)
        last = arith.cmpi(arith.CmpIPredicate.eq, b, arith.constant(ir.IndexType.get(), block - 1))
        rescaled = arith.addf(y, arith.mulf(arith.sitofp(f32, a), arith.mulf(sa, sw)))
        return a, arith.select(last, rescaled, y)

    maps = indexing_maps(block, bits)
    return generic([x3, w_i8, x_scales, w_scales], maps[:4], [tensor.empty([M, N], i32), init], maps[4:],
                   ["parallel", "parallel", "reduction", "reduction"], body)[1]


def _element(v: ir.Value) -> ir.Type:
    return ir.ShapedType(v.type).element_type


def _wired(op: ir.Operation, block: int, bits: int) -> bool:
    """The body computes what `build` writes, with its constants."""
    block_ = op.regions[0].blocks[0]
    x, w, sa, sw, acc, y = block_.arguments
    body = [o.operation for o in block_.operations if o.operation.name != "arith.constant"]
    if [o.name for o in body] != _body_names(bits):
        return False
    index = body[0]
    eq = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 0)
    weight = w
    if bits == 4:
        lo, sh, hi, div, rem, even, pick, sub = body[1:9]
        if not (lo.operands[0] == w and integer_constant(lo.operands[1]) == 15 and sh.operands[0] == w
                and integer_constant(sh.operands[1]) == 4 and hi.operands[0] == sh.results[0]
                and integer_constant(hi.operands[1]) == 15
                and div.operands[0] == index.results[0] and integer_constant(div.operands[1]) == 4
                and rem.operands[0] == div.results[0] and integer_constant(rem.operands[1]) == 2
                and even.attributes["predicate"] == eq and even.operands[0] == rem.results[0]
                and integer_constant(even.operands[1]) == 0
                and list(pick.operands) == [even.results[0], lo.results[0], hi.results[0]]
                and sub.operands[0] == pick.results[0] and integer_constant(sub.operands[1]) == 8):
            return False
        weight = sub.results[0]
        body = body[:1] + body[9:]
    index, ex, ew, mul, first, restart, add, last, tofp, scale, prod, radd, pick, yld = body
    return (index.attributes["dim"] == ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 3)
            and ex.operands[0] == x and ew.operands[0] == weight and ex.results[0].type == _i32()
            and ew.results[0].type == _i32() and list(mul.operands) == [ex.results[0], ew.results[0]]
            and first.attributes["predicate"] == eq and first.operands[0] == index.results[0]
            and integer_constant(first.operands[1]) == 0
            and restart.operands[0] == first.results[0] and integer_constant(restart.operands[1]) == 0
            and restart.operands[2] == acc
            and list(add.operands) == [restart.results[0], mul.results[0]]
            and last.attributes["predicate"] == eq and last.operands[0] == index.results[0]
            and integer_constant(last.operands[1]) == block - 1
            and tofp.operands[0] == add.results[0] and list(scale.operands) == [sa, sw]
            and list(prod.operands) == [tofp.results[0], scale.results[0]]
            and list(radd.operands) == [y, prod.results[0]]
            and list(pick.operands) == [last.results[0], radd.results[0], y]
            and list(yld.operands) == [add.results[0], pick.results[0]])


def match(op: ir.Operation) -> Optional[BlockMatmul]:
    """What `op` computes when it is exactly the generic `build` makes (on tensors or on
    buffers); else None."""
    if op.name != "linalg.generic" or len(op.operands) != 6:
        return None
    shapes = [static_shape(v.type) for v in op.operands]
    if any(s is None for s in shapes) or [len(s) for s in shapes] != [3, 4, 2, 3, 2, 2]:
        return None
    if [_element(v) for v in op.operands] != [_i8(), _i8(), _f32(), _f32(), _i32(), _f32()]:
        return None
    (M, G, B), (P, Q, panel, four), ms, ws, accs, ys = shapes
    N = P * PANEL
    bits = 8 if 4 * Q == G * B else 4 if 8 * Q == G * B else 0
    if not bits or (panel, four) != (PANEL, 4) or B % (4 if bits == 8 else 8) or ms != [M, G] \
            or ws != [P, G, PANEL] or accs != [M, N] or ys != [M, N]:
        return None
    if [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])] != _ITERATORS:
        return None
    if [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])] != indexing_maps(B, bits):
        return None
    if not _wired(op, B, bits):
        return None
    return BlockMatmul(m=M, n=N, k=G * B, block=B, bits=bits)
