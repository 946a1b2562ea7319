"""Run each `scf.forall` (a kernel's threaded tiles) on the OpenMP thread team of GCC's libgomp,
the runtime PyTorch's CPU build ships and already runs its own parallel ops on.

    scf.forall (%i, %j) in (I, J) { body(%i, %j, captured values) }
 ->
    %ctx = llvm.alloca: the captured values (memref descriptors, scalars) stored side by side
    GOMP_parallel(@fn_forall0, %ctx, min(I * J, threads), 0)      // one trip: a direct call
    func.func private @fn_forall0(%ctx: !llvm.ptr) {               // on every thread of the team
      t = omp_get_thread_num(), n = omp_get_num_threads()
      scf.for %l = t * I * J / n to (t + 1) * I * J / n { %i, %j = delinearize(%l); body }
    }

Why not MLIR's async runtime (`async-parallel-for`, which this replaces for static foralls)?
Its workers block on a condition variable when idle, and waking one costs tens of microseconds
on this VM: a 2.4 MB weight's GEMV took 2x longer on two threads than on one, so kernels only
threaded weights of 8 MB and more, and a SmolLM2 decode step left one of the two cores idle
for most of its 200 matmuls. libgomp's workers spin for a while after a region ends
(GOMP_SPINCOUNT) before they sleep, so back-to-back kernels start at once, and it is the same
team torch's ops use (one pool in the process, not two competing ones). Not
`convert-scf-to-openmp`: MLIR's OpenMP lowering calls LLVM libomp's `__kmpc_*` entry points,
which libgomp does not have, and a second OpenMP runtime beside torch's would spin against it.

Captured memrefs cross the call as their LLVM descriptors (`builtin.unrealized_conversion_cast`,
folded away by `reconcile-unrealized-casts` once the memrefs are lowered); index values as i64;
constants are cloned into the task. Foralls with dynamic bounds or results are left alone (the
async-runtime passes after this one take them).
"""
from __future__ import annotations

import math
from typing import List

from mlir import ir
from mlir.dialects import func

from qmlir.ir.walk import captured, find_ops, functions, remap_operands
from qmlir.passes import registry

GOMP_PARALLEL = "GOMP_parallel"
THREAD_NUM, NUM_THREADS = "omp_get_thread_num", "omp_get_num_threads"
LIBRARY = "gomp"  # the artifact's library name for libgomp (qmlir/runtime/libs.py finds torch's copy)


