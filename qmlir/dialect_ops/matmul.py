"""Matrix products: mm, bmm, addmm. bf16/f16 inputs accumulate in f32 and round once,
as PyTorch's CPU GEMMs do."""
from __future__ import annotations

import torch
from mlir import ir
from mlir.dialects import arith, linalg

from qmlir.ir.builders import const, elementwise, full
from qmlir.dialect_ops.registry import lowering
from qmlir.errors import UnsupportedOp
from qmlir.ir.types import compute_dtype, element_type

aten = torch.ops.aten


def _product(node, a, b, op) -> ir.Value:
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    if not out.dtype.is_floating_point:
        raise UnsupportedOp(node, f"integer matmul of dtype {out.dtype} (quantized matmuls go through qmlir.quantize)")
    init = full(out.shape, element_type(acc), 0.0)
    res = op(a, b, outs=[init])
    if acc != out.dtype:
        res = elementwise(out.shape, out.dtype, [res], lambda v: v, [acc])
    return res


@lowering(aten.mm.default)
def mm(ctx, node, a, b):
    return _product(node, a, b, linalg.matmul)


@lowering(aten.bmm.default)
def bmm(ctx, node, a, b):
    return _product(node, a, b, linalg.batch_matmul)


@lowering(aten.addmm.default)
def addmm(ctx, node, bias, a, b, beta=1, alpha=1):
    out = node.meta["val"]
    acc = compute_dtype(out.dtype)
    init = full(out.shape, element_type(acc), 0.0)
    prod = linalg.matmul(a, b, outs=[init])

    def epilogue(p, c):
        if alpha != 1:
            p = arith.mulf(p, const(alpha, p.type))
        if beta != 1:
            c = arith.mulf(c, const(beta, c.type))
        return arith.addf(c, p) if beta != 0 else p

    return elementwise(out.shape, out.dtype, [prod, bias], epilogue, [acc, acc])
