"""Map the linalg ops of bufferized host functions onto GPU threads: one `gpu.launch` per op,
one thread per iteration of its parallel dimensions (linearized, bounds-checked), reductions
as a sequential loop inside each thread.

Matched (host function on buffers, after one-shot bufferization):

    linalg.generic {iterator_types = ["reduction", "parallel"]} ins(%a : memref<8x32xf32>) outs(%o : memref<32xf32>)

Produced (parallel dimensions first, then `convert-linalg-to-parallel-loops`, then):

    gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, ...) threads(%tx, %ty, %tz) in (%sx = %c32, ...) {
      %id = bx * 32 + tx
      scf.if (%id < 32) {
        %j = %id mod 32 ...                      // delinearized parallel indices, innermost fastest
        scf.for %i = %c0 to %c8 step %c1 { ... } // the reduction, sequential in the thread
      }
      gpu.terminator
    }

The innermost parallel dimension varies fastest across a warp, so elementwise ops and the N
dimension of matmuls access memory coalesced. Loop nests without a parallel dimension (a
reduction to a scalar) run in one thread. Any parallel rank works (no 3-dimension limit and no
global tile-size list, unlike upstream `gpu-map-parallel-loops`).
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import arith, gpu, memref, scf
from mlir.dialects.transform import interpreter

from qmlir.errors import CompileError
from qmlir.passes import registry
from qmlir.passes.pipeline import Pipeline

_INTERCHANGE_ATTR = "qmlir.gpu_interchange"
# Everything in the host function that runs on the device once the linalg ops became loops.
_LOOPS = ("scf.parallel", "scf.for")
# Host-side ops that only compute descriptors or scalars: they stay on the host.
_HOST_OPS = ("arith.constant", "memref.expand_shape", "memref.collapse_shape", "memref.subview",
             "memref.reinterpret_cast", "memref.cast", "memref.view", "memref.alloc", "memref.dealloc",
             "memref.get_global", "func.return", "func.call", "gpu.launch", "gpu.memcpy", "gpu.wait")


def _iterator_kinds(op: ir.Operation) -> list[str]:
    return [str(a).split("<")[-1].rstrip(">") for a in ir.ArrayAttr(op.attributes["iterator_types"])]


def _permutation(op: ir.Operation) -> list[int] | None:
    """Loop order with parallel dimensions first (stable), or None if it is already so."""
    if "iterator_types" not in op.attributes:
        return None
    kinds = _iterator_kinds(op)
    perm = [i for i, k in enumerate(kinds) if k == "parallel"] + \
           [i for i, k in enumerate(kinds) if k != "parallel"]
    return None if perm == list(range(len(kinds))) else perm


def parallel_dims_first(module: ir.Module) -> int:
    """Interchange linalg ops whose reductions come before parallel dimensions (a sum over dim
    0, say), so that every parallel dimension maps to threads. Returns how many were changed."""
    classes: dict[tuple, int] = {}

    def visit(op):
        # named ops (matmul, conv, pooling) already list their parallel dimensions first
        if op.name == "linalg.generic":
            perm = _permutation(op)
            if perm is not None:
                cls = classes.setdefault(tuple(perm), len(classes))
                op.attributes[_INTERCHANGE_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), cls)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if not classes:
        return 0
    body = "".join(f"""
    %m{c} = transform.structured.match attributes {{{_INTERCHANGE_ATTR} = {c} : i64}} in %root
        : (!transform.any_op) -> !transform.any_op
    %i{c} = transform.structured.interchange %m{c} iterator_interchange = {list(p)}
        : (!transform.any_op) -> !transform.any_op""" for p, c in classes.items())
    script = ir.Module.parse(f"""
