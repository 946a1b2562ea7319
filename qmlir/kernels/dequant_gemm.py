"""Kernel `dequant_gemm`: weight-only matmuls that read each stored weight byte once and
dequantize it in registers.

It expands the dequantizing matmul of `qmlir.ir.dequant_matmul` (what
`qmlir-fold-dequant-into-matmul` makes of every int8 / int4 weight-only layer):

    y[m, n] += sum_k x[m, k] * (q(k, n) - zp[k / G, n]) * s[k / G, n]

Since s and zp are constant over a group of G rows, the kernel sums x * q over a group in
registers and applies the group's scale once (exact up to float reassociation):

    y[m, n] += s[g, n] * (sum_{k in g} x[m, k] q(k, n) - zp[g, n] * sum_{k in g} x[m, k])

(the column sums of x per group are computed once per call, only with zero points). For int4,
one byte holds rows 2i (low nibble) and 2i+1 (high): `b << 4` and `b & 0xF0` are 16 q as
signed bytes (unsigned nibbles: xor 0x80 more, 16 (q - 8)), so both nibbles sign-extend and
convert like int8 weights, with s / 16 (exact) as the scale and the zero point moved by 8.

    scf.forall over blocks of 64-column tiles (threads, when the weight is big enough) {
      scf.for tiles, K blocks of KC rows { scf.for MR-row tiles (then single rows) {
        scf.for groups { scf.for stored rows {
          load 64 weight bytes; nibbles; 4 (int8) or 8 (int4) x 16 lanes to f32
          MR x 4 vector.fma with broadcast x[m, k] }
          y[m, tile] += s * (sum - zp * xsum) } } } }
    the last N % 64 columns: the same with masked vectors, on the calling thread

Needs no CPU feature (plain vector ops; LLVM picks the instructions), so it is also the
portable path. At M = 1 every weight byte is read once, in stored order within each tile; for
larger M a [KC, 64] weight panel stays in L1 across the row tiles. Config: mr, kc, tasks.
"""
from __future__ import annotations

import re

from mlir import ir

from qmlir.ir import dequant_matmul
from qmlir.kernels.base import Kernel, register_kernel, splice

_MIN_THREAD_BYTES = 64 << 10  # smaller weights run on one thread (libgomp starts a task in microseconds)


