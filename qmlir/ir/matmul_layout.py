"""Operand layouts of linalg matmuls: the default ([M, K] x [K, N]) and NT ([M, K] x [N, K],
what qmlir-fold-transpose-into-matmul makes of every `F.linear`). Kernels match on these."""
from __future__ import annotations

from mlir import ir

NT_MAPS = {
    "linalg.matmul": ("(d0, d1, d2) -> (d0, d2)", "(d0, d1, d2) -> (d1, d2)", "(d0, d1, d2) -> (d0, d1)"),
    "linalg.batch_matmul": ("(d0, d1, d2, d3) -> (d0, d1, d3)", "(d0, d1, d2, d3) -> (d0, d2, d3)",
                            "(d0, d1, d2, d3) -> (d0, d1, d2)"),
}
SWAP_LAST = {"linalg.matmul": [1, 0], "linalg.batch_matmul": [0, 2, 1]}


def _parse_map(text: str) -> ir.AffineMap:
    return ir.AffineMapAttr(ir.Attribute.parse(f"affine_map<{text}>")).value


def nt_maps(op_name: str) -> list:
    """The NT indexing maps of `op_name` (linalg.matmul or linalg.batch_matmul)."""
    return [_parse_map(m) for m in NT_MAPS[op_name]]


def is_default_layout(op: ir.Operation) -> bool:
    """True when `op` has no indexing_maps attribute or the default ones."""
    if "indexing_maps" not in op.attributes:
        return True
    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]
    rank = 3 if op.name == "linalg.matmul" else 4
    d = [ir.AffineDimExpr.get(i) for i in range(rank)]
    b = d[:-3]
    default = [ir.AffineMap.get(rank, 0, b + [d[-3], d[-1]]), ir.AffineMap.get(rank, 0, b + [d[-1], d[-2]]),
               ir.AffineMap.get(rank, 0, b + [d[-3], d[-2]])]
    return maps == default


def is_nt_layout(op: ir.Operation) -> bool:
    """True when `op` is a matmul / batch_matmul in the NT form."""
    if op.name not in NT_MAPS or "indexing_maps" not in op.attributes:
        return False
    maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"])]
    return maps == nt_maps(op.name)
