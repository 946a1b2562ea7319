"""Which micro-kernel a CPU target gives each matmul of a module: the target's own pipeline run
up to and including `qmlir-select-kernels` (nothing is lowered further), then the choices read
back from the `qmlir.kernel` attributes it records. For reports and for choosing schemes."""
from __future__ import annotations

from typing import List

from mlir import ir

from qmlir.kernels import base as kernels
from qmlir.passes.pipeline import Pipeline
from qmlir.passes.pipelines import cpu_stages
from qmlir.target.base import CpuTarget, TargetError

SELECT = "qmlir-select-kernels"


def kernel_choices(module: ir.Module, target: CpuTarget) -> List[str]:
    """The kernel chosen for each marked op of `module` (changed in place: pass a copy to keep
    the original), in program order."""
    if not isinstance(target, CpuTarget):
        raise TargetError(f"kernel choices are a CPU target's ({target} is not one)")
    stages = cpu_stages(target.features, target.threads)
    last = next(i for i, s in enumerate(stages) if s.startswith(SELECT))
    Pipeline.of(*stages[:last + 1]).run(module, "kernel selection")
    found: List[str] = []

    def visit(op):
        choice = kernels.recorded(op.operation)
        if choice is not None:
            found.append(choice[0])
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found
