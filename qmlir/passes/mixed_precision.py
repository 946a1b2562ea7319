"""qmlir-mixed-precision: run the contractions (matmuls, batched matmuls, convolutions: the
bulk of a model's float work) with bf16 or f16 operands while accumulating in f32, and keep
everything else (reductions, softmax, norms, elementwise epilogues) in f32.

`ops` is the configurable list of what runs in low precision; anything not listed stays f32.
Matches an f32 contraction:

    %y = linalg.matmul ins(%a, %b : tensor<MxKxf32>, tensor<KxNxf32>) outs(%acc : tensor<MxNxf32>)

produces:

    %a16 = linalg.generic { arith.truncf : f32 to bf16 } (and %b16 likewise)
    %y = linalg.matmul ins(%a16, %b16 : tensor<MxKxbf16>, tensor<KxNxbf16>) outs(%acc : tensor<MxNxf32>)

(truncf rounds to nearest-even; the products are exact in f32 and summed in f32, as PyTorch's
bf16 GEMMs do.) This is the IR the CPU and GPU back ends map to bf16/f16 dot-product
instructions.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import linalg, tensor

from qmlir.ir.builders import convert, generic
from qmlir.ir.walk import find_ops
from qmlir.passes import registry
from qmlir.ir.quant import F32, QuantPassError

_KINDS = {
    "matmul": ("linalg.matmul",),
    "batch_matmul": ("linalg.batch_matmul",),
    "conv": ("linalg.conv_2d_nchw_fchw", "linalg.conv_2d_ngchw_gfchw"),
}
_LOW = {"bf16": ir.BF16Type.get, "f16": ir.F16Type.get}


def _to_low(v: ir.Value, low: ir.Type) -> ir.Value:
    t = ir.RankedTensorType(v.type)
    ident = ir.AffineMap.get_identity(t.rank)
    return generic([v], [ident], [tensor.empty(list(t.shape), low)], [ident], ["parallel"] * t.rank,
                   lambda x, _: convert(x, low))[0]


def _rebuild(op: ir.Operation, ins, init: ir.Value) -> ir.Value:
    """The same named op over new operands (its region's argument types follow the operands)."""
    if op.name == "linalg.matmul":
        return linalg.matmul(*ins, outs=[init])
    if op.name == "linalg.batch_matmul":
        return linalg.batch_matmul(*ins, outs=[init])
    strides = [int(x) for x in ir.DenseIntElementsAttr(op.attributes["strides"])]
    dilations = [int(x) for x in ir.DenseIntElementsAttr(op.attributes["dilations"])]
    build = linalg.conv_2d_nchw_fchw if op.name == "linalg.conv_2d_nchw_fchw" else linalg.conv_2d_ngchw_gfchw
    return build(*ins, outs=[init], strides=strides, dilations=dilations)


def run(module: ir.Module, type: str = "bf16", ops: str = "matmul,batch_matmul,conv") -> int:
    """Convert the listed f32 contractions; returns how many were converted."""
    kinds = [k.strip() for k in ops.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown:
        raise QuantPassError(f"qmlir-mixed-precision: unknown op kind(s) {', '.join(unknown)} "
                             f"(kinds: {', '.join(_KINDS)})")
    names = {n for k in kinds for n in _KINDS[k]}
    low = _LOW[type]()
    count = 0
    for op in find_ops(module, *names):
        n_in = len(op.operands) - 1  # named contractions: inputs then one init
        ins = [op.operands[i] for i in range(n_in)]
        if any(ir.RankedTensorType(v.type).element_type != F32() for v in ins):
            continue
        with op.location, ir.InsertionPoint(op):
            new = _rebuild(op, [_to_low(v, low) for v in ins], op.operands[n_in])
        op.results[0].replace_all_uses_with(new)
        op.erase()
        count += 1
    return count


registry.register_pass(
    "qmlir-mixed-precision",
    "run matmuls/convolutions with bf16 or f16 operands and f32 accumulation; everything else stays f32",
    run,
    {
        "type": registry.Option(str, "bf16", "low-precision operand type", ("bf16", "f16")),
        "ops": registry.Option(str, "matmul,batch_matmul,conv", "comma-separated op kinds to run in low precision "
                               "(matmul, batch_matmul, conv); all others stay f32"),
    },
)
