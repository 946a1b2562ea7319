"""qmlir-int8-dot-matmul: i8 x i8 -> i32 matmuls on the AVX512_VNNI dot-product instruction.

`vpdpbusd` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products into one of 16 i32 lanes. The quantized linears' integer matmul (`quant_ir.int_matmul`,
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
with AVX512_VNNI only often lack; this pass calls the LLVM intrinsic
`llvm.x86.avx512.vpdpbusd.512` through `llvm.call_intrinsic`. Matches

    %y = linalg.matmul ins(%x, %w : tensor<MxKxi8>, tensor<KxNxi8>) outs(%zero : tensor<MxNxi32>)

and replaces it, after bufferization (the intrinsic call declares no memory effects, which
one-shot bufferization rejects; on tensors this pass only tags the matmuls it will take), by:

    scf.forall over N blocks (threads) { scf.for 64-column panels, K blocks {
      pack the panel (vector.shuffle) into a buffer, with column sums
      scf.for MR-row tiles { scf.for k step 4 {
        llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512" per (row, 16 columns) }
        add acc - (colsum << 7) into the output buffer } } }

Only when the host CPU has avx512_vnni (the CPU pipeline checks), K % 4 == 0 and N % 64 == 0.
"""
from __future__ import annotations

import re

from mlir import ir

from qmlir.passes import registry
from qmlir.passes.matmul_tiling import _largest_divisor, default_threads
from qmlir.passes.transpose_matmul_fold import is_default_layout

_NR = 64  # columns per tile: four 16-lane i32 accumulators per row
_VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"


def _tiles(m: int, n: int, k: int, threads: int):
    if k % 4 or n % _NR:
        return None
    mr = next(t for t in (4, 2, 1) if m % t == 0)
    nc = _largest_divisor(n, max(_NR, min(256, n // max(1, threads))), _NR) or n
    kc = k if k <= 2048 else (_largest_divisor(k, 2048, 4) or k)
    return mr, nc, kc


def _interleave_masks():
    """Shuffle masks: rows (r0, r1) -> byte pairs, then pairs of (r0r1, r2r3) -> 4-byte groups."""
    lo = [i for c in range(32) for i in (c, 64 + c)]            # columns 0..31 of two rows
    hi = [i for c in range(32, 64) for i in (c, 64 + c)]        # columns 32..63
    quads = []
    for q in range(2):  # 16 columns each, from one 64-byte pair vector (32 columns)
        quads.append([i for c in range(16 * q, 16 * q + 16) for i in (2 * c, 2 * c + 1, 64 + 2 * c, 64 + 2 * c + 1)])
    return lo, hi, quads


def kernel_text(name: str, m: int, n: int, k: int, threads: int, xt: str, wt: str, ct: str) -> str | None:
    """The kernel as a function @name(x, w, acc) adding x @ w into acc (memrefs of types xt, wt,
    ct), or None when the sizes do not fit its tiles."""
    tiles = _tiles(m, n, k, threads)
    if tiles is None:
        return None
    mr, nc, kc = tiles
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
        w(f"            %xb{i} = vector.transfer_read %x[%mi{i}, %kk], %pad {{in_bounds = [true]}} : {xt}, vector<4xi8>")
        w(f"            %xw{i} = vector.bitcast %xb{i} : vector<4xi8> to vector<1xi32>")
        w(f"            %xs{i} = vector.extract %xw{i}[0] : i32 from vector<1xi32>")
        w(f"            %xv{i} = vector.broadcast %xs{i} : i32 to {v32}")
        w(f"            %xc{i} = vector.bitcast %xv{i} : {v32} to {v8}")
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


_TAG = "qmlir.vnni"


def _eligible(op: ir.Operation, threads: int) -> tuple | None:
    """(M, N, K) when `op` is an i8 x i8 -> i32 default-layout matmul the kernel can take."""
    i8, i32 = ir.IntegerType.get_signless(8), ir.IntegerType.get_signless(32)
    a, b, c = (v.type for v in op.operands[:3])
    if not all(isinstance(t, (ir.RankedTensorType, ir.MemRefType)) for t in (a, b, c)):
        return None
    a, b, c = (ir.ShapedType(t) for t in (a, b, c))
    if (a.element_type, b.element_type, c.element_type) != (i8, i8, i32):
        return None
    if not (a.has_static_shape and b.has_static_shape) or not is_default_layout(op):
        return None
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    return (m, n, k) if _tiles(m, n, k, threads) is not None else None


def mark(module: ir.Module, threads: int = 0) -> int:
    """Before bufferization: tag the matmuls the kernel will take (the tiling pass skips them)."""
    threads = threads or default_threads()
    count = 0
    for op in registry.find_ops(module, "linalg.matmul"):
        op = op.operation if hasattr(op, "operation") else op
        if _eligible(op, threads) is not None:
            op.attributes[_TAG] = ir.UnitAttr.get()
            count += 1
    return count


def is_marked(op: ir.Operation) -> bool:
    return _TAG in op.attributes


def run(module: ir.Module, threads: int = 0) -> int:
    """Replace i8 matmuls on memrefs (after bufferization) by VNNI kernels, in place; returns how
    many. On tensors, only tags them (`mark`): the intrinsic call has no declared memory effects,
    which bufferization rejects, so the kernel is built on the buffers. threads=0: all CPUs."""
    threads = threads or default_threads()
    ops = [o.operation if hasattr(o, "operation") else o for o in registry.find_ops(module, "linalg.matmul")]
    if ops and not isinstance(ops[0].operands[0].type, ir.MemRefType):
        return mark(module, threads)
    count = 0
    for op in ops:
        sizes = _eligible(op, threads)
        if sizes is None:
            continue
        m, n, k = sizes
        x, w, c = list(op.operands)[:3]
        text = kernel_text("kernel", m, n, k, threads, str(x.type), str(w.type), str(c.type))
        parsed = ir.Module.parse(text)
        block = parsed.body.operations[0].regions[0].blocks[0]
        for arg, value in zip(block.arguments, (x, w, c)):
            arg.replace_all_uses_with(value)
        body = list(block.operations)
        for inner in body[:-1]:
            inner.operation.move_before(op)
        op.erase()
        count += 1
    return count


registry.register_pass(
    "qmlir-int8-dot-matmul",
    "i8 x i8 -> i32 matmuls -> AVX512_VNNI vpdpbusd kernels (u8 x s8 with a column-sum correction), threaded over N",
    run,
    {"threads": registry.Option(int, 0, "worker tasks (0: all CPUs)")},
)