def _kc(d: dequant_matmul.DequantMatmul, mr: int) -> int:
    """Rows of K per block: all of K when one row tile covers M (each weight byte read once);
    else a multiple of the group, about 512 rows (a 32 KB int8 panel)."""
    if d.m <= mr:
        return d.k
    if d.group < d.k:
        per = max(1, 512 // d.group)
        while (d.k // d.group) % per:
            per -= 1
        return per * d.group
    best = max((c for c in range(2, min(d.k, 512) + 1, 2 if d.bits == 4 else 1) if d.k % c == 0), default=d.k)
    return best if best >= 64 else d.k


def tiles(d: dequant_matmul.DequantMatmul, threads: int) -> dict:
    mr = 4 if d.m >= 4 else d.m
    nv = 16 // mr if d.n >= 256 else 4  # 16 accumulators: one row x 256 columns at M = 1
    kc = _kc(d, mr)
    weight_bytes = d.k * d.n * d.bits // 8
    full = d.n // (16 * nv)
    tasks = min(threads, full) if threads > 1 and weight_bytes >= _MIN_THREAD_BYTES else 1
    return {"mr": mr, "nv": nv, "kc": kc, "tasks": max(1, tasks)}


class _Text:
    def __init__(self):
        self.lines = []
        self.n = 0

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"%{base}{self.n}"


def _row_tile(w: _Text, d, ty, rows: int, m0: str, col: str, kb: str, kc: int, nv: int, masked: bool, ind: str):
    """Code for rows m0..m0+rows-1, columns col..col+16 nv, K rows kb..kb+kc: adds into y."""
    inb = "false" if masked else "true"
    width = 16 * nv
    v16, vb = "vector<16xf32>", f"vector<{width}xi8>"
    chunk = d.group if d.group < d.k else kc
    per_byte = 2 if d.bits == 4 else 1
    g = w.fresh("g")
    w(f"{ind}scf.for {g} = {kb} to {kb}_end step %c{chunk}_ {{")
    i2 = ind + "  "
    accs = [f"%p{i}_{v}" for i in range(rows) for v in range(nv)]
    rb, re_ = w.fresh("rb"), w.fresh("re")
    w(f"{i2}{rb} = arith.divui {g}, %c{per_byte}_ : index")
    w(f"{i2}{re_} = arith.addi {rb}, %c{chunk // per_byte}_ : index")
    res = w.fresh("acc")
    r = w.fresh("r")
    w(f"{i2}{res}:{len(accs)} = scf.for {r} = {rb} to {re_} step %c1_ iter_args("
      f"{', '.join(a + ' = %zero' for a in accs)}) -> ({', '.join([v16] * len(accs))}) {{")
    i3 = i2 + "  "
    b = w.fresh("b")
    w(f"{i3}{b} = vector.transfer_read %q[{r}, {col}], %pad8 {{in_bounds = [{inb}]}} : {ty['q']}, {vb}")
    planes = []  # (k offset within the stored row, byte vector)
    if d.bits == 8:
        planes.append((0, b))
    else:
        lo, hi = w.fresh("lo"), w.fresh("hi")
        w(f"{i3}{lo} = arith.shli {b}, %four{width} : {vb}")
        w(f"{i3}{hi} = arith.andi {b}, %high{width} : {vb}")
        if not d.signed:
            lo2, hi2 = w.fresh("lo"), w.fresh("hi")
            w(f"{i3}{lo2} = arith.xori {lo}, %sign{width} : {vb}")
            w(f"{i3}{hi2} = arith.xori {hi}, %sign{width} : {vb}")
            lo, hi = lo2, hi2
        planes += [(0, lo), (1, hi)]
    cur = {a: a for a in accs}
    for koff, plane in planes:
        kk = w.fresh("k")
        w(f"{i3}{kk} = affine.apply affine_map<(d0) -> (d0 * {per_byte} + {koff})>({r})")
        wf = []
        for v in range(nv):
            sl, ext, fl = w.fresh("s"), w.fresh("e"), w.fresh("f")
            if nv == 1:
                sl = plane
            else:
                w(f"{i3}{sl} = vector.extract_strided_slice {plane} {{offsets = [{16 * v}], sizes = [16], strides = [1]}}"
                  f" : {vb} to vector<16xi8>")
            w(f"{i3}{ext} = arith.extsi {sl} : vector<16xi8> to vector<16xi32>")
            w(f"{i3}{fl} = arith.sitofp {ext} : vector<16xi32> to {v16}")
            wf.append(fl)
        for i in range(rows):
            mi, xs, xb = w.fresh("m"), w.fresh("x"), w.fresh("xb")
            w(f"{i3}{mi} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
            w(f"{i3}{xs} = memref.load %x[{mi}, {kk}] : {ty['x']}")
            w(f"{i3}{xb} = vector.broadcast {xs} : f32 to {v16}")
            for v in range(nv):
                a = f"%p{i}_{v}"
                nxt = w.fresh("fma")
                w(f"{i3}{nxt} = vector.fma {xb}, {wf[v]}, {cur[a]} : {v16}")
                cur[a] = nxt
    w(f"{i3}scf.yield {', '.join(cur[a] for a in accs)} : {', '.join([v16] * len(accs))}")
    w(f"{i2}}}")
    # apply the group's scale (and zero point) and add into y
    srow = w.fresh("srow")
    w(f"{i2}{srow} = arith.divui {g}, %c{d.group}_ : index")
    if d.zero_point:
        xcol = w.fresh("xcol")
        w(f"{i2}{xcol} = arith.divui {g}, %c{chunk}_ : index")
    for v in range(nv):
        cv, sv, s2 = w.fresh("col"), w.fresh("sv"), w.fresh("sc")
        w(f"{i2}{cv} = affine.apply affine_map<(d0) -> (d0 + {16 * v})>({col})")
        w(f"{i2}{sv} = vector.transfer_read %s[{srow}, {cv}], %padf {{in_bounds = [{inb}]}} : {ty['s']}, {v16}")
        if d.bits == 4:
            w(f"{i2}{s2} = arith.mulf {sv}, %sixteenth : {v16}")
        else:
            s2 = sv
        zv = None
        if d.zero_point:
            z0, zv = w.fresh("z"), w.fresh("zq")
            w(f"{i2}{z0} = vector.transfer_read %zp[{srow}, {cv}], %padf {{in_bounds = [{inb}]}} : {ty['zp']}, {v16}")
            if d.bits == 4:  # the sums are of 16 q (signed) or 16 (q - 8) (unsigned)
                z1 = z0
                if not d.signed:
                    z1 = w.fresh("z")
                    w(f"{i2}{z1} = arith.subf {z0}, %eight : {v16}")
                w(f"{i2}{zv} = arith.mulf {z1}, %sixteen : {v16}")
            else:
                zv = z0
        for i in range(rows):
            mi, old, new = w.fresh("m"), w.fresh("old"), w.fresh("new")
            w(f"{i2}{mi} = affine.apply affine_map<(d0) -> (d0 + {i})>({m0})")
            part = f"{res}#{i * nv + v}"
            if zv is not None:
                xs, xb, corr = w.fresh("xs"), w.fresh("xsb"), w.fresh("cor")
                w(f"{i2}{xs} = memref.load %xsum[{mi}, {xcol}] : {ty['xsum']}")
                w(f"{i2}{xb} = vector.broadcast {xs} : f32 to {v16}")
                w(f"{i2}{corr} = arith.mulf {zv}, {xb} : {v16}")
                fixed = w.fresh("fix")
                w(f"{i2}{fixed} = arith.subf {part}, {corr} : {v16}")
                part = fixed
            w(f"{i2}{old} = vector.transfer_read %y[{mi}, {cv}], %padf {{in_bounds = [{inb}]}} : {ty['y']}, {v16}")
            w(f"{i2}{new} = vector.fma {part}, {s2}, {old} : {v16}")
            w(f"{i2}vector.transfer_write {new}, %y[{mi}, {cv}] {{in_bounds = [{inb}]}} : {v16}, {ty['y']}")
    w(f"{ind}}}")


def _rows(w: _Text, d, ty, mr: int, col: str, kb: str, kc: int, nv: int, masked: bool, ind: str):
    """All rows for one column tile and K block: MR-row tiles, then the M % MR single rows."""
    main = d.m - d.m % mr
    if main:
        m0 = w.fresh("m0")
        w(f"{ind}scf.for {m0} = %c0 to %c{main}_ step %c{mr}_ {{")
        _row_tile(w, d, ty, mr, m0, col, kb, kc, nv, masked, ind + "  ")
        w(f"{ind}}}")
    if d.m % mr:
        m0 = w.fresh("m0")
        w(f"{ind}scf.for {m0} = %c{main}_ to %c{d.m}_ step %c1_ {{")
        _row_tile(w, d, ty, 1, m0, col, kb, kc, nv, masked, ind + "  ")
        w(f"{ind}}}")


def _k_blocks(w: _Text, d, ty, mr: int, col: str, kc: int, nv: int, masked: bool, ind: str):
    kb = w.fresh("kb")
    w(f"{ind}scf.for {kb} = %c0 to %c{d.k}_ step %c{kc}_ {{")
    w(f"{ind}  {kb}_end = arith.addi {kb}, %c{kc}_ : index")
    _rows(w, d, ty, mr, col, kb, kc, nv, masked, ind + "  ")
    w(f"{ind}}}")


def kernel_text(d: dequant_matmul.DequantMatmul, mr: int, nv: int, kc: int, tasks: int, types: dict) -> str:
    """The kernel as a function @kernel(x, q, s, [zp,] y) adding the product into y."""
    w = _Text()
    args = ["%x: " + types["x"], "%q: " + types["q"], "%s: " + types["s"]]
    if d.zero_point:
        args.append("%zp: " + types["zp"])
    args.append("%y: " + types["y"])
    chunk = d.group if d.group < d.k else kc
    types = dict(types, xsum=f"memref<{d.m}x{d.k // chunk}xf32>")
    w(f"func.func private @kernel({', '.join(args)}) {{")
    w("  %c0 = arith.constant 0 : index")
    w("  %pad8 = arith.constant 0 : i8")
    w("  %padf = arith.constant 0.0 : f32")
    w("  %zero = arith.constant dense<0.0> : vector<16xf32>")
    w("  %sixteenth = arith.constant dense<0.0625> : vector<16xf32>")
    w("  %sixteen = arith.constant dense<16.0> : vector<16xf32>")
    w("  %eight = arith.constant dense<8.0> : vector<16xf32>")
    tile = 16 * nv
    full, rem = d.n // tile, d.n % tile
    widths = sorted({tile} | ({16 * -(-rem // 16)} if rem else set()))
    for width in widths if d.bits == 4 else ():
        w(f"  %four{width} = arith.constant dense<4> : vector<{width}xi8>")
        w(f"  %high{width} = arith.constant dense<-16> : vector<{width}xi8>")
        w(f"  %sign{width} = arith.constant dense<-128> : vector<{width}xi8>")
    if d.zero_point:  # sums of x over each chunk of K
        w(f"  %xsum = memref.alloc() {{alignment = 64 : i64}} : {types['xsum']}")
        w(f"  scf.for %sm = %c0 to %c{d.m}_ step %c1_ {{")
        w(f"    scf.for %sg = %c0 to %c{d.k // chunk}_ step %c1_ {{")
        w(f"      %sk0 = arith.muli %sg, %c{chunk}_ : index")
        w(f"      %sk1 = arith.addi %sk0, %c{chunk}_ : index")
        w(f"      %ssum = scf.for %sk = %sk0 to %sk1 step %c1_ iter_args(%sa = %padf) -> (f32) {{")
        w(f"        %sx = memref.load %x[%sm, %sk] : {types['x']}")
        w("        %sn = arith.addf %sa, %sx : f32")
        w("        scf.yield %sn : f32")
        w("      }")
        w(f"      memref.store %ssum, %xsum[%sm, %sg] : {types['xsum']}")
        w("    }")
        w("  }")
    if full:
        per = -(-full // tasks)
        w(f"  scf.forall (%t) in ({tasks}) {{")
        w(f"    %tb = arith.muli %t, %c{per}_ : index")
        w(f"    %te0 = arith.addi %tb, %c{per}_ : index")
        w(f"    %te = arith.minui %te0, %c{full}_ : index")
        w("    scf.for %ti = %tb to %te step %c1_ {")
        w(f"      %col = arith.muli %ti, %c{tile}_ : index")
        _k_blocks(w, d, types, mr, "%col", kc, nv, False, "      ")
        w("    }")
        w("  }")
    if rem:
        w(f"  %tcol = arith.constant {full * tile} : index")
        _k_blocks(w, d, types, mr, "%tcol", kc, -(-rem // 16), True, "  ")
    if d.zero_point:
        w(f"  memref.dealloc %xsum : {types['xsum']}")
    w("  return")
    w("}")
    text = "\n".join(w.lines)
    consts = sorted({int(c) for c in re.findall(r"%c(\d+)_", text)})
    decl = "\n".join(f"  %c{c}_ = arith.constant {c} : index" for c in consts)
    return text.replace("  %c0 = arith.constant 0 : index", "  %c0 = arith.constant 0 : index\n" + decl, 1)


def select(op: ir.Operation, threads: int) -> dict | None:
    """{mr, kc, tasks} for a dequantizing matmul (qmlir.ir.dequant_matmul), or None."""
    d = dequant_matmul.match(op)
    return None if d is None else tiles(d, threads)


def expand(module, chosen: list) -> int:
    """Replace each (dequantizing matmul on memrefs, config) by the kernel's body, in place."""
    for op, cfg in chosen:
        d = dequant_matmul.match(op)
        if d is None:
            raise TypeError(f"{op.location}: kernel dequant_gemm chosen for an op that is not a dequantizing matmul")
        operands = list(op.operands)
        if not isinstance(operands[0].type, ir.MemRefType):
            raise TypeError(f"{op.location}: kernel dequant_gemm expands after bufferization; the op is on tensors")
        names = ["x", "q", "s"] + (["zp"] if d.zero_point else []) + ["y"]
        types = {name: str(v.type) for name, v in zip(names, operands)}
        text = kernel_text(d, cfg["mr"], cfg["nv"], cfg["kc"], cfg["tasks"], types)
        splice(op, text, operands, returns_result=False)
    return len(chosen)


KERNEL = register_kernel(Kernel(
    name="dequant_gemm",
    summary="weight-only int8/int4 matmuls (per channel or group, zero points): stored bytes read once, "
            "dequantized in registers, one scale per group; threaded over N; any CPU",
    stage="buffers",
    features=frozenset(),
    priority=25,
    ops=("linalg.generic",),
    select=select,
    expand=expand,
))
