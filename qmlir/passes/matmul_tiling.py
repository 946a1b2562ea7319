"""Tile matmuls to register-sized blocks and vectorize them (transform dialect).

Each `linalg.matmul` / `linalg.batch_matmul` on static shapes gets tile sizes that divide
its dimensions exactly (M by 8/4/2/1, N by 32/16/8, K by 1), so every tile is a full
static tile that vectorizes to a bounded `vector.contract` (no masking, no giant vectors);
a matmul whose N has no such divisor stays scalar. The contracts are then lowered to
outer products (FMAs on AVX-512). The speed issue replaces this with packed kernels.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects.transform import interpreter

_TILE_ATTR = "qmlir.tile_class"
_M_TILES = (8, 4, 2, 1)
_N_TILES = (32, 16, 8)


# Only the default operand layouts are tiled: with transposed maps (indexing_maps = [...]) the
# vector transfers lower to stack allocations inside the K loop, which overflow the stack for
# long K (a crash seen at K=4096). Such matmuls stay on the scalar path.
_DEFAULT_MAPS = {
    "linalg.matmul": "[affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, "
                     "affine_map<(d0, d1, d2) -> (d0, d1)>]",
    "linalg.batch_matmul": "[affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>, affine_map<(d0, d1, d2, d3) -> "
                           "(d0, d3, d2)>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>]",
}


def _tiles(op: ir.Operation) -> list[int] | None:
    out_shape = list(ir.RankedTensorType(op.results[0].type).shape) if op.results else None
    if out_shape is None:
        return None
    maps = op.attributes["indexing_maps"] if "indexing_maps" in op.attributes else None
    if maps is not None and str(maps) != _DEFAULT_MAPS[op.name]:
        return None
    *batch, m, n = out_shape
    tm = next(t for t in _M_TILES if m % t == 0)
    tn = next((t for t in _N_TILES if n % t == 0), None)
    if tn is None:
        return None
    return [1] * len(batch) + [tm, tn, 1]


def _script(classes: dict[tuple, int]) -> str:
    body = []
    for tiles, cls in classes.items():
        handles = ", ".join(["!transform.any_op"] * (len(tiles) + 1))
        body.append(f"""
    %m{cls} = transform.structured.match attributes {{{_TILE_ATTR} = {cls} : i64}} in %root
        : (!transform.any_op) -> !transform.any_op
    %t{cls}, %l{cls}:{len(tiles)} = transform.structured.tile_using_for %m{cls} tile_sizes {list(tiles)}
        : (!transform.any_op) -> ({handles})
    transform.structured.vectorize %t{cls} : !transform.any_op""")
    return f"""
module attributes {{transform.with_named_sequence}} {{
  transform.named_sequence @__transform_main(%root: !transform.any_op {{transform.readonly}}) {{
    {''.join(body)}
    %funcs = transform.structured.match ops{{["func.func"]}} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %funcs {{
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.canonicalization
    }} : !transform.any_op
    transform.yield
  }}
}}"""


def run(module: ir.Module) -> int:
    """Tile and vectorize every eligible matmul in `module`; returns how many were tiled."""
    classes: dict[tuple, int] = {}
    tagged = 0

    def visit(op):
        nonlocal tagged
        if op.operation.name in ("linalg.matmul", "linalg.batch_matmul"):
            tiles = _tiles(op.operation)
            if tiles is not None:
                cls = classes.setdefault(tuple(tiles), len(classes))
                op.operation.attributes[_TILE_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), cls)
                tagged += 1
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    if not tagged:
        return 0
    script = ir.Module.parse(_script(classes))
    interpreter.apply_named_sequence(module.operation, script.body.operations[0], script)
    return tagged
