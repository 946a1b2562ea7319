"""Kernel `int8_block_avx2`: the block-scaled integer matmul (qmlir/ir/block_matmul.py: the
block-dynamic W8A8 and W4A8 layers, llama.cpp's Q8_0 x Q8_0 and Q4_0 x Q8_0) on AVX2, for CPUs
without AVX512_VNNI (AMD Zen 2/3, most Intel client parts before Alder Lake's AVX-VNNI).

It reads the same weight panels as `int8_block_dot` (64 columns; each column's four rows k..k+3
side by side, or for int4 the nibbles of rows k..k+3 and k+4..k+7 in one byte) in 16- or
32-byte pieces, and keeps each block's exact i32 sums in ymm registers:

- **int8** (`vpmaddwd`): 16 bytes (4 columns x 4 rows) sign-extended to i16 and multiplied by
  x[m, k..k+3] broadcast as i16 pairs; each i32 lane holds two products of one column, and the
  two lanes of a column are added once per block (a shuffle of two accumulators). Exact for
  every i8 value: the byte instruction `vpmaddubsw` saturates its i16 pair sums and its sign
  trick (llama.cpp's |x| x sign(w, x)) is wrong for -128, which GPTQ's weights can hold.
- **int4** (`vpmaddubsw`): a 32-byte read is 8 columns x 8 rows; its low and high nibbles
  (q + 8, 0..15) are the unsigned operands, x's bytes of rows k..k+3 and k+4..k+7 broadcast as
  the signed ones; each i16 pair sum is at most 2 x 15 x 128 (no saturation); the two halves
  are added in i16 and `vpmaddwd` with ones makes one i32 lane per column. The q + 8 offset
  is taken back once per block: acc - 8 x sum_b x[m, g, b] (exact).

The float steps are the generic's, in its order (y += f32(acc) * (sa * sw), one block after
the other), so the result is bit-identical to every other door. Tiles: one row of x and 32
(int8) or 64 (int4) columns at M = 1 (every weight byte read once, in order), two rows and 16
or 32 columns for longer M (up to 12 of the 16 ymm registers hold sums). Weights of 64 KB and
more split their panels over the target's threads (as evenly as they go: 9 panels -> 5 + 4). Config: mr, cols, tasks.
"""
from __future__ import annotations

from mlir import ir

from qmlir.ir import block_matmul
from qmlir.kernels import int8_block_dot
from qmlir.kernels.base import Kernel, register_kernel
from qmlir.kernels.int8_vnni import broadcast_four_bytes

_PMADDWD = "llvm.x86.avx2.pmadd.wd"
_PMADDUBSW = "llvm.x86.avx2.pmadd.ub.sw"
_V8, _V16, _V32 = "vector<8xi32>", "vector<16xi16>", "vector<32xi8>"
_VF = "vector<8xf32>"
CONSTANTS = ("%ones16 = arith.constant dense<1> : vector<16xi16>",
             "%low32 = arith.constant dense<15> : vector<32xi8>",
             "%four32 = arith.constant dense<4> : vector<32xi8>",
             "%zero8 = arith.constant dense<0> : vector<8xi32>")


def tiles(d: block_matmul.BlockMatmul, threads: int) -> dict:
    mr = 1 if d.m == 1 else 2
    cols = (32 if d.bits == 8 else 64) // mr
    return {"mr": mr, "cols": cols, "tasks": int8_block_dot.tiles(d, threads)["tasks"]}


def _x_pairs(w, ind: str, tag: str, at: str, memref_type: str) -> str:
    """x's four bytes at `at` sign-extended to i16 and broadcast: vector<16xi16> of x0 x1 x2 x3
    repeated (the `vpmaddwd` operand against four rows of a column)."""
    w(f"{ind}%xb{tag} = vector.transfer_read {at}, %pad {{in_bounds = [true]}} : {memref_type}, vector<4xi8>")
    w(f"{ind}%xe{tag} = arith.extsi %xb{tag} : vector<4xi8> to vector<4xi16>")
    w(f"{ind}%xw{tag} = vector.bitcast %xe{tag} : vector<4xi16> to vector<1xi64>")
    w(f"{ind}%xs{tag} = vector.extract %xw{tag}[0] : i64 from vector<1xi64>")
    w(f"{ind}%xv{tag} = vector.broadcast %xs{tag} : i64 to vector<4xi64>")
    w(f"{ind}%xc{tag} = vector.bitcast %xv{tag} : vector<4xi64> to {_V16}")
    return f"%xc{tag}"


