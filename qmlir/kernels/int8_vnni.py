"""Kernel `int8_vnni`: i8 x i8 -> i32 matmuls on the AVX512_VNNI dot-product instruction.

`vpdpbusd` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products into one of 16 i32 lanes. The quantized linears' integer matmul (`qmlir.ir.quant.int_matmul`,
made by qmlir-fuse-quantized-matmul and the W8A8 layers) has signed activations x [M, K] and
signed weights w [K, N] (a function argument, rows along K). The kernel

- packs each [KC, 64] panel of weights once per call into the instruction's layout (four rows
  k..k+3 interleaved with `vector.shuffle`: each i32 lane holds the four k of one column), a
  contiguous buffer reused by every row tile (read in place, rows 4 KB apart alias in the
  caches: 85 GOP/s instead of the packed kernel's figure in benchmarks/);
- broadcasts x[m, k..k+3] (four bytes, as one i32) and flips its sign bit: x + 128 is the
  unsigned operand;
- since sum (x + 128) w = sum x w + 128 sum w, the packing also sums the weight columns
  (`vpdpbusd` with a vector of ones) and 128 x column sum is subtracted at the end: exact in i32
  (|sum| < 255 * 128 * K < 2^31 for K < 65536).

Upstream's x86vector int8 dot op emits `vpdpbssd` (AVX-VNNI-INT8, signed x signed), which CPUs
with AVX512_VNNI only often lack; this kernel calls the LLVM intrinsic
`llvm.x86.avx512.vpdpbusd.512` through `llvm.call_intrinsic`. Matches

    %y = linalg.matmul ins(%x, %w : tensor<MxKxi8>, tensor<KxNxi8>) outs(%zero : tensor<MxNxi32>)

and replaces it, after bufferization (stage `buffers`: the intrinsic call declares no memory
effects, which one-shot bufferization rejects; selection on tensors records the choice, which
survives bufferization on the op), by:

    scf.forall over N blocks (threads) { scf.for 64-column panels, K blocks {
      pack the panel (vector.shuffle) into a buffer, with column sums
      scf.for MR-row tiles { scf.for k step 4 {
        llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512" per (row, 16 columns) }
        add acc - (colsum << 7) into the output buffer } } }

Selected only for targets with avx512_vnni, K % 4 == 0 and N % 64 == 0. Config: mr, nc, kc.
"""
from __future__ import annotations

import re

from mlir import ir

from qmlir.ir.matmul_layout import is_default_layout
from qmlir.kernels.base import Kernel, largest_divisor, register_kernel, splice

