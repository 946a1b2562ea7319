"""Give every function result its own tensor before bufferization.

`buffer-results-to-out-params` turns each returned buffer into a caller-provided
out-parameter; it crashes (LLVM 22) when one buffer is returned twice, and must copy when a
function returns an argument. CSE can merge two equal results after import, so this runs on
the final tensor IR, just before bufferization: a result that repeats an earlier one or is a
function argument is returned through a `linalg.copy`. The trailing mutated results
(`qmlir.mutated_results`: new values of arguments, qmlir-drop-mutated-results) are left as
they are: they are written into their arguments, never returned.
"""
from __future__ import annotations

from mlir import ir
from mlir.dialects import linalg, tensor

from qmlir.ir.specs import mutated_results
from qmlir.passes import registry


def run(module: ir.Module) -> int:
    copies = 0
    for fn in module.body.operations:
        if fn.operation.name != "func.func" or not fn.regions[0].blocks:
            continue
        for block in fn.regions[0].blocks:
            ret = block.operations[len(block.operations) - 1].operation
            if ret.name != "func.return":
                continue
            seen = []
            for i, v in enumerate(list(ret.operands)[:len(ret.operands) - len(mutated_results(fn.operation))]):
                if not isinstance(v.type, ir.RankedTensorType):
                    continue
                if isinstance(v, ir.BlockArgument) or any(v == s for s in seen):
                    t = ir.RankedTensorType(v.type)
                    with ret.location, ir.InsertionPoint(ret):
                        v = linalg.copy(v, outs=[tensor.empty(list(t.shape), t.element_type)])
                    ret.operands[i] = v
                    copies += 1
                seen.append(v)
    return copies


registry.register_pass(
    "qmlir-distinct-results",
    "return each function result through its own tensor (a repeated result or an argument gets a linalg.copy)",
    run,
)
