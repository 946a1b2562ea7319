"""Kernel `portable`: tile matmuls for caches, threads and registers, and vectorize them
(transform dialect). Needs no CPU feature: the fallback for every matmul the ISA kernels do
not take, and the whole schedule on a CPU without them.

Two schedules, chosen per op by its operand layout; every tile divides its dimension exactly,
so each tile vectorizes to bounded, unmasked vectors.

**NT matmuls** (right-hand operand read as [N, K], what `qmlir-fold-transpose-into-matmul`
makes of every `F.linear`): both operands are contiguous along K, so the K loop is vectorized:

1. `tile_using_forall` over N in blocks of NC columns (the threads: lowered later to the async
   runtime, one task per core), only when the product is big enough to pay for a dispatch;
2. `tile_using_for` over K in blocks of KC (the x and W blocks stay in L2 across the M loop);
3. `tile_using_for` to an MR x NR register tile;
4. `tile_reduction_using_for` by KV lanes: the K loop accumulates MR x NR vectors of KV
   partial sums (one FMA per lane, no horizontal work inside the loop); one reduction per
   tile at the end merges the lanes;
5. vectorize, hoist the accumulators out of the K loop (`hoist_loop_invariant_subsets`).

At 128x4096x4096 f32 this runs the register tile 4x4x16 (16 zmm accumulators, 8 loads per
16 FMAs), NC=256, KC=1024; at M=1 a 1x8 tile streams eight weight rows at a time.

**Default-layout matmuls** ([K, N] right-hand operand: weight-only int8 weights, which are
function arguments in [K, N] layout; batched attention products): big ones split N over
threads; tile M by 8/4/2/1, N by 256..8 (M x N tile <= 256 accumulators), K by 1, vectorize, lower the contraction to outer
products (FMAs; an i8 operand is converted in registers).
Matmuls in other layouts, or whose sizes have no such divisors, stay on the scalar path.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects.transform import interpreter

from qmlir.ir.matmul_layout import is_default_layout, is_nt_layout
from qmlir.kernels.base import Kernel, largest_divisor, register_kernel

_TILE_ATTR = "qmlir.tile_class"
_M_TILES = (8, 4, 2, 1)
_N_TILES = (256, 128, 64, 32, 16, 8)
_REGISTER_TILE = 256  # elements of an M x N register tile (16 zmm accumulators of f32/i32)
# Products below this many multiply-adds run on one thread: an async dispatch costs ~10 us.
_THREAD_MIN_MACS = 1 << 21


def _nt_schedule(op: ir.Operation, threads: int) -> tuple | None:
    """(kind, batch, MR, NR, KV, NC, KC, threaded) for an NT matmul, or None (stays scalar)."""
    out = ir.RankedTensorType(op.results[0].type)
    lhs = ir.RankedTensorType(op.operands[0].type)
    if not out.has_static_shape or not lhs.has_static_shape:
        return None
    *batch, m, n = out.shape
    k = lhs.shape[-1]
    kv = next((v for v in (16, 8, 4) if k % v == 0), None)
    if kv is None:
        return None
    mr = next(t for t in (4, 2, 1) if m % t == 0)
    nr = next(t for t in ((8, 4, 2, 1) if m == 1 else (4, 2, 1)) if n % t == 0)
    macs = m * n * k * max(1, len(batch) and batch[0])
    threaded = threads > 1 and macs >= _THREAD_MIN_MACS and not batch
    nc_limit = 256 if not threaded else max(nr, min(256, n // threads))
    nc = largest_divisor(n, nc_limit, nr) or nr
    kc = k if k <= 1024 else (largest_divisor(k, 1024, kv) or k)
    return ("nt", len(batch), mr, nr, kv, nc, kc, threaded)


def _default_schedule(op: ir.Operation, threads: int) -> tuple | None:
    """("outer", tiles, NC) for a default-layout matmul; NC > 0 splits N over threads."""
    out_shape = list(ir.RankedTensorType(op.results[0].type).shape) if op.results else None
    if out_shape is None:
        return None
    *batch, m, n = out_shape
    k = ir.RankedTensorType(op.operands[0].type).shape[-1]
    mixed = any(ir.RankedTensorType(v.type).element_type != ir.RankedTensorType(op.results[0].type).element_type
                for v in op.operands[:2])
    # With operands of another type (i8 weights of an f32 or i32 product), an M tile > 1 makes
    # the vectorizer convert a broadcast copy of the weight row per row of the tile and
    # transpose it element by element; one row per tile keeps one conversion per weight.
    tm = 1 if mixed else next(t for t in _M_TILES if m % t == 0)
    tn = next((t for t in _N_TILES if n % t == 0 and tm * t <= _REGISTER_TILE), None)
    if tn is None:
        return None
    nc = 0
    if threads > 1 and not batch and m * n * k >= _THREAD_MIN_MACS and n // threads >= tn:
        nc = largest_divisor(n, n // threads, tn) or 0
    return ("outer", tuple([1] * len(batch) + [tm, tn, 1]), nc)


def _schedule(op: ir.Operation, threads: int) -> tuple | None:
    if not op.results or not isinstance(op.results[0].type, ir.RankedTensorType):
        return None
    if not ir.RankedTensorType(op.results[0].type).has_static_shape:
        return None
    if is_nt_layout(op):
        return _nt_schedule(op, threads)
    if is_default_layout(op):
        # Only the default operand layouts are tiled this way: with transposed maps the K-by-1
        # vector transfers lower to stack allocations inside the K loop (a crash at K=4096).
        return _default_schedule(op, threads)
    return None


def _nt_steps(cls: int, sched: tuple) -> str:
    _, nbatch, mr, nr, kv, nc, kc, threaded = sched
    z = [0] * nbatch
    one = [1] * nbatch
    h = "!transform.any_op"
    lines = [f"%m{cls} = transform.structured.match attributes {{{_TILE_ATTR} = {cls} : i64}} in %root : ({h}) -> {h}"]
    cur = f"%m{cls}"
    if threaded:
        lines.append(f"%a{cls}, %fa{cls} = transform.structured.tile_using_forall {cur} tile_sizes {z + [0, nc]} "
                     f": ({h}) -> ({h}, {h})")
    else:
        lines.append(f"%a{cls}, %la{cls} = transform.structured.tile_using_for {cur} tile_sizes {z + [0, nc, 0]} "
                     f": ({h}) -> ({h}, {h})")
    cur = f"%a{cls}"
    lines.append(f"%b{cls}, %lb{cls} = transform.structured.tile_using_for {cur} tile_sizes {z + [0, 0, kc]} "
                 f": ({h}) -> ({h}, {h})")
    cur = f"%b{cls}"
    loops = ", ".join([h] * (nbatch + 2))
    lines.append(f"%c{cls}, %lc{cls}:{nbatch + 2} = transform.structured.tile_using_for {cur} "
                 f"tile_sizes {one + [mr, nr, 0]} : ({h}) -> ({h}, {loops})")
    lines.append(f"%fill{cls}, %split{cls}, %comb{cls}, %lr{cls} = transform.structured.tile_reduction_using_for "
                 f"%c{cls} by tile_sizes = {z + [0, 0, kv]} : ({h}) -> ({h}, {h}, {h}, {h})")
    for part in ("fill", "split", "comb"):
        lines.append(f"transform.structured.vectorize %{part}{cls} : {h}")
    return "\n    ".join(lines)


def _outer_steps(cls: int, sched: tuple) -> str:
    tiles, nc = list(sched[1]), sched[2]
    h = "!transform.any_op"
    handles = ", ".join([h] * (len(tiles) + 1))
    lines = [f"%m{cls} = transform.structured.match attributes {{{_TILE_ATTR} = {cls} : i64}} in %root : ({h}) -> {h}"]
    cur = f"%m{cls}"
    if nc:
        lines.append(f"%a{cls}, %fa{cls} = transform.structured.tile_using_forall {cur} tile_sizes [0, {nc}] "
                     f": ({h}) -> ({h}, {h})")
        cur = f"%a{cls}"
    lines.append(f"%t{cls}, %l{cls}:{len(tiles)} = transform.structured.tile_using_for {cur} tile_sizes {tiles} "
                 f": ({h}) -> ({handles})")
    lines.append(f"transform.structured.vectorize %t{cls} : {h}")
    return "\n    ".join(lines)


def _script(classes: dict[tuple, int]) -> str:
    body = [(_nt_steps if sched[0] == "nt" else _outer_steps)(cls, sched) for sched, cls in classes.items()]
    h = "!transform.any_op"
    return f"""