_NR = 64  # columns per tile: four 16-lane i32 accumulators per row
_VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def _tiles(m: int, n: int, k: int, threads: int):
    if k % 4 or n % _NR:
        return None
    mr = next(t for t in (4, 2, 1) if m % t == 0)
    nc = largest_divisor(n, max(_NR, min(256, n // max(1, threads))), _NR) or n
    kc = k if k <= 2048 else (largest_divisor(k, 2048, 4) or k)
    return mr, nc, kc


def _interleave_masks():
    """Shuffle masks: rows (r0, r1) -> byte pairs, then pairs of (r0r1, r2r3) -> 4-byte groups."""
    lo = [i for c in range(32) for i in (c, 64 + c)]            # columns 0..31 of two rows
    hi = [i for c in range(32, 64) for i in (c, 64 + c)]        # columns 32..63
    quads = []
    for q in range(2):  # 16 columns each, from one 64-byte pair vector (32 columns)
        quads.append([i for c in range(16 * q, 16 * q + 16) for i in (2 * c, 2 * c + 1, 64 + 2 * c, 64 + 2 * c + 1)])
    return lo, hi, quads


def broadcast_four_bytes(w, ind: str, tag: str, at: str, memref_type: str, lanes: int = 16) -> str:
    """Emit the read of the four bytes at `at` (an indexed memref of `memref_type`) as one i32
    broadcast to all `lanes` lanes: the vector<(4 lanes)xi8> %xc<tag>, a `vpdpbusd` (16 lanes)
    or `vpmaddubsw` (8) operand whose every lane holds the same four values. Returns its name."""
    w(f"{ind}%xb{tag} = vector.transfer_read {at}, %pad {{in_bounds = [true]}} : {memref_type}, vector<4xi8>")
    w(f"{ind}%xw{tag} = vector.bitcast %xb{tag} : vector<4xi8> to vector<1xi32>")
    w(f"{ind}%xs{tag} = vector.extract %xw{tag}[0] : i32 from vector<1xi32>")
    w(f"{ind}%xv{tag} = vector.broadcast %xs{tag} : i32 to vector<{lanes}xi32>")
    w(f"{ind}%xc{tag} = vector.bitcast %xv{tag} : vector<{lanes}xi32> to vector<{4 * lanes}xi8>")
    return f"%xc{tag}"


def kernel_text(name: str, m: int, n: int, k: int, mr: int, nc: int, kc: int, xt: str, wt: str, ct: str) -> str:
    """The kernel as a function @name(x, w, acc) adding x @ w into acc (memrefs of types xt, wt,
    ct) with these tiles."""
    nt = n // nc
    v8, v32 = "vector<64xi8>", "vector<16xi32>"
    lo, hi, quads = _interleave_masks()
    steps = kc // 4
    buf = f"memref<{steps}x4x64xi8>"
    accs = [f"%a{i}_{q}" for i in range(mr) for q in range(4)]
    L = []
    w = L.append
    w(f"func.func private @{name}(%x: {xt}, %w: {wt}, %c: {ct}) {{")
    w("  %c0 = arith.constant 0 : index")
    w("  %pad = arith.constant 0 : i8")
    w("  %ipad = arith.constant 0 : i32")
    w(f"  %zero = arith.constant dense<0> : {v32}")
    w(f"  %ones = arith.constant dense<1> : {v8}")
    w(f"  %sign = arith.constant dense<-128> : {v8}")
    w(f"  %seven = arith.constant dense<7> : {v32}")
    w(f"  scf.forall (%t) in ({nt}) {{")
    w(f"    %nb = affine.apply affine_map<(d0) -> (d0 * {nc})>(%t)")
    w(f"    %buf = memref.alloc() {{alignment = 64 : i64}} : {buf}")
    w(f"    scf.for %n0 = %c0 to %c{nc}_ step %c{_NR}_ {{")
    w("      %ncol = arith.addi %nb, %n0 : index")
    w(f"      scf.for %kc = %c0 to %c{k}_ step %c{kc}_ {{")
    # pack one [KC, 64] panel of w into the instruction's layout, summing its columns on the way
    w(f"        %cs:4 = scf.for %s = %c0 to %c{steps}_ step %c1_ iter_args(%cs0 = %zero, %cs1 = %zero, "
      f"%cs2 = %zero, %cs3 = %zero) -> ({v32}, {v32}, {v32}, {v32}) {{")
    for p in range(4):
        w(f"          %kr{p} = affine.apply affine_map<(d0, d1) -> (d0 + d1 * 4 + {p})>(%kc, %s)")
        w(f"          %r{p} = vector.transfer_read %w[%kr{p}, %ncol], %pad {{in_bounds = [true]}} : {wt}, {v8}")
    w(f"          %p01lo = vector.shuffle %r0, %r1 {lo} : {v8}, {v8}")
    w(f"          %p01hi = vector.shuffle %r0, %r1 {hi} : {v8}, {v8}")
    w(f"          %p23lo = vector.shuffle %r2, %r3 {lo} : {v8}, {v8}")
    w(f"          %p23hi = vector.shuffle %r2, %r3 {hi} : {v8}, {v8}")
    for q in range(4):
        src = "lo" if q < 2 else "hi"
        w(f"          %v{q} = vector.shuffle %p01{src}, %p23{src} {quads[q % 2]} : {v8}, {v8}")
        w(f"          vector.transfer_write %v{q}, %buf[%s, %c{q}_, %c0] {{in_bounds = [true]}} : {v8}, {buf}")
        w(f"          %e{q} = llvm.call_intrinsic \"{_VPDPBUSD}\"(%cs{q}, %ones, %v{q}) : ({v32}, {v8}, {v8}) -> {v32}")
    w(f"          scf.yield %e0, %e1, %e2, %e3 : {v32}, {v32}, {v32}, {v32}")
    w("        }")
    for q in range(4):
        w(f"        %corr{q} = arith.shli %cs#{q}, %seven : {v32}")
    w(f"        scf.for %m0 = %c0 to %c{m}_ step %c{mr}_ {{")
    w(f"          %acc:{len(accs)} = scf.for %s = %c0 to %c{steps}_ step %c1_ iter_args("
      f"{', '.join(a + ' = %zero' for a in accs)}) -> ({', '.join([v32] * len(accs))}) {{")
    w("            %kk = affine.apply affine_map<(d0, d1) -> (d0 + d1 * 4)>(%kc, %s)")
    for q in range(4):
        w(f"            %v{q} = vector.transfer_read %buf[%s, %c{q}_, %c0], %pad {{in_bounds = [true]}} : {buf}, {v8}")
    outs = []
    for i in range(mr):
        w(f"            %mi{i} = affine.apply affine_map<(d0) -> (d0 + {i})>(%m0)")
        broadcast_four_bytes(w, "            ", str(i), f"%x[%mi{i}, %kk]", xt)
        w(f"            %xu{i} = arith.xori %xc{i}, %sign : {v8}")
        for q in range(4):
            w(f"            %d{i}_{q} = llvm.call_intrinsic \"{_VPDPBUSD}\"(%a{i}_{q}, %xu{i}, %v{q}) : "
              f"({v32}, {v8}, {v8}) -> {v32}")
            outs.append(f"%d{i}_{q}")
    w(f"            scf.yield {', '.join(outs)} : {', '.join([v32] * len(accs))}")
    w("          }")
    for i in range(mr):
        w(f"          %oi{i} = affine.apply affine_map<(d0) -> (d0 + {i})>(%m0)")
        for q in range(4):
            w(f"          %oc{i}_{q} = affine.apply affine_map<(d0) -> (d0 + {16 * q})>(%ncol)")
            w(f"          %old{i}_{q} = vector.transfer_read %c[%oi{i}, %oc{i}_{q}], %ipad {{in_bounds = [true]}} : {ct}, {v32}")
            w(f"          %fix{i}_{q} = arith.subi %acc#{i * 4 + q}, %corr{q} : {v32}")
            w(f"          %new{i}_{q} = arith.addi %old{i}_{q}, %fix{i}_{q} : {v32}")
            w(f"          vector.transfer_write %new{i}_{q}, %c[%oi{i}, %oc{i}_{q}] {{in_bounds = [true]}} : {v32}, {ct}")
    w("        }")
    w("      }")
    w("    }")
    w(f"    memref.dealloc %buf : {buf}")
    w("  }")
    w("  return")
    w("}")
    text = "\n".join(L)
    consts = sorted({int(c) for c in re.findall(r"%c(\d+)_", text)})
    decl = "\n".join(f"  %c{c}_ = arith.constant {c} : index" for c in consts)
    return text.replace("  %c0 = arith.constant 0 : index", "  %c0 = arith.constant 0 : index\n" + decl, 1)


def select(op: ir.Operation, threads: int) -> dict | None:
    """{mr, nc, kc} for an i8 x i8 -> i32 default-layout linalg.matmul of static shape, or None."""
    if op.name != "linalg.matmul":
        return None
    i8, i32 = ir.IntegerType.get_signless(8), ir.IntegerType.get_signless(32)
    a, b, c = (v.type for v in list(op.operands)[:3])
    if not all(isinstance(t, (ir.RankedTensorType, ir.MemRefType)) for t in (a, b, c)):
        return None
    a, b, c = (ir.ShapedType(t) for t in (a, b, c))
    if (a.element_type, b.element_type, c.element_type) != (i8, i8, i32):
        return None
    if not (a.has_static_shape and b.has_static_shape) or not is_default_layout(op):
        return None
    tiles = _tiles(a.shape[0], b.shape[1], a.shape[1], threads)
    return None if tiles is None else dict(zip(("mr", "nc", "kc"), tiles))


def expand(module, chosen: list) -> int:
    """Replace each (matmul on memrefs, config) by the kernel's body, in place."""
    for op, cfg in chosen:
        x, w, c = list(op.operands)[:3]
        if not isinstance(x.type, ir.MemRefType):
            raise TypeError(f"{op.location}: kernel int8_vnni expands after bufferization; the op is on tensors")
        m, k = ir.MemRefType(x.type).shape
        n = ir.MemRefType(w.type).shape[1]
        text = kernel_text("kernel", m, n, k, cfg["mr"], cfg["nc"], cfg["kc"], str(x.type), str(w.type), str(c.type))
        splice(op, text, (x, w, c), returns_result=False)
    return len(chosen)


KERNEL = register_kernel(Kernel(
    name="int8_vnni",
    summary="i8 x i8 -> i32 matmuls on AVX512_VNNI vpdpbusd (u8 x s8, column-sum correction), threaded over N",
    stage="buffers",
    features=frozenset({"avx512_vnni"}),
    priority=30,
    ops=("linalg.matmul",),
    select=select,
    expand=expand,
))
