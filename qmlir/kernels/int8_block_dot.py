"""Kernel `int8_block_dot`: the block-scaled integer matmul (qmlir/ir/block_matmul.py, the
block-dynamic W8A8 and W4A8 layers' product, llama.cpp's Q8_0 x Q8_0 and Q4_0 x Q8_0 dot
products) on AVX512_VNNI `vpdpbusd`.

    y[m, n] += sum_g f32(sum_{b < B} x[m, g, b] * w[g, b, n]) * (sa[m, g] * sw[g, n])

Each block's i32 sum stays in registers: for a 64-column tile of w and up to four rows of x,

    for each block g:   acc[row][4 x 16 lanes] = 0
      for k in the block, step 4:
        four weight rows k..k+3 (64 bytes each, read in place) interleaved by `vector.shuffle`
        into the instruction's layout (each i32 lane holds the four k of one column), their
        sign bits flipped (w + 128: the unsigned operand), and per row of x its four bytes
        x[m, g, k..k+3] broadcast as the signed operand: acc = vpdpbusd(acc, w + 128, x)
      y[m, tile] += f32(acc - 128 * sum_b x[m, g, b]) * (sa[m, g] * sw[g, tile])

The correction is exact in i32 (sum (w + 128) x = sum w x + 128 sum x); the block sums of x
are computed once per call. With 4-bit weights (nibble panels, q + 8 in each nibble) each
64-byte read gives two unsigned operands, its low nibbles (rows k..k+3) and its high ones
(k+4..k+7), with x's bytes of those rows, and the correction is 8 x the block sum. The float steps are the rescaling generic's, in its order (one
rescale per block, the blocks added to y in order), so the kernel's result is bit-identical to
any other door's. At M = 1 every weight byte is read once (a decode step's linears stream their
weights); a tile's weights stay in L1 across the row tiles of a longer M. Weights of 64 KB and
more split their columns over the target's threads (scf.forall: libgomp's team).

Selected for targets with avx512_vnni when N % 64 == 0 and B % 4 == 0; other shapes (N tails)
run the generics as written. Config: mr (rows per tile), tasks.
"""
from __future__ import annotations

from mlir import ir

from qmlir.ir import block_matmul
from qmlir.kernels.base import Kernel, register_kernel, splice
from qmlir.kernels.int8_vnni import _VPDPBUSD, broadcast_four_bytes

_NR = block_matmul.PANEL  # columns per panel: four 16-lane i32 accumulators per row
_MIN_THREAD_BYTES = 64 << 10  # smaller weights run on one thread. On libgomp's team (spinning between
# kernels) a SmolLM2 Q8_0 decode step took 31.6 ms with every linear threaded against 38.0 with only
# weights of 8 MB and more (the threshold under MLIR's async runtime, where waking a worker cost
# tens of microseconds: a 2.4 MB weight then took 2x longer on two threads)


