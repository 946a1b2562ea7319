"""qmlir-fold-transpose-into-matmul: read a transposed right-hand operand in place.

`F.linear` imports as `x @ permute(W)`: a `linalg.transpose` of the [N, K] weight feeding a
`linalg.matmul`. Materializing the transpose costs a strided copy of the whole weight on every
call (64 MB at 4096x4096). This pass drops the copy and gives the matmul indexing maps that
read W in its own [N, K] layout (the "NT" form; both operands are then contiguous along K,
which the CPU schedule vectorizes along K). A constant right-hand operand in [K, N] layout
(weights quantized at compile time) is transposed once here, at compile time, into the same
NT form.

    %t = linalg.transpose ins(%w : tensor<NxKxf32>) outs(%e : tensor<KxNxf32>) permutation = [1, 0]
    %y = linalg.matmul ins(%x, %t : tensor<MxKxf32>, tensor<KxNxf32>) outs(%acc : tensor<MxNxf32>)

becomes

    %y = linalg.matmul indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
                                        affine_map<(m, n, k) -> (n, k)>,
                                        affine_map<(m, n, k) -> (m, n)>]
           ins(%x, %w : tensor<MxKxf32>, tensor<NxKxf32>) outs(%acc : tensor<MxNxf32>)

`linalg.batch_matmul` with `permutation = [0, 2, 1]` (attention's Q @ K^T) folds the same way.
Discardable attributes on the matmul (`qmlir.*` calibration data) are kept.
"""
from __future__ import annotations

import numpy as np
from mlir import ir
from mlir.dialects import linalg

from qmlir.ir.matmul_layout import SWAP_LAST, is_default_layout, nt_maps
from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import dense

# Constants up to this many elements are transposed at compile time (a 4096x4096 i8 weight is 16M).
_MAX_CONST_ELEMENTS = 1 << 26
# A batched product this short along K, with this many rows, keeps its transpose: the NT
# schedule's K-lane partial sums need a horizontal reduction per output, which at K = 64
# (attention's head dim) outweighs the 4 FMA steps before it. Prefill's Q @ K^T
# (3 x 384 x 64 x 640 for SmolLM2) took 4.3 ms NT against 1.5 ms with the keys copied to
# [K, N] (a 0.5 MB copy) and multiplied by outer products. Decode (a few rows) stays NT: it
# reads the key cache in place.
_SHORT_K = 128
_MANY_ROWS = 64


def _nt_operand(op: ir.Operation) -> ir.Value | None:
    """The right-hand operand in [.., N, K] layout, or None when it cannot be had for free."""
    b = op.operands[1]
    if not isinstance(b, ir.OpResult):
        return None
    producer = b.owner
    if producer.name == "linalg.transpose":
        if list(ir.DenseI64ArrayAttr(producer.attributes["permutation"])) == SWAP_LAST[op.name]:
            return producer.operands[0]
        return None
    if producer.name == "arith.constant" and op.name == "linalg.matmul":
        attr = producer.attributes["value"]
        t = ir.RankedTensorType(b.type)
        if not isinstance(attr, ir.DenseElementsAttr) or attr.is_splat or t.shape[0] * t.shape[1] > _MAX_CONST_ELEMENTS:
            return None
        if not (isinstance(t.element_type, ir.IntegerType) or isinstance(t.element_type, ir.F32Type)):
            return None
        values = np.array(attr).reshape(t.shape)
        with op.location, ir.InsertionPoint(op):
            return dense(np.ascontiguousarray(values.T), t.element_type)
    return None


def _short_and_tall(op: ir.Operation) -> bool:
    a = ir.RankedTensorType(op.operands[0].type)
    if not a.has_static_shape:
        return False
    *_, m, k = a.shape
    return k <= _SHORT_K and m >= _MANY_ROWS


def run(module: ir.Module) -> int:
    """Fold transposes (and constant right-hand operands) into NT matmuls; returns how many."""
    folded = 0
    for op in find_ops(module, "linalg.matmul", "linalg.batch_matmul"):
        op = op.operation if hasattr(op, "operation") else op
        if not is_default_layout(op):
            continue
        if op.name == "linalg.batch_matmul" and _short_and_tall(op):
            continue
        b_nt = _nt_operand(op)
        if b_nt is None:
            continue
        old_b = op.operands[1]
        maps = nt_maps(op.name)
        build = linalg.matmul if op.name == "linalg.matmul" else linalg.batch_matmul
        with op.location, ir.InsertionPoint(op):
            new = build(op.operands[0], b_nt, outs=[op.operands[2]], indexing_maps=maps)
        new_op = new.owner
        for i in range(len(op.attributes)):
            named = op.attributes[i]
            if named.name.startswith("qmlir."):
                new_op.attributes[named.name] = named.attr
        op.results[0].replace_all_uses_with(new)
        op.erase()
        producer = old_b.owner
        if not list(old_b.uses):
            producer.erase()
        folded += 1
    return folded


registry.register_pass(
    "qmlir-fold-transpose-into-matmul",
    "matmul of a transposed (or constant) right-hand operand -> matmul reading it as [N, K] (no copy)",
    run,
)
