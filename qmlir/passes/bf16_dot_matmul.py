"""qmlir-bf16-dot-matmul: bf16 NT matmuls on the AVX512_BF16 dot-product instruction.

A bf16 x bf16 -> f32 matmul whose right-hand operand is read as [N, K] (the NT form that
`qmlir-fold-transpose-into-matmul` makes of a bf16 `F.linear`) has both operands contiguous
along K. `vdpbf16ps` (`x86vector.avx512.dot`) multiplies 32 bf16 pairs and adds adjacent
products into 16 f32 lanes, so each lane of an accumulator sums K/16 products and one
horizontal reduction per output element finishes the sum. This pass replaces such a matmul by
that kernel, written in upstream ops (scf, vector, x86vector) on tensors, in place:

    %y = linalg.matmul indexing_maps = [(m, k), (n, k), (m, n)]
           ins(%x, %w : tensor<MxKxbf16>, tensor<NxKxbf16>) outs(%acc : tensor<MxNxf32>)

becomes

    %y = scf.forall (%t) in (N / NC) shared_outs(%o = %acc) {        // one task per N block
      scf.for %kc, %m0, %n0 {                                         // K blocks of KC, MR x NR tiles
        %a:MR*NR = scf.for %k step 32 iter_args(vector<16xf32> ...) {
          %d = x86vector.avx512.dot %a, %x_row, %w_row : vector<32xbf16> -> vector<16xf32>
        }
        vector.reduction <add> per accumulator, added into the output tile
      }
    }

Only when the host CPU has avx512_bf16 (the CPU pipeline checks) and the sizes divide the
tiles (K by 32, M by MR, N by NR); other bf16 matmuls keep the portable vector schedule.
"""
from __future__ import annotations

import re

from mlir import ir

from qmlir.passes import registry
from qmlir.passes.matmul_tiling import _largest_divisor, default_threads
from qmlir.passes.transpose_matmul_fold import is_nt_layout

_KV = 32  # bf16 elements per dot