module attributes {{transform.with_named_sequence}} {{
  transform.named_sequence @__transform_main(%root: {h} {{transform.readonly}}) {{
    {chr(10).join('    ' + b for b in body)}
    %funcs = transform.structured.match ops{{["func.func"]}} in %root : ({h}) -> {h}
    transform.apply_patterns to %funcs {{
      transform.apply_patterns.canonicalization
    }} : {h}
    transform.apply_cse to %funcs : {h}
    %loops = transform.structured.match ops{{["scf.for"]}} in %root : ({h}) -> {h}
    transform.loop.hoist_loop_invariant_subsets %loops : {h}
    transform.apply_patterns to %funcs {{
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.canonicalization
    }} : {h}
    transform.yield
  }}
}}"""


def select(op: ir.Operation, threads: int) -> dict | None:
    """The schedule for `op` as a kernel config, or None (it stays on the scalar path)."""
    sched = _schedule(op, threads)
    if sched is None:
        return None
    if sched[0] == "nt":
        _, nbatch, mr, nr, kv, nc, kc, threaded = sched
        return {"schedule": "nt", "batch": nbatch, "mr": mr, "nr": nr, "kv": kv, "nc": nc, "kc": kc,
                "threaded": int(threaded)}
    return {"schedule": "outer", "tiles": sched[1], "nc": sched[2]}


def _as_schedule(config: dict) -> tuple:
    if config["schedule"] == "nt":
        return ("nt", config["batch"], config["mr"], config["nr"], config["kv"], config["nc"], config["kc"],
                bool(config["threaded"]))
    return ("outer", tuple(config["tiles"]), config["nc"])


def expand(module, chosen: list) -> int:
    """Tile and vectorize every (op, config) in `chosen` with one transform script; ops with
    the same schedule share one match. Returns how many were tiled."""
    if not chosen:
        return 0
    classes: dict[tuple, int] = {}
    for op, config in chosen:
        cls = classes.setdefault(_as_schedule(config), len(classes))
        op.attributes[_TILE_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), cls)
    script = ir.Module.parse(_script(classes))
    interpreter.apply_named_sequence(module.operation, script.body.operations[0], script)
    return len(chosen)


KERNEL = register_kernel(Kernel(
    name="portable",
    summary="tile (threads, L2, registers) + vectorize with the transform dialect; any CPU",
    stage="tensors",
    features=frozenset(),
    priority=0,
    ops=("linalg.matmul", "linalg.batch_matmul"),
    select=select,
    expand=expand,
))