def tiles(d: block_matmul.BlockMatmul, threads: int) -> dict:
    mr = min(4, d.m)
    tasks = 1
    if threads > 1 and d.k * d.n * d.bits // 8 >= _MIN_THREAD_BYTES:  # weight bytes
        tasks = min(threads, d.n // _NR)  # the panels split as evenly as they go (9 -> 5 + 4)
    return {"mr": mr, "tasks": tasks}


def _row_tile(w, rows: int, m0: str, tag: str, types: dict) -> None:
    """The body for `rows` rows starting at index value `m0` and the panel %p (columns %ncol)."""
    xt, sat, swt, yt = types["x"], types["sa"], types["sw"], types["y"]
    v8, v32, vf = "vector<64xi8>", "vector<16xi32>", "vector<16xf32>"
    accs = [f"%a{tag}{i}_{q}" for i in range(rows) for q in range(4)]
    ind = "        "
    w(f"{ind}scf.for %g{tag} = %c0 to %cG step %c1 {{")
    w(f"{ind}  %q0{tag} = affine.apply affine_map<(d0) -> (d0 * {types['S']})>(%g{tag})")
    w(f"{ind}  %acc{tag}:{len(accs)} = scf.for %s{tag} = %c0 to %cS step %c1 iter_args("
      f"{', '.join(a + ' = %zero' for a in accs)}) -> ({', '.join([v32] * len(accs))}) {{")
    i2 = ind + "    "
    four = types["bits"] == 4
    w(f"{i2}%kq{tag} = arith.addi %q0{tag}, %s{tag} : index")
    w(f"{i2}%k{tag} = affine.apply affine_map<(d0) -> (d0 * {8 if four else 4})>(%s{tag})")
    # 16 columns x 4 rows per 64 bytes, the instruction's layout, as unsigned operands: w + 128
    # (int8), or the low and the high nibbles (q + 8: rows k..k+3 and k+4..k+7)
    halves = ("lo", "hi") if four else ("",)
    for q in range(4):
        w(f"{i2}%v{tag}{q} = vector.transfer_read %wf[%p, %kq{tag}, %c{64 * q}], %pad {{in_bounds = [true]}} : "
          f"{types['wf']}, {v8}")
        if four:
            w(f"{i2}%ulo{tag}{q} = arith.andi %v{tag}{q}, %low : {v8}")
            w(f"{i2}%sh{tag}{q} = arith.shrui %v{tag}{q}, %four : {v8}")
            w(f"{i2}%uhi{tag}{q} = arith.andi %sh{tag}{q}, %low : {v8}")
        else:
            w(f"{i2}%u{tag}{q} = arith.xori %v{tag}{q}, %sign : {v8}")
    outs = []
    for i in range(rows):
        w(f"{i2}%mi{tag}{i} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
        for h, half in enumerate(halves):
            kk = f"%k{tag}"
            if h:
                w(f"{i2}%k4{tag}{i} = affine.apply affine_map<(d0) -> (d0 + 4)>(%k{tag})")
                kk = f"%k4{tag}{i}"
            broadcast_four_bytes(w, i2, f"{tag}{i}{half}", f"%x[%mi{tag}{i}, %g{tag}, {kk}]", xt)
        for q in range(4):
            prev = f"%a{tag}{i}_{q}"
            for half in halves:
                out = f"%d{tag}{i}_{q}{half}"
                w(f"{i2}{out} = llvm.call_intrinsic \"{_VPDPBUSD}\"({prev}, %u{half}{tag}{q}, %xc{tag}{i}{half}) : "
                  f"({v32}, {v8}, {v8}) -> {v32}")
                prev = out
            outs.append(prev)
    w(f"{i2}scf.yield {', '.join(outs)} : {', '.join([v32] * len(accs))}")
    w(f"{ind}  }}")
    i1 = ind + "  "
    for i in range(rows):
        w(f"{i1}%oi{tag}{i} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
        w(f"{i1}%sum{tag}{i} = memref.load %xsum[%oi{tag}{i}, %g{tag}] : memref<{types['M']}x{types['G']}xi32>")
        w(f"{i1}%sum7{tag}{i} = arith.shli %sum{tag}{i}, %cshift : i32")
        w(f"{i1}%corr{tag}{i} = vector.broadcast %sum7{tag}{i} : i32 to {v32}")
        w(f"{i1}%sa{tag}{i} = memref.load %sa[%oi{tag}{i}, %g{tag}] : {sat}")
        w(f"{i1}%sav{tag}{i} = vector.broadcast %sa{tag}{i} : f32 to {vf}")
        for q in range(4):
            t = f"{tag}{i}_{q}"
            w(f"{i1}%oc{t} = affine.apply affine_map<(d0) -> (d0 + {16 * q})>(%ncol)")
            w(f"{i1}%fix{t} = arith.subi %acc{tag}#{i * 4 + q}, %corr{tag}{i} : {v32}")
            w(f"{i1}%f{t} = arith.sitofp %fix{t} : {v32} to {vf}")
            w(f"{i1}%sw{t} = vector.transfer_read %sw[%p, %g{tag}, %c{16 * q}], %fpad {{in_bounds = [true]}} : {swt}, {vf}")
            w(f"{i1}%sc{t} = arith.mulf %sav{tag}{i}, %sw{t} : {vf}")
            w(f"{i1}%p{t} = arith.mulf %f{t}, %sc{t} : {vf}")
            w(f"{i1}%old{t} = vector.transfer_read %y[%oi{tag}{i}, %oc{t}], %fpad {{in_bounds = [true]}} : {yt}, {vf}")
            w(f"{i1}%new{t} = arith.addf %old{t}, %p{t} : {vf}")
            w(f"{i1}vector.transfer_write %new{t}, %y[%oi{tag}{i}, %oc{t}] {{in_bounds = [true]}} : {vf}, {yt}")
    w(f"{ind}}}")


def kernel_text(name: str, d: block_matmul.BlockMatmul, mr: int, tasks: int, types: dict,
                row_tile=None, cols: int = _NR, constants: tuple = (), block_sums: bool = True) -> str:
    """The kernel as a function @name(x, w, sa, sw, y) adding the block-scaled product into y
    (memrefs of `types`: x [M, G, B] i8, w [N/64, K/4, 64, 4] i8 panels, sa [M, G], sw [N/64, G, 64]
    panels, y [M, N] f32).

    The loops around the row tiles (the block sums of x, threads over panels, `cols`-column
    tiles of each panel, row tiles of `mr` rows and single rows after them) are shared with the
    other ISAs' block kernels: `row_tile(w, rows, m0, tag, types)` emits one tile's body
    (default: this module's AVX512_VNNI one), with %p the panel, %cc the tile's first column
    within it and %ncol its first column of y (`types["cols"]` its width); `constants` are
    extra lines of the preamble; `block_sums`: compute %xsum (the body subtracts a multiple of it)."""
    row_tile = row_tile or _row_tile
    M, N, G, B = d.m, d.n, d.blocks, d.block
    rows = 8 if d.bits == 4 else 4  # rows of k per 64 bytes of a panel row
    P, Q = N // _NR, d.k // rows
    wf = f"memref<{P}x{Q}x256xi8>"
    types = dict(types, M=M, G=G, S=B // rows, wf=wf, bits=d.bits, cols=cols)
    main = M - M % mr
    L = []
    w = L.append
    w(f"func.func private @{name}(%x: {types['x']}, %w: {types['w']}, %sa: {types['sa']}, %sw: {types['sw']}, "
      f"%y: {types['y']}) {{")
    w("  %c0 = arith.constant 0 : index")
    w("  %c1 = arith.constant 1 : index")
    for c in sorted({16 * q for q in range(1, 4)} | {64 * q for q in range(1, 4)}):
        w(f"  %c{c} = arith.constant {c} : index")
    w(f"  %cG = arith.constant {G} : index")
    w(f"  %cS = arith.constant {B // rows} : index")
    w(f"  %cM = arith.constant {M} : index")
    w(f"  %cMain = arith.constant {main} : index")
    w(f"  %cMR = arith.constant {mr} : index")
    w(f"  %cCOLS = arith.constant {cols} : index")
    w(f"  %cshift = arith.constant {3 if d.bits == 4 else 7} : i32")  # the unsigned operand's offset: 8 or 128
    w("  %low = arith.constant dense<15> : vector<64xi8>")
    w("  %four = arith.constant dense<4> : vector<64xi8>")
    w("  %pad = arith.constant 0 : i8")
    w("  %fpad = arith.constant 0.0 : f32")
    w("  %zero = arith.constant dense<0> : vector<16xi32>")
    w("  %sign = arith.constant dense<-128> : vector<64xi8>")
    for line in constants:
        w(f"  {line}")
    if types["w_identity"]:
        w(f"  %wf = memref.collapse_shape %w [[0], [1], [2, 3]] : {types['w']} into {wf}")
    else:  # a strided view (not what bufferization makes of a weight argument): a contiguous copy first
        w(f"  %wc = memref.alloc() {{alignment = 64 : i64}} : memref<{P}x{Q}x64x4xi8>")
        w(f"  memref.copy %w, %wc : {types['w']} to memref<{P}x{Q}x64x4xi8>")
        w(f"  %wf = memref.collapse_shape %wc [[0], [1], [2, 3]] : memref<{P}x{Q}x64x4xi8> into {wf}")
    if block_sums:  # the block sums of x, for the correction of an unsigned weight operand
        w(f"  %xsum = memref.alloc() {{alignment = 64 : i64}} : memref<{M}x{G}xi32>")
        w("  scf.for %m = %c0 to %cM step %c1 {")
        w("    scf.for %g = %c0 to %cG step %c1 {")
        w(f"      %xv = vector.transfer_read %x[%m, %g, %c0], %pad {{in_bounds = [true]}} : {types['x']}, vector<{B}xi8>")
        w(f"      %xe = arith.extsi %xv : vector<{B}xi8> to vector<{B}xi32>")
        w(f"      %xr = vector.reduction <add>, %xe : vector<{B}xi32> into i32")
        w(f"      memref.store %xr, %xsum[%m, %g] : memref<{M}x{G}xi32>")
        w("    }")
        w("  }")
    w(f"  scf.forall (%t) in ({tasks}) {{")  # task t: panels [t * P / tasks, (t + 1) * P / tasks)
    w(f"    %plo = affine.apply affine_map<(d0) -> ((d0 * {P}) floordiv {tasks})>(%t)")
    w(f"    %phi = affine.apply affine_map<(d0) -> ((d0 * {P} + {P}) floordiv {tasks})>(%t)")
    w("    scf.for %p = %plo to %phi step %c1 {")
    w("      scf.for %cc = %c0 to %c64 step %cCOLS {")
    w(f"      %ncol = affine.apply affine_map<(d0, d1) -> (d0 * {_NR} + d1)>(%p, %cc)")
    if main:
        w("      scf.for %m0 = %c0 to %cMain step %cMR {")
        row_tile(w, mr, "%m0", "A", types)
        w("      }")
    if main < M:
        w("      scf.for %m1 = %cMain to %cM step %c1 {")
        row_tile(w, 1, "%m1", "T", types)
        w("      }")
    w("      }")
    w("    }")
    w("  }")
    if block_sums:
        w(f"  memref.dealloc %xsum : memref<{M}x{G}xi32>")
    if not types["w_identity"]:
        w(f"  memref.dealloc %wc : memref<{P}x{Q}x64x4xi8>")
    w("  return")
    w("}")
    return "\n".join(L)


def select(op: ir.Operation, threads: int) -> dict | None:
    """{mr, tasks} for a block-scaled matmul generic, or None."""
    d = block_matmul.match(op)
    return None if d is None else tiles(d, threads)


def expand_blocks(kernel: str, chosen: list, row_tile=None, constants: tuple = (), block_sums=lambda d: True) -> int:
    """Replace each (block-scaled matmul generic on memrefs, config) by `kernel`'s body (its
    `row_tile` in kernel_text's loops; config mr, tasks and optionally cols), in place (the
    generic's scratch output, the running block sum, is not needed)."""
    for op, cfg in chosen:
        d = block_matmul.match(op)
        if d is None:
            raise TypeError(f"{op.location}: kernel {kernel} recorded on an op that is not a block-scaled matmul")
        cols = cfg.get("cols", _NR)
        if _NR % cols or cols % 8:
            raise TypeError(f"{op.location}: kernel {kernel}: cols={cols} does not divide a {_NR}-column panel "
                            "in multiples of 8")
        x, w, sa, sw, _, y = op.operands
        if not isinstance(y.type, ir.MemRefType):
            raise TypeError(f"{op.location}: kernel {kernel} expands after bufferization; the op is on tensors")
        types = {"x": str(x.type), "w": str(w.type), "sa": str(sa.type), "sw": str(sw.type), "y": str(y.type),
                 "w_identity": ir.MemRefType(w.type).layout == ir.AffineMapAttr.get(ir.AffineMap.get_identity(4))}
        text = kernel_text("kernel", d, cfg["mr"], cfg["tasks"], types, row_tile=row_tile, cols=cols,
                           constants=constants, block_sums=block_sums(d))
        splice(op, text, (x, w, sa, sw, y), returns_result=False)
    return len(chosen)


def expand(module, chosen: list) -> int:
    """Replace each (block-scaled matmul generic on memrefs, config) by the VNNI body (whole
    64-column panels: its row tile has no narrower form)."""
    for op, cfg in chosen:
        if cfg.get("cols", _NR) != _NR:
            raise TypeError(f"{op.location}: kernel int8_block_dot: cols={cfg['cols']}, only {_NR} (a whole panel)")
    return expand_blocks("int8_block_dot", chosen)


KERNEL = register_kernel(Kernel(
    name="int8_block_dot",
    summary="block-scaled integer matmuls (W8A8 / W4A8 with per-block activation scales: Q8_0, Q4_0) on "
            "AVX512_VNNI vpdpbusd, block sums in registers",
    stage="buffers",
    features=frozenset({"avx512_vnni"}),
    priority=35,
    ops=("linalg.generic",),
    select=select,
    expand=expand,
))