def row_tile(w, rows: int, m0: str, tag: str, types: dict) -> None:
    """One tile's body: `rows` rows from index value `m0`, the columns %cc..%cc+cols of panel %p
    (%ncol in y), every block of K."""
    four, cols = types["bits"] == 4, types["cols"]
    xt, sat, swt, yt = types["x"], types["sa"], types["sw"], types["y"]
    pieces = cols // 8 if four else cols // 4  # 32-byte int4 reads (8 columns), 16-byte int8 ones (4)
    accs = [f"%a{tag}{i}_{q}" for i in range(rows) for q in range(pieces)]
    ind = "        "
    w(f"{ind}%cb{tag} = affine.apply affine_map<(d0) -> (d0 * 4)>(%cc)")  # the tile's first byte in a panel row
    w(f"{ind}scf.for %g{tag} = %c0 to %cG step %c1 {{")
    w(f"{ind}  %q0{tag} = affine.apply affine_map<(d0) -> (d0 * {types['S']})>(%g{tag})")
    w(f"{ind}  %acc{tag}:{len(accs)} = scf.for %s{tag} = %c0 to %cS step %c1 iter_args("
      f"{', '.join(a + ' = %zero8' for a in accs)}) -> ({', '.join([_V8] * len(accs))}) {{")
    i2 = ind + "    "
    w(f"{i2}%kq{tag} = arith.addi %q0{tag}, %s{tag} : index")
    w(f"{i2}%k{tag} = affine.apply affine_map<(d0) -> (d0 * {8 if four else 4})>(%s{tag})")
    xs = []
    for i in range(rows):
        w(f"{i2}%mi{tag}{i} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
        if four:
            w(f"{i2}%k4{tag}{i} = affine.apply affine_map<(d0) -> (d0 + 4)>(%k{tag})")
            xs.append((broadcast_four_bytes(w, i2, f"{tag}{i}lo", f"%x[%mi{tag}{i}, %g{tag}, %k{tag}]", xt, lanes=8),
                       broadcast_four_bytes(w, i2, f"{tag}{i}hi", f"%x[%mi{tag}{i}, %g{tag}, %k4{tag}{i}]", xt, lanes=8)))
        else:
            xs.append(_x_pairs(w, i2, f"{tag}{i}", f"%x[%mi{tag}{i}, %g{tag}, %k{tag}]", xt))
    outs = {}
    for q in range(pieces):
        at = f"%o{tag}{q}"
        w(f"{i2}{at} = affine.apply affine_map<(d0) -> (d0 + {(32 if four else 16) * q})>(%cb{tag})")
        if four:
            w(f"{i2}%v{tag}{q} = vector.transfer_read %wf[%p, %kq{tag}, {at}], %pad {{in_bounds = [true]}} : "
              f"{types['wf']}, {_V32}")
            w(f"{i2}%lo{tag}{q} = arith.andi %v{tag}{q}, %low32 : {_V32}")
            w(f"{i2}%sh{tag}{q} = arith.shrui %v{tag}{q}, %four32 : {_V32}")
            w(f"{i2}%hi{tag}{q} = arith.andi %sh{tag}{q}, %low32 : {_V32}")
        else:
            w(f"{i2}%v{tag}{q} = vector.transfer_read %wf[%p, %kq{tag}, {at}], %pad {{in_bounds = [true]}} : "
              f"{types['wf']}, vector<16xi8>")
            w(f"{i2}%e{tag}{q} = arith.extsi %v{tag}{q} : vector<16xi8> to {_V16}")
        for i in range(rows):
            t = f"{tag}{i}_{q}"
            if four:
                xlo, xhi = xs[i]
                w(f"{i2}%pl{t} = llvm.call_intrinsic \"{_PMADDUBSW}\"(%lo{tag}{q}, {xlo}) : ({_V32}, {_V32}) -> {_V16}")
                w(f"{i2}%ph{t} = llvm.call_intrinsic \"{_PMADDUBSW}\"(%hi{tag}{q}, {xhi}) : ({_V32}, {_V32}) -> {_V16}")
                w(f"{i2}%p16{t} = arith.addi %pl{t}, %ph{t} : {_V16}")
                w(f"{i2}%p32{t} = llvm.call_intrinsic \"{_PMADDWD}\"(%p16{t}, %ones16) : ({_V16}, {_V16}) -> {_V8}")
            else:
                w(f"{i2}%p32{t} = llvm.call_intrinsic \"{_PMADDWD}\"(%e{tag}{q}, {xs[i]}) : ({_V16}, {_V16}) -> {_V8}")
            w(f"{i2}%d{t} = arith.addi %a{t}, %p32{t} : {_V8}")
            outs[(i, q)] = f"%d{t}"
    w(f"{i2}scf.yield {', '.join(outs[(i, q)] for i in range(rows) for q in range(pieces))} : "
      f"{', '.join([_V8] * len(accs))}")
    w(f"{ind}  }}")
    i1 = ind + "  "
    for i in range(rows):
        w(f"{i1}%oi{tag}{i} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
        w(f"{i1}%sa{tag}{i} = memref.load %sa[%oi{tag}{i}, %g{tag}] : {sat}")
        w(f"{i1}%sav{tag}{i} = vector.broadcast %sa{tag}{i} : f32 to {_VF}")
        if four:
            w(f"{i1}%sum{tag}{i} = memref.load %xsum[%oi{tag}{i}, %g{tag}] : memref<{types['M']}x{types['G']}xi32>")
            w(f"{i1}%sum8{tag}{i} = arith.shli %sum{tag}{i}, %cshift : i32")
            w(f"{i1}%corr{tag}{i} = vector.broadcast %sum8{tag}{i} : i32 to {_V8}")
        for j in range(cols // 8):  # eight columns of y at a time
            t = f"{tag}{i}_{j}"
            acc = lambda q: f"%acc{tag}#{i * pieces + q}"  # noqa: E731
            if four:
                w(f"{i1}%fix{t} = arith.subi {acc(j)}, %corr{tag}{i} : {_V8}")
            else:  # two accumulators of four columns x two partial sums -> one of eight columns
                w(f"{i1}%ev{t} = vector.shuffle {acc(2 * j)}, {acc(2 * j + 1)} [0, 2, 4, 6, 8, 10, 12, 14] : {_V8}, {_V8}")
                w(f"{i1}%od{t} = vector.shuffle {acc(2 * j)}, {acc(2 * j + 1)} [1, 3, 5, 7, 9, 11, 13, 15] : {_V8}, {_V8}")
                w(f"{i1}%fix{t} = arith.addi %ev{t}, %od{t} : {_V8}")
            w(f"{i1}%f{t} = arith.sitofp %fix{t} : {_V8} to {_VF}")
            w(f"{i1}%sc{t} = affine.apply affine_map<(d0) -> (d0 + {8 * j})>(%cc)")
            w(f"{i1}%sw{t} = vector.transfer_read %sw[%p, %g{tag}, %sc{t}], %fpad {{in_bounds = [true]}} : {swt}, {_VF}")
            w(f"{i1}%scl{t} = arith.mulf %sav{tag}{i}, %sw{t} : {_VF}")
            w(f"{i1}%pr{t} = arith.mulf %f{t}, %scl{t} : {_VF}")
            w(f"{i1}%yc{t} = affine.apply affine_map<(d0) -> (d0 + {8 * j})>(%ncol)")
            w(f"{i1}%old{t} = vector.transfer_read %y[%oi{tag}{i}, %yc{t}], %fpad {{in_bounds = [true]}} : {yt}, {_VF}")
            w(f"{i1}%new{t} = arith.addf %old{t}, %pr{t} : {_VF}")
            w(f"{i1}vector.transfer_write %new{t}, %y[%oi{tag}{i}, %yc{t}] {{in_bounds = [true]}} : {_VF}, {yt}")
    w(f"{ind}}}")


def select(op: ir.Operation, threads: int) -> dict | None:
    """{mr, cols, tasks} for a block-scaled matmul generic, or None."""
    d = block_matmul.match(op)
    return None if d is None else tiles(d, threads)


def expand(module, chosen: list) -> int:
    """Replace each (block-scaled matmul generic on memrefs, config) by the kernel's body (int8
    weights are the signed operand as they are: no block sums of x)."""
    return int8_block_dot.expand_blocks("int8_block_avx2", chosen, row_tile=row_tile, constants=CONSTANTS,
                                        block_sums=lambda d: d.bits == 4)


KERNEL = register_kernel(Kernel(
    name="int8_block_avx2",
    summary="block-scaled integer matmuls (W8A8 / W4A8 with per-block activation scales: Q8_0, Q4_0) on "
            "AVX2 vpmaddwd / vpmaddubsw, block sums in registers, for CPUs without AVX512_VNNI",
    stage="buffers",
    features=frozenset({"avx2"}),
    priority=34,
    ops=("linalg.generic",),
    select=select,
    expand=expand,
))
