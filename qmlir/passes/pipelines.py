"""Named lowering pipelines. `cpu`: tile+vectorize matmuls, bufferize with results as
caller-provided out-parameters, outline kernels, lower to the LLVM dialect."""
from __future__ import annotations

from mlir import ir, passmanager

from qmlir.errors import CompileError
from qmlir.passes import (bf16_dot_matmul, cpu_features, dequant_matmul_fold, distinct_results, int8_dot_matmul,
                          loop_outlining, matmul_tiling, registry, transpose_matmul_fold)

CPU_PREPARE = "builtin.module(func.func(canonicalize,cse,canonicalize))"

CPU_LOWER = (
    "builtin.module("
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    "func.func(buffer-hoisting,promote-buffers-to-stack{max-alloc-size-in-bytes=4096}),"
    "buffer-deallocation-pipeline,convert-bufferization-to-memref)"
)

CPU_LOOPS = "builtin.module(func.func(convert-linalg-to-loops),convert-vector-to-scf)"

CPU_TO_LLVM = (
    "builtin.module("
    "expand-strided-metadata,lower-affine,"
    "convert-math-to-funcs,convert-scf-to-cf,"
    "arith-expand{include-bf16=1},"
    "convert-vector-to-llvm{enable-x86vector=1},finalize-memref-to-llvm,"
    "convert-math-to-llvm,convert-math-to-libm,"
    "convert-arith-to-llvm,convert-func-to-llvm,convert-cf-to-llvm,convert-index-to-llvm,"
    "convert-ub-to-llvm,reconcile-unrealized-casts)"
)

# scf.forall loops (the threaded matmul tiles) -> tasks of MLIR's async runtime
# (libmlir_async_runtime, shipped with the MLIR tools): its workers block when idle instead of
# spinning, so they do not steal the cores torch's own threads run on.
CPU_THREADS = (
    "builtin.module(func.func(scf-forall-to-parallel),"
    "async-parallel-for{{num-workers={threads} async-dispatch=0 min-task-size=1}},"
    "async-to-async-runtime,async-runtime-ref-counting,async-runtime-ref-counting-opt,convert-async-to-llvm)"
)


def run_pipeline(module: ir.Module, pipeline: str, what: str = "pass pipeline") -> None:
    """Run an upstream pipeline; its diagnostics become a CompileError starting with `what`."""
    try:
        passmanager.PassManager.parse(pipeline, context=module.context).run(module.operation)
    except ir.MLIRError as e:
        raise CompileError(f"{what} failed: {e}") from None


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


def _contains(module: ir.Module, matches) -> bool:
    """True when some op of `module` satisfies `matches(op)` (the walk stops at the first)."""
    found = []

    def visit(op):
        if matches(op):
            found.append(op)
            return ir.WalkResult.INTERRUPT
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return bool(found)


def has_quant_ops(module: ir.Module) -> bool:
    return _contains(module, lambda op: op.name.startswith("quant."))


def lower_to_llvm_cpu(module: ir.Module) -> None:
    """In place: linalg-on-tensors `module` -> LLVM dialect, with out-parameter results.
    quant-dialect casts are lowered first (qmlir-lower-quant): bufferizing them would abort."""
    if has_quant_ops(module):  # matmuls of dequantized i8 operands become i8 x i8 -> i32 first
        from qmlir.passes import fuse_quantized_matmul, lower_quant
        fuse_quantized_matmul.run(module, strict=False)
        lower_quant.run(module)
    _protect_arguments(module)
    run_pipeline(module, CPU_PREPARE)
    dequant_matmul_fold.run(module)
    transpose_matmul_fold.run(module)
    run_pipeline(module, CPU_PREPARE)  # drops the transposes' now-unused destinations
    if cpu_features.has("avx512_bf16"):  # else bf16 matmuls take the portable vector schedule
        bf16_dot_matmul.run(module)
    vnni = cpu_features.has("avx512_vnni")  # else i8 matmuls take the portable vector schedule
    if vnni:
        int8_dot_matmul.mark(module)
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
    if vnni:
        int8_dot_matmul.run(module)
    run_pipeline(module, CPU_LOOPS)
    try:
        loop_outlining.run(module)
    except ir.MLIRError as e:
        raise CompileError(f"loop outlining failed: {e}") from None
    if uses_threads(module):
        run_pipeline(module, CPU_THREADS.format(threads=matmul_tiling.default_threads()))
    run_pipeline(module, CPU_TO_LLVM)


def uses_threads(module: ir.Module) -> bool:
    """True when `module` has scf.forall loops to run on threads."""
    return _contains(module, lambda op: op.name == "scf.forall")


def needs_async_runtime(module: ir.Module) -> bool:
    """True when a lowered module calls MLIR's async runtime (its library must be loaded)."""
    for op in module.body.operations:
        if op.operation.name == "llvm.func" and \
                ir.StringAttr(op.operation.attributes["sym_name"]).value.startswith("mlirAsyncRuntime"):
            return True
    return False


def cpu_pipeline_key() -> str:
    """What besides the IR decides the code `lower_to_llvm_cpu` makes here (for compile caches)."""
    return (f"cpu threads={matmul_tiling.default_threads()} "
            f"bf16dot={int(cpu_features.has('avx512_bf16'))} vnni={int(cpu_features.has('avx512_vnni'))}")


def _lower_to_cpu(module: ir.Module) -> None:
    lower_to_llvm_cpu(module)


registry.register_pass(
    "qmlir-lower-to-cpu",
    "named pipeline: tile+vectorize matmuls, bufferize (results as out-params), outline kernels, lower to LLVM",
    _lower_to_cpu,
)
