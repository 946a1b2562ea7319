"""Named lowering pipelines. `cpu`: tile+vectorize matmuls, bufferize with results as
caller-provided out-parameters, outline kernels, lower to the LLVM dialect."""
from __future__ import annotations

from mlir import ir, passmanager

from qmlir.errors import CompileError
from qmlir.passes import distinct_results, loop_outlining, matmul_tiling, registry

CPU_PREPARE = "builtin.module(func.func(canonicalize,cse,canonicalize))"

CPU_LOWER = (
    "builtin.module("
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    "func.func(buffer-hoisting,promote-buffers-to-stack{max-alloc-size-in-bytes=4096}),"
    "buffer-deallocation-pipeline,convert-bufferization-to-memref,"
    "func.func(convert-linalg-to-loops),convert-vector-to-scf)"
)

CPU_TO_LLVM = (
    "builtin.module("
    "expand-strided-metadata,lower-affine,"
    "convert-math-to-funcs,convert-scf-to-cf,"
    "arith-expand{include-bf16=1},"
    "convert-vector-to-llvm,finalize-memref-to-llvm,"
    "convert-math-to-llvm,convert-math-to-libm,"
    "convert-arith-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,convert-index-to-llvm,"
    "convert-ub-to-llvm,reconcile-unrealized-casts)"
)


def run_pipeline(module: ir.Module, pipeline: str) -> None:
    try:
        passmanager.PassManager.parse(pipeline, context=module.context).run(module.operation)
    except ir.MLIRError as e:
        raise CompileError(f"pass pipeline failed: {e}") from None


def _protect_arguments(module: ir.Module) -> None:
    """Caller tensors are read-only: IR that writes into an argument (destination-passing into
    %arg) must bufferize to a copy, not mutate the caller's torch tensor."""
    for op in module.body.operations:
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            continue
        n = len(op.regions[0].blocks[0].arguments)
        old = list(ir.ArrayAttr(op.operation.attributes["arg_attrs"])) \
            if "arg_attrs" in op.operation.attributes else [ir.DictAttr.get({})] * n
        attrs = []
        for d in old:
            entries = {a.name: a.attr for a in ir.DictAttr(d)}
            entries["bufferization.writable"] = ir.BoolAttr.get(False)
            attrs.append(ir.DictAttr.get(entries))
        op.operation.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)


def has_quant_ops(module: ir.Module) -> bool:
    found = []

    def visit(op):
        if op.name.startswith("quant."):
            found.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return bool(found)


def lower_to_llvm_cpu(module: ir.Module) -> None:
    """In place: linalg-on-tensors `module` -> LLVM dialect, with out-parameter results.
    quant-dialect casts are lowered first (qmlir-lower-quant): bufferizing them would abort."""
    if has_quant_ops(module):
        from qmlir.passes import lower_quant
        lower_quant.run(module)
    _protect_arguments(module)
    run_pipeline(module, CPU_PREPARE)
    try:
        matmul_tiling.run(module)
    except ir.MLIRError as e:
        raise CompileError(f"matmul tiling failed: {e}") from None
    # No linalg-fuse-elementwise-ops: before tiling its reshape folding turns named matmuls into
    # generics that are no longer tiled; after tiling it halves compile time (fewer tensors to
    # bufferize) but recomputes producers (softmax's exp) and made SmolLM2 at 256 tokens 1.5x
    # slower. Fusion belongs to the speed work, with a cost model.
    distinct_results.run(module)
    run_pipeline(module, CPU_LOWER)
    try:
        loop_outlining.run(module)
    except ir.MLIRError as e:
        raise CompileError(f"loop outlining failed: {e}") from None
    run_pipeline(module, CPU_TO_LLVM)


def _lower_to_cpu(module: ir.Module) -> None:
    lower_to_llvm_cpu(module)


registry.register_pass(
    "qmlir-lower-to-cpu",
    "named pipeline: tile+vectorize matmuls, bufferize (results as out-params), outline kernels, lower to LLVM",
    _lower_to_cpu,
)