def _static_trips(forall: ir.Operation) -> List[tuple] | None:
    """[(lower, step, trips)] per dimension, or None when a bound is dynamic."""
    attrs = forall.attributes
    try:
        lbs = list(ir.DenseI64ArrayAttr(attrs["staticLowerBound"]))
        ubs = list(ir.DenseI64ArrayAttr(attrs["staticUpperBound"]))
        steps = list(ir.DenseI64ArrayAttr(attrs["staticStep"]))
    except (KeyError, ValueError):
        return None
    dynamic = -(1 << 63)  # ShapedType::kDynamic
    if any(v == dynamic for v in lbs + ubs + steps) or any(s <= 0 for s in steps):
        return None
    return [(lb, st, max(0, -(-(ub - lb) // st))) for lb, ub, st in zip(lbs, ubs, steps)]


def _llvm_type(t: ir.Type) -> ir.Type | None:
    """The LLVM type a captured value crosses the call as; None when it cannot."""
    if isinstance(t, ir.MemRefType):
        if t.memory_space is not None:
            return None
        r = t.rank
        body = "!llvm.ptr, !llvm.ptr, i64" + (f", !llvm.array<{r} x i64>, !llvm.array<{r} x i64>" if r else "")
        return ir.Type.parse(f"!llvm.struct<({body})>")
    if isinstance(t, ir.IndexType):
        return ir.IntegerType.get_signless(64)
    if isinstance(t, (ir.IntegerType, ir.F32Type, ir.F64Type, ir.F16Type, ir.BF16Type)):
        return t
    return None


def _create(name, results=(), operands=(), attributes=None, ip=None, loc=None, regions=0):
    return ir.Operation.create(name, results=list(results), operands=list(operands),
                               attributes=attributes or {}, loc=loc, ip=ip, regions=regions)


def _callee(name: str, operands: int) -> dict:
    return {"callee": ir.FlatSymbolRefAttr.get(name),
            "operandSegmentSizes": ir.DenseI32ArrayAttr.get([operands, 0]),
            "op_bundle_sizes": ir.DenseI32ArrayAttr.get([])}


def _field(buf, i: int, ctx_type, ip, loc):
    """A pointer to field `i` of the captured-values struct at `buf`."""
    return _create("llvm.getelementptr", [ir.Type.parse("!llvm.ptr")], [buf],
                   {"rawConstantIndices": ir.DenseI32ArrayAttr.get([0, i]), "elem_type": ir.TypeAttr.get(ctx_type),
                    "noWrapFlags": ir.Attribute.parse("0 : i32")}, ip, loc).result


def _cross(value, to_type, ip, loc):
    """`value` as `to_type`, one side of the call: a memref <-> its LLVM descriptor, index <-> i64;
    other scalars cross as they are."""
    if value.type == to_type:
        return value
    if isinstance(value.type, ir.MemRefType) or isinstance(to_type, ir.MemRefType):
        return _create("builtin.unrealized_conversion_cast", [to_type], [value], {}, ip, loc).result
    return _create("arith.index_cast", [to_type], [value], {}, ip, loc).result


def _index_const(value: int, ip, loc):
    return _create("arith.constant", [ir.IndexType.get()],
                   attributes={"value": ir.IntegerAttr.get(ir.IndexType.get(), value)}, ip=ip, loc=loc).result


def _convert(forall: ir.Operation, fn: ir.Operation, task_name: str, module: ir.Module, threads: int) -> bool:
    dims = _static_trips(forall)
    if dims is None or len(forall.results) or len(forall.regions[0].blocks) != 1:
        return False
    args, consts, ops = captured(forall)
    types = [_llvm_type(v.type) for v in args]
    if any(t is None for t in types):
        return False
    total = math.prod(trips for _, _, trips in dims)
    loc = forall.location
    ptr = ir.Type.parse("!llvm.ptr")
    i32, i64 = ir.IntegerType.get_signless(32), ir.IntegerType.get_signless(64)
    ctx_type = ir.Type.parse(f"!llvm.struct<({', '.join(str(t) for t in types)})>") if types else None

    # the task function: loads the captured values, runs its share of the iterations
    with ir.InsertionPoint(module.body):
        task = func.FuncOp(task_name, ir.FunctionType.get([ptr], []), visibility="private", loc=loc)
    entry = task.add_entry_block()
    ip = ir.InsertionPoint(entry)
    mapping = {}
    ctx = entry.arguments[0]
    for i, (v, t) in enumerate(zip(args, types)):
        raw = _create("llvm.load", [t], [_field(ctx, i, ctx_type, ip, loc)], {}, ip, loc).result
        mapping[v] = _cross(raw, v.type, ip, loc)
    for c in consts:
        mapping[c] = c.owner.clone(ip=ip).results[0]
    tid = _create("llvm.call", [i32], [], _callee(THREAD_NUM, 0), ip, loc).result
    nth = _create("llvm.call", [i32], [], _callee(NUM_THREADS, 0), ip, loc).result
    idx = ir.IndexType.get()
    t = _create("arith.index_cast", [idx], [tid], {}, ip, loc).result
    nt = _create("arith.index_cast", [idx], [nth], {}, ip, loc).result
    # thread t of n runs the trips [t * total / n, (t + 1) * total / n): neighbouring tiles together
    count = _index_const(total, ip, loc)
    t1 = _create("arith.addi", [idx], [t, _index_const(1, ip, loc)], {}, ip, loc).result
    lo = _create("arith.divui", [idx], [_create("arith.muli", [idx], [t, count], {}, ip, loc).result, nt],
                 {}, ip, loc).result
    hi = _create("arith.divui", [idx], [_create("arith.muli", [idx], [t1, count], {}, ip, loc).result, nt],
                 {}, ip, loc).result
    loop = _create("scf.for", [], [lo, hi, _index_const(1, ip, loc)], {}, ip, loc, regions=1)
    loop.regions[0].blocks.append(idx)
    body = loop.regions[0].blocks[0]
    bip = ir.InsertionPoint(body)
    yield_op = _create("scf.yield", [], [], {}, bip, loc)
    bip = ir.InsertionPoint(yield_op)
    lin = body.arguments[0]
    ivs = []
    inner = total
    for lb, st, trips in dims:  # row-major delinearization of the flat trip number
        inner //= max(trips, 1)
        q = _create("arith.divui", [idx], [lin, _index_const(max(inner, 1), bip, loc)], {}, bip, loc).result
        r = _create("arith.remui", [idx], [q, _index_const(max(trips, 1), bip, loc)], {}, bip, loc).result
        m = _create("arith.muli", [idx], [r, _index_const(st, bip, loc)], {}, bip, loc).result
        ivs.append(_create("arith.addi", [idx], [m, _index_const(lb, bip, loc)], {}, bip, loc).result)
    _create("func.return", [], [], {}, ip, loc)

    block = forall.regions[0].blocks[0]
    for arg, iv in zip(block.arguments, ivs):
        mapping[arg] = iv
    remap_operands(ops, mapping)
    moved = [op.operation for op in block.operations]
    for op in moved:
        if op.name == "scf.forall.in_parallel":
            continue
        op.move_before(yield_op)

    # the call site: store the captured values, hand the task to the team
    fn_entry = fn.regions[0].blocks[0]
    eip = ir.InsertionPoint.at_block_begin(fn_entry)
    here = ir.InsertionPoint(forall)
    if types:
        one = _create("llvm.mlir.constant", [i64], [], {"value": ir.IntegerAttr.get(i64, 1)}, eip, loc).result
        buf = _create("llvm.alloca", [ptr], [one], {"elem_type": ir.TypeAttr.get(ctx_type)}, eip, loc).result
        for i, (v, t) in enumerate(zip(args, types)):
            raw = _cross(v, t, here, loc)
            _create("llvm.store", [], [raw, _field(buf, i, ctx_type, here, loc)], {}, here, loc)
    else:
        buf = _create("llvm.mlir.zero", [ptr], [], {}, here, loc).result
    team = min(total, threads)
    if team <= 1:
        _create("func.call", [], [buf], {"callee": ir.FlatSymbolRefAttr.get(task_name)}, here, loc)
    else:
        fn_type = ir.FunctionType.get([ptr], [])
        fval = _create("func.constant", [fn_type], [], {"value": ir.FlatSymbolRefAttr.get(task_name)}, here, loc).result
        fptr = _create("builtin.unrealized_conversion_cast", [ptr], [fval], {}, here, loc).result
        size = _create("llvm.mlir.constant", [i32], [], {"value": ir.IntegerAttr.get(i32, team)}, here, loc).result
        zero = _create("llvm.mlir.constant", [i32], [], {"value": ir.IntegerAttr.get(i32, 0)}, here, loc).result
        _create("llvm.call", [], [fptr, buf, size, zero], _callee(GOMP_PARALLEL, 4), here, loc)
    forall.erase()
    return True


def run(module: ir.Module, threads: int = 1) -> int:
    """Replace every static scf.forall without results by a libgomp team; returns how many."""
    foralls = [(forall, fn) for fn in functions(module) for forall in find_ops(fn, "scf.forall")]
    done = 0
    for forall, fn in foralls:
        base = ir.StringAttr(fn.attributes["sym_name"]).value
        with forall.location:
            if _convert(forall, fn, f"{base}_forall{done}", module, threads):
                done += 1
    if done:
        with module.context:
            _declare_all(module)
    return done


def _declare_all(module: ir.Module) -> None:
    have = {ir.StringAttr(op.operation.attributes["sym_name"]).value for op in module.body.operations
            if op.operation.name == "llvm.func"}
    decls = {GOMP_PARALLEL: "(!llvm.ptr, !llvm.ptr, i32, i32)", THREAD_NUM: "() -> i32", NUM_THREADS: "() -> i32"}
    text = "\n".join(f"llvm.func @{n}{s}" for n, s in decls.items() if n not in have)
    if not text:
        return
    extra = ir.Module.parse(text)
    for op in list(extra.body.operations):
        op.operation.move_before(module.body.operations[0].operation)


registry.register_pass(
    "qmlir-forall-to-gomp",
    "each static scf.forall -> a task run by libgomp's thread team (GOMP_parallel; torch's own OpenMP runtime), "
    "captured values passed through one stack struct",
    run,
    {"threads": registry.Option(int, 1, "threads in the team (at most the forall's trip count)", minimum=1)},
    anchor="builtin.module",
)
