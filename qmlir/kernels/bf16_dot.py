"""Kernel `bf16_dot`: bf16 NT matmuls on the AVX512_BF16 dot-product instruction.

A bf16 x bf16 -> f32 matmul whose right-hand operand is read as [N, K] (the NT form that
`qmlir-fold-transpose-into-matmul` makes of a bf16 `F.linear`) has both operands contiguous
along K. `vdpbf16ps` (`x86vector.avx512.dot`) multiplies 32 bf16 pairs and adds adjacent
products into 16 f32 lanes, so each lane of an accumulator sums K/16 products and one
horizontal reduction per output element finishes the sum. This kernel replaces such a matmul by
its body, written in upstream ops (scf, vector, x86vector) on tensors, in place:

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

Selected only for targets with avx512_bf16 and when the sizes divide the tiles (K by 32, M by
MR, N by NR); other bf16 matmuls keep the portable vector schedule. Config: mr, nr, nc, kc.
"""
from __future__ import annotations

import re

from mlir import ir

from qmlir.ir.matmul_layout import is_nt_layout
from qmlir.kernels.base import Kernel, largest_divisor, register_kernel, splice

_KV = 32  # bf16 elements per dot


def _tiles(m: int, n: int, k: int, threads: int):
    if k % _KV:
        return None
    mr = next(t for t in (4, 2, 1) if m % t == 0)
    nr = next((t for t in ((8, 4, 2, 1) if m == 1 else (4, 2, 1)) if n % t == 0), None)
    nc = largest_divisor(n, max(nr, min(256, n // max(1, threads))), nr) or n
    kc = k if k <= 1024 else (largest_divisor(k, 1024, _KV) or k)
    return mr, nr, nc, kc


def kernel_text(name: str, m: int, n: int, k: int, mr: int, nr: int, nc: int, kc: int) -> str:
    """The kernel as a private function @name(x, w, acc) -> acc + x @ w^T with these tiles."""
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


def select(op: ir.Operation, threads: int) -> dict | None:
    """{mr, nr, nc, kc} for a bf16 x bf16 -> f32 NT linalg.matmul on static tensors, or None."""
    if op.name != "linalg.matmul" or not is_nt_layout(op):
        return None
    types = [v.type for v in list(op.operands)[:2]] + [op.results[0].type] if op.results else []
    if len(types) != 3 or not all(isinstance(t, ir.RankedTensorType) for t in types):
        return None
    a, b, c = (ir.RankedTensorType(t) for t in types)
    bf16, f32 = ir.BF16Type.get(), ir.F32Type.get()
    if a.element_type != bf16 or b.element_type != bf16 or c.element_type != f32:
        return None
    if not (a.has_static_shape and b.has_static_shape):
        return None
    tiles = _tiles(a.shape[0], b.shape[0], a.shape[1], threads)
    if tiles is None:
        return None
    return dict(zip(("mr", "nr", "nc", "kc"), tiles))


def expand(module, chosen: list) -> int:
    """Replace each (matmul, config) by the kernel's body, in place."""
    for op, cfg in chosen:
        m, k = ir.RankedTensorType(op.operands[0].type).shape
        n = ir.RankedTensorType(op.operands[1].type).shape[0]
        text = kernel_text("kernel", m, n, k, cfg["mr"], cfg["nr"], cfg["nc"], cfg["kc"])
        splice(op, text, list(op.operands)[:3], returns_result=True)
    return len(chosen)


KERNEL = register_kernel(Kernel(
    name="bf16_dot",
    summary="bf16 NT matmuls on AVX512_BF16 vdpbf16ps (x86vector.avx512.dot), threaded over N",
    stage="tensors",
    features=frozenset({"avx512_bf16"}),
    priority=20,
    ops=("linalg.matmul",),
    select=select,
    expand=expand,
))