def _tiles(m: int, n: int, k: int, threads: int):
    if k % _KV:
        return None
    mr = next(t for t in (4, 2, 1) if m % t == 0)
    nr = next((t for t in ((8, 4, 2, 1) if m == 1 else (4, 2, 1)) if n % t == 0), None)
    nc = _largest_divisor(n, max(nr, min(256, n // max(1, threads))), nr) or n
    kc = k if k <= 1024 else (_largest_divisor(k, 1024, _KV) or k)
    return mr, nr, nc, kc


def kernel_text(name: str, m: int, n: int, k: int, threads: int) -> str | None:
    """The kernel as a private function @name(x, w, acc) -> acc + x @ w^T, or None."""
    tiles = _tiles(m, n, k, threads)
    if tiles is None:
        return None
    mr, nr, nc, kc = tiles
    nt = n // nc
    xt, wt, ct = f"tensor<{m}x{k}xbf16>", f"tensor<{n}x{k}xbf16>", f"tensor<{m}x{n}xf32>"
    bt = f"tensor<{m}x{nc}xf32>"
    vz = "vector<16xf32>"
    accs = [f"%a{i}_{j}" for i in range(mr) for j in range(nr)]
    inits = ", ".join(f"{a} = %zero" for a in accs)
    L = []
    w = L.append
    w(f"func.func private @{name}(%x: {xt}, %w: {wt}, %c: {ct}) -> {ct} {{")
    w("  %c0 = arith.constant 0 : index")
    w("  %pad = arith.constant 0.0 : bf16")
    w(f"  %zero = arith.constant dense<0.0> : {vz}")
    w(f"  %r = scf.forall (%t) in ({nt}) shared_outs(%o = %c) -> ({ct}) {{")
    w(f"    %nb = affine.apply affine_map<(d0) -> (d0 * {nc})>(%t)")
    w(f"    %blk = tensor.extract_slice %o[0, %nb] [{m}, {nc}] [1, 1] : {ct} to {bt}")
    w(f"    %rk = scf.for %kc = %c0 to %c{k}_ step %c{kc}_ iter_args(%b0 = %blk) -> ({bt}) {{")
    w(f"      %rm = scf.for %m0 = %c0 to %c{m}_ step %c{mr}_ iter_args(%b1 = %b0) -> ({bt}) {{")
    w(f"        %rn = scf.for %n0 = %c0 to %c{nc}_ step %c{nr}_ iter_args(%b2 = %b1) -> ({bt}) {{")
    w(f"          %kend = arith.addi %kc, %c{kc}_ : index")
    w(f"          %acc:{len(accs)} = scf.for %kk = %kc to %kend step %c{_KV}_ iter_args({inits}) -> "
      f"({', '.join([vz] * len(accs))}) {{")
    for i in range(mr):
        w(f"            %mi{i} = affine.apply affine_map<(d0) -> (d0 + {i})>(%m0)")
        w(f"            %xv{i} = vector.transfer_read %x[%mi{i}, %kk], %pad {{in_bounds = [true]}} : {xt}, vector<32xbf16>")
    for j in range(nr):
        w(f"            %nj{j} = affine.apply affine_map<(d0, d1) -> (d0 + d1 + {j})>(%nb, %n0)")
        w(f"            %wv{j} = vector.transfer_read %w[%nj{j}, %kk], %pad {{in_bounds = [true]}} : {wt}, vector<32xbf16>")
    outs = []
    for i in range(mr):
        for j in range(nr):
            w(f"            %d{i}_{j} = x86vector.avx512.dot %a{i}_{j}, %xv{i}, %wv{j} : vector<32xbf16> -> {vz}")
            outs.append(f"%d{i}_{j}")
    w(f"            scf.yield {', '.join(outs)} : {', '.join([vz] * len(accs))}")
    w("          }")
    cur = "%b2"
    for i in range(mr):
        w(f"          %oi{i} = affine.apply affine_map<(d0) -> (d0 + {i})>(%m0)")
        w(f"          %old{i} = vector.transfer_read {cur}[%oi{i}, %n0], %fz {{in_bounds = [true]}} : {bt}, vector<{nr}xf32>")
        sums = []
        for j in range(nr):
            w(f"          %s{i}_{j} = vector.reduction <add>, %acc#{i * nr + j} fastmath<reassoc> : {vz} into f32")
            sums.append(f"%s{i}_{j}")
        w(f"          %row{i} = vector.from_elements {', '.join(sums)} : vector<{nr}xf32>")
        w(f"          %new{i} = arith.addf %old{i}, %row{i} : vector<{nr}xf32>")
        w(f"          %wr{i} = vector.transfer_write %new{i}, {cur}[%oi{i}, %n0] {{in_bounds = [true]}} : vector<{nr}xf32>, {bt}")
        cur = f"%wr{i}"
    w(f"          scf.yield {cur} : {bt}")
    w("        }")
    w(f"        scf.yield %rn : {bt}")
    w("      }")
    w(f"      scf.yield %rm : {bt}")
    w("    }")
    w("    scf.forall.in_parallel {")
    w(f"      tensor.parallel_insert_slice %rk into %o[0, %nb] [{m}, {nc}] [1, 1] : {bt} into {ct}")
    w("    }")
    w("  }")
    w(f"  return %r : {ct}")
    w("}")
    text = "\n".join(L)
    consts = sorted({int(c) for c in re.findall(r"%c(\d+)_", text)})
    decl = "\n".join(f"  %c{c}_ = arith.constant {c} : index" for c in consts) + "\n  %fz = arith.constant 0.0 : f32"
    return text.replace("  %c0 = arith.constant 0 : index", "  %c0 = arith.constant 0 : index\n" + decl, 1)


def _candidates(module: ir.Module):
    bf16, f32 = ir.BF16Type.get(), ir.F32Type.get()
    for op in registry.find_ops(module, "linalg.matmul"):
        op = op.operation if hasattr(op, "operation") else op
        if not is_nt_layout(op):
            continue
        a, b = (ir.RankedTensorType(v.type) for v in op.operands[:2])
        c = ir.RankedTensorType(op.results[0].type)
        if a.element_type != bf16 or b.element_type != bf16 or c.element_type != f32:
            continue
        if not (a.has_static_shape and b.has_static_shape):
            continue
        yield op, a.shape[0], b.shape[0], a.shape[1]


def run(module: ir.Module, threads: int = 0) -> int:
    """Replace eligible bf16 NT matmuls by dot-product kernels, in place; returns how many.
    threads=0: all CPUs. (The kernel is parsed as a function and its body moved to the matmul's
    place: the inliner refuses callees with x86vector ops, which have no inliner interface.)"""
    threads = threads or default_threads()
    count = 0
    for op, m, n, k in list(_candidates(module)):
        text = kernel_text("kernel", m, n, k, threads)
        if text is None:
            continue
        parsed = ir.Module.parse(text)
        block = parsed.body.operations[0].regions[0].blocks[0]
        for arg, value in zip(block.arguments, list(op.operands)[:3]):
            arg.replace_all_uses_with(value)
        body = list(block.operations)
        for inner in body[:-1]:
            inner.operation.move_before(op)
        op.results[0].replace_all_uses_with(body[-1].operands[0])
        op.erase()
        count += 1
    return count


registry.register_pass(
    "qmlir-bf16-dot-matmul",
    "bf16 NT matmuls -> AVX512_BF16 dot-product kernels (x86vector.avx512.dot), threaded over N",
    run,
    {"threads": registry.Option(int, 0, "worker tasks (0: all CPUs)")},
)
