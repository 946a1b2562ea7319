"""Named lowering pipelines. `cpu`: fuse elementwise ops, tile+vectorize matmuls, bufferize
with results as caller-provided out-parameters, lower to the LLVM dialect."""
from __future__ import annotations

from mlir import ir, passmanager

from qmlir.errors import CompileError
from qmlir.passes import distinct_results, loop_outlining, matmul_tiling

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


def lower_to_llvm_cpu(module: ir.Module) -> None:
    """In place: linalg-on-tensors `module` -> LLVM dialect, with out-parameter results."""
    run_pipeline(module, CPU_PREPARE)
    try:
        matmul_tiling.run(module)
    except ir.MLIRError as e:
        raise CompileError(f"matmul tiling failed: {e}") from None
    distinct_results.run(module)
    run_pipeline(module, CPU_LOWER)
    try:
        loop_outlining.run(module)
    except ir.MLIRError as e:
        raise CompileError(f"loop outlining failed: {e}") from None
    run_pipeline(module, CPU_TO_LLVM)
