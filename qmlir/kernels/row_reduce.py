"""Kernel `row_reduce`: reductions along the last dimension (softmax's max and sum, norms'
sums of squares, `any`), split into 16 lanes and vectorized.

Left to `convert-linalg-to-loops`, such a reduction is a scalar loop whose every step waits on
the last one (a float add or max cannot be reordered by LLVM), so softmax over [9, 128, 640]
attention scores ran 10x slower than torch's. This kernel tiles the parallel dimensions to
single rows and the reduction by 16 (`tile_reduction_using_for`): each row accumulates 16
independent partial results in one vector, merged once at its end, then vectorizes
(transform dialect):

    %r = linalg.generic {iterator_types = [parallel..., reduction]} ins(%x : tensor<...xRxf32>)
           outs(%acc : tensor<...xf32>) { maximumf }
 ->
    scf.for over rows { %p = vector<16> of the init; scf.for k step 16 { %p = max(%p, x[row, k:k+16]) }
                        %r[row] = vector.reduction <maximumf> %p }

Takes generics with one input read in full (identity map), one output that drops the last
dimension, static shapes, R % 16 == 0, and a body of one combining op (addf, mulf, maximumf,
minimumf, addi, ori, andi) of the input and the accumulator. The sum's order changes (16 lanes,
then their total), as in any vectorized reduction. Config: lanes.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects.transform import interpreter

from qmlir.kernels.base import Kernel, register_kernel

_LANES = 16
_CLASS_ATTR = "qmlir.reduce_class"
_COMBINERS = {"arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf", "arith.addi", "arith.ori", "arith.andi"}


def select(op: ir.Operation, threads: int) -> dict | None:
    """{lanes} for a last-dimension reduction this kernel takes, or None."""
    if op.name != "linalg.generic" or len(op.operands) != 2 or len(op.results) != 1:
        return None
    x, out = (v.type for v in op.operands)
    if not all(isinstance(t, ir.RankedTensorType) and ir.RankedTensorType(t).has_static_shape for t in (x, out)):
        return None
    shape = list(ir.RankedTensorType(x).shape)
    rank = len(shape)
    if rank < 2 or list(ir.RankedTensorType(out).shape) != shape[:-1]:
        return None
    if shape[-1] % _LANES or shape[-1] < 2 * _LANES:
        return None
    iterators = [str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])]
    if iterators != ["#linalg.iterator_type<parallel>"] * (rank - 1) + ["#linalg.iterator_type<reduction>"]:
        return None
    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]
    dims = [ir.AffineDimExpr.get(i) for i in range(rank)]
    if maps != [ir.AffineMap.get(rank, 0, dims), ir.AffineMap.get(rank, 0, dims[:-1])]:
        return None
    block = op.regions[0].blocks[0]
    body = [o.operation for o in block.operations]
    if len(body) != 2 or body[0].name not in _COMBINERS or body[1].name != "linalg.yield":
        return None
    if set(body[0].operands) != set(block.arguments) or body[1].operands[0] != body[0].results[0]:
        return None
    return {"lanes": _LANES}


def _script(ranks: dict) -> str:
    h = "!transform.any_op"
    steps = []
    for rank, cls in ranks.items():
        loops = ", ".join([h] * (rank - 1))
        steps += [
            f"%m{cls} = transform.structured.match attributes {{{_CLASS_ATTR} = {cls} : i64}} in %root : ({h}) -> {h}",
            f"%t{cls}, %l{cls}:{rank - 1} = transform.structured.tile_using_for %m{cls} tile_sizes "
            f"{[1] * (rank - 1) + [0]} : ({h}) -> ({h}, {loops})",
            f"%fill{cls}, %split{cls}, %comb{cls}, %lr{cls} = transform.structured.tile_reduction_using_for "
            f"%t{cls} by tile_sizes = {[0] * (rank - 1) + [_LANES]} : ({h}) -> ({h}, {h}, {h}, {h})",
        ] + [f"transform.structured.vectorize %{part}{cls} : {h}" for part in ("fill", "split", "comb")]
    body = "\n    ".join(steps)
    return f"""
module attributes {{transform.with_named_sequence}} {{
  transform.named_sequence @__transform_main(%root: {h} {{transform.readonly}}) {{
    {body}
    %funcs = transform.structured.match ops{{["func.func"]}} in %root : ({h}) -> {h}
    transform.apply_patterns to %funcs {{
      transform.apply_patterns.canonicalization
    }} : {h}
    %loops = transform.structured.match ops{{["scf.for"]}} in %root : ({h}) -> {h}
    transform.loop.hoist_loop_invariant_subsets %loops : {h}
    transform.apply_patterns to %funcs {{
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerreduction"
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.canonicalization
    }} : {h}
    transform.yield
  }}
}}"""


def expand(module, chosen: list) -> int:
    """Tile and vectorize every chosen reduction with one transform script (one match per rank)."""
    if not chosen:
        return 0
    ranks: dict = {}
    for op, _ in chosen:
        rank = ir.RankedTensorType(op.operands[0].type).rank
        cls = ranks.setdefault(rank, len(ranks))
        op.attributes[_CLASS_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), cls)
    script = ir.Module.parse(_script(ranks))
    interpreter.apply_named_sequence(module.operation, script.body.operations[0], script)
    return len(chosen)


KERNEL = register_kernel(Kernel(
    name="row_reduce",
    summary="last-dimension reductions (softmax max/sum, norms, any): 16 lanes of partial results, vectorized; any CPU",
    stage="tensors",
    features=frozenset(),
    priority=22,  # expanded before bf16_dot: its vector patterns then see no other kernel's code
    ops=("linalg.generic",),
    select=select,
    expand=expand,
))