module attributes {{transform.with_named_sequence}} {{
  transform.named_sequence @__transform_main(%root: !transform.any_op {{transform.readonly}}) {{{body}
    transform.yield
  }}
}}""")
    try:
        interpreter.apply_named_sequence(module.operation, script.body.operations[0], script)
    except ir.MLIRError as e:
        raise CompileError(f"interchanging reductions after parallel dimensions failed: {e}") from None
    return len(classes)


def _constant_index(v: ir.Value, what: str) -> int:
    owner = v.owner if isinstance(v, ir.OpResult) else None
    if owner is None or owner.name != "arith.constant":
        raise CompileError(f"gpu loop mapping: {what} is not a constant ({v}); only static shapes map to GPU threads")
    return ir.IntegerAttr(owner.attributes["value"]).value


def _index(value: int) -> ir.Value:
    return arith.constant(ir.IndexType.get(), value)


def _launch(total: int, block_size: int):
    """A 1-D launch of ceil(total / block) blocks; returns (launch op, linear id, then-block)."""
    threads = min(block_size, max(32, -(-total // 32) * 32))
    blocks = -(-total // threads)
    launch = gpu.LaunchOp((_index(blocks), _index(1), _index(1)), (_index(threads), _index(1), _index(1)))
    body = launch.regions[0].blocks[0]
    with ir.InsertionPoint(body):
        bid = gpu.block_id(gpu.Dimension.x)
        tid = gpu.thread_id(gpu.Dimension.x)
        lin = arith.addi(arith.muli(bid, _index(threads)), tid)
        inside = arith.cmpi(arith.CmpIPredicate.ult, lin, _index(total))
        guard = scf.IfOp(inside)
        with ir.InsertionPoint(guard.then_block):
            scf.YieldOp([])
        gpu.TerminatorOp()
    return launch, lin, guard.then_block


def _map_parallel(loop: ir.Operation, block_size: int) -> None:
    n = len(loop.regions[0].blocks[0].arguments)
    lbs = [_constant_index(v, "a lower bound") for v in list(loop.operands)[:n]]
    ubs = [_constant_index(v, "an upper bound") for v in list(loop.operands)[n:2 * n]]
    steps = [_constant_index(v, "a step") for v in list(loop.operands)[2 * n:3 * n]]
    if len(loop.results):
        raise CompileError("gpu loop mapping: scf.parallel with reductions is not supported")
    counts = [max(0, -(-(u - l) // s)) for l, u, s in zip(lbs, ubs, steps)]
    total = 1
    for c in counts:
        total *= c
    if total == 0:
        loop.erase()
        return
    with loop.location, ir.InsertionPoint(loop):
        launch, lin, then = _launch(total, block_size)
        terminator = then.operations[len(then.operations) - 1]
        with ir.InsertionPoint(terminator):
            ivs = [None] * n
            rest = lin
            for k in reversed(range(n)):  # innermost dimension varies fastest across threads
                i_k = arith.remui(rest, _index(counts[k])) if k else rest
                if k:
                    rest = arith.divui(rest, _index(counts[k]))
                iv = i_k
                if steps[k] != 1:
                    iv = arith.muli(iv, _index(steps[k]))
                if lbs[k]:
                    iv = arith.addi(iv, _index(lbs[k]))
                ivs[k] = iv
    body = loop.regions[0].blocks[0]
    for arg, iv in zip(body.arguments, ivs):
        arg.replace_all_uses_with(iv)
    for op in list(body.operations)[:-1]:  # all but the scf.reduce terminator
        op.move_before(terminator)
    loop.erase()


def _map_sequential(loop: ir.Operation) -> None:
    """A loop nest with no parallel dimension (a reduction to a scalar): one thread runs it."""
    with loop.location, ir.InsertionPoint(loop):
        launch, _, then = _launch(1, 1)
    loop.move_before(then.operations[len(then.operations) - 1])


def _encloses(outer: ir.Operation, op: ir.Operation) -> bool:
    while op is not None:
        if op == outer:
            return True
        op = op.parent if op.parent is not None and op.parent.name != "func.func" else None
    return False


def _map_straight_line(ops: list) -> None:
    """Loop-free device work (a linalg op on rank-0 buffers became loads, arithmetic and a
    store): one thread runs it. Its values must not be needed by the host."""
    for op in ops:
        for r in op.results:
            for use in r.uses:
                owner = use.owner.operation if hasattr(use.owner, "operation") else use.owner
                if not any(_encloses(o, owner) for o in ops):
                    raise CompileError(f"gpu loop mapping: the host needs a value computed from device memory: {op}")
    with ops[0].location, ir.InsertionPoint(ops[0]):
        _, _, then = _launch(1, 1)
    terminator = then.operations[len(then.operations) - 1]
    for op in ops:
        op.move_before(terminator)


def _defined_inside(loop: ir.Operation) -> list:
    values = []

    def visit(op):
        values.extend(op.results)
        for region in op.regions:
            for block in region.blocks:
                values.extend(block.arguments)
        return ir.WalkResult.ADVANCE

    loop.walk(visit)
    return values


def _promote(loop: ir.Operation) -> bool:
    """`scf.for { %a = load M[i]; ...; store %v, M[i] }` with M[i] loop-invariant and the only
    store in the loop -> the value travels as an iter_arg: one load before, one store after."""
    if len(loop.results) or loop.name != "scf.for":
        return False
    body = loop.regions[0].blocks[0]
    stores = []

    def visit(op):
        if op.name in ("memref.store", "vector.store", "vector.transfer_write", "memref.copy") \
                or op.name.startswith("linalg.") or op.name == "func.call":
            stores.append(op)
        return ir.WalkResult.ADVANCE

    loop.walk(visit)
    if len(stores) != 1 or stores[0].name != "memref.store" or stores[0].parent != loop:
        return False
    store = stores[0]
    target, indices = store.operands[1], list(store.operands)[2:]
    inside = _defined_inside(loop)
    if any(any(v == d for d in inside) for v in [target] + indices):
        return False
    loads = [op.operation for op in body.operations if op.operation.name == "memref.load"
             and op.operation.operands[0] == target]
    if len(loads) != 1 or list(loads[0].operands)[1:] != indices:
        return False
    uses = 0

    def count(op):
        nonlocal uses
        uses += sum(1 for v in op.operands if v == target)
        return ir.WalkResult.ADVANCE

    loop.walk(count)
    if uses != 2:  # the load and the store, nothing else reads the accumulator
        return False
    load = loads[0]
    lb, ub, step = list(loop.operands)[:3]
    with loop.location, ir.InsertionPoint(loop):
        init = memref.load(target, indices)
        new = scf.ForOp(lb, ub, step, [init])
    with loop.location, ir.InsertionPoint(new.body):
        yield_ = scf.YieldOp([store.operands[0]])
    body.arguments[0].replace_all_uses_with(new.induction_variable)
    load.results[0].replace_all_uses_with(new.inner_iter_args[0])
    for op in list(body.operations)[:-1]:
        if op.operation != load and op.operation != store:
            op.move_before(yield_)
    with loop.location, ir.InsertionPoint(loop):  # after the new loop, before the old one
        memref.store(new.results[0], target, indices)
    load.erase()
    store.erase()
    loop.erase()
    return True


def promote_accumulators(module: ir.Module) -> int:
    """Keep reduction accumulators in registers (repeatedly: conv's nested reduction loops)."""
    loops = []

    def visit(op):
        if op.name == "scf.for":
            loops.append(op)
        return ir.WalkResult.ADVANCE

    # post-order: an inner loop is promoted before the loop around it, whose handle stays valid
    module.operation.walk(visit, ir.WalkOrder.POST_ORDER)
    return sum(1 for loop in loops if _promote(loop))


def map_loops(module: ir.Module, block_size: int = 256) -> int:
    """Every top-level loop nest of every host function becomes a gpu.launch, and so does each
    run of loop-free device work between them; returns the number of launches."""
    launches = 0
    for fn in module.body.operations:
        if fn.operation.name != "func.func" or not fn.regions[0].blocks:
            continue
        for block in fn.regions[0].blocks:
            run: list = []
            for op in list(block.operations) + [None]:
                name = op.operation.name if op is not None else None
                if name is not None and name not in _HOST_OPS and name not in _LOOPS:
                    run.append(op.operation)
                    continue
                if run:
                    _map_straight_line(run)
                    launches += 1
                    run = []
                if name == "scf.parallel":
                    _map_parallel(op.operation, block_size)
                    launches += 1
                elif name == "scf.for":
                    if len(op.operation.results):
                        raise CompileError("gpu loop mapping: a top-level scf.for that yields values "
                                           "cannot run on the device")
                    _map_sequential(op.operation)
                    launches += 1
    return launches


def run(module: ir.Module, block_size: int = 256) -> int:
    """Linalg on buffers in host functions -> gpu.launch per op. Returns the number of launches."""
    parallel_dims_first(module)
    Pipeline.parse("func.func(convert-linalg-to-parallel-loops)").run(module, "gpu loop mapping")
    launches = map_loops(module, block_size)
    promote_accumulators(module)
    return launches


registry.register_pass(
    "qmlir-gpu-map-loops",
    "linalg on buffers -> one gpu.launch per op, one thread per parallel iteration (reductions sequential per thread)",
    run,
    {"block-size": registry.Option(int, 256, "threads per block (a multiple of 32)", minimum=32, maximum=1024)},
    anchor="builtin.module",
)
