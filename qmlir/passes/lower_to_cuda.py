"""The `cuda` pipeline: linalg on tensors -> GPU kernels (NVVM, PTX) + host code that launches
them through MLIR's CUDA runtime wrappers (libmlir_cuda_runtime.so).

    quant casts -> arith (qmlir-lower-quant)          if the module still has quant ops
    one-shot bufferization, results as out-parameters (as on the CPU)
    qmlir-gpu-device-buffers     intermediates/constants -> caller-allocated device buffers
    qmlir-gpu-map-loops          one gpu.launch per linalg op, one thread per parallel iteration,
                                 reduction accumulators in registers
    gpu-kernel-outlining, qmlir-gpu-dedupe-kernels (one copy per distinct kernel, not per layer)
    gpu-async-region             one stream per call, no per-launch synchronization
    nvvm-attach-target{chip features}, convert-gpu-to-nvvm, gpu-to-llvm
    gpu-module-to-binary{format}  isa: PTX text (no CUDA needed; the driver JITs it when loaded)
                                  bin/fatbin: cubin through ptxas from a CUDA toolkit

The host function keeps qmlir's calling convention (inputs, then out-parameters) and gains two
trailing byte buffers, constants and workspace (see gpu_device_buffers); its sizes are read off
the module by `lower_to_cuda` before the host side is lowered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlir import ir

from qmlir.errors import CompileError
from qmlir.passes import distinct_results, gpu_device_buffers, gpu_kernel_dedup, gpu_loop_mapping, registry
from qmlir.passes import pipelines
from qmlir.passes.pipelines import _protect_arguments, has_quant_ops

FORMATS = ("isa", "bin", "fatbin")

OUTLINE = (
    "builtin.module("
    "func.func(scf-parallel-for-to-nested-fors),"
    "convert-math-to-funcs,"  # integer powers -> helper functions, cloned into the kernels
    "gpu-kernel-outlining)"
)

PREPARE = "builtin.module(func.func(canonicalize,cse,canonicalize))"

BUFFERIZE = (
    "builtin.module("
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    "canonicalize)"
)


def _to_nvvm(chip: str, features: str, opt_level: int, fmt: str, toolkit: str) -> str:
    tk = f" toolkit={toolkit}" if toolkit else ""
    return (
        "builtin.module("
        "func.func(gpu-async-region),"
        "convert-vector-to-scf,convert-scf-to-cf,convert-nvvm-to-llvm,convert-func-to-llvm,"
        "expand-strided-metadata,"
        f"nvvm-attach-target{{chip={chip} features={features} O={opt_level}}},"
        "lower-affine,convert-arith-to-llvm,convert-index-to-llvm,canonicalize,cse,"
        "gpu.module(convert-gpu-to-nvvm,canonicalize,cse,reconcile-unrealized-casts),"
        "gpu-to-llvm,"
        f"gpu-module-to-binary{{format={fmt}{tk}}},"
        "convert-math-to-llvm,canonicalize,cse,reconcile-unrealized-casts)"
    )


@dataclass(frozen=True)
class CudaLowering:
    """What `lower_to_cuda` made: the buffers each host function's caller allocates, and the
    kernels' PTX (format isa) for reading and tests."""

    buffers: list
    ptx: str | None


def cuda_toolkit() -> str:
    """A CUDA toolkit for libdevice (math functions) and ptxas: CUDA_HOME / CUDA_PATH, else
    /usr/local/cuda if present, else none (PTX is still emitted; math calls stay external)."""
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        if os.environ.get(var):
            return os.environ[var]
    default = Path("/usr/local/cuda")
    return str(default) if (default / "nvvm" / "libdevice").is_dir() else ""


def run_pipeline(module: ir.Module, pipeline: str) -> None:
    pipelines.run_pipeline(module, pipeline, "cuda pipeline")


def kernel_ptx(module: ir.Module) -> str:
    """The PTX of every gpu.binary in `module` (format isa), concatenated."""
    from mlir.dialects import gpu
    texts = []

    def visit(op):
        if op.name == "gpu.binary":
            for obj in ir.ArrayAttr(op.attributes["objects"]):
                texts.append(gpu.ObjectAttr(obj).object.decode())
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return "\n".join(texts)


def lower_to_cuda(module: ir.Module, chip: str = "sm_90", features: str = "+ptx80", opt_level: int = 3,
                  format: str = "isa", block_size: int = 256, toolkit: str | None = None) -> CudaLowering:
    """In place: linalg-on-tensors `module` -> LLVM dialect host code + an embedded GPU binary."""
    if format not in FORMATS:
        raise CompileError(f"cuda pipeline: format must be one of {', '.join(FORMATS)}, got '{format}'")
    with module.context, ir.Location.unknown():
        if has_quant_ops(module):
            from qmlir.passes import lower_quant
            lower_quant.run(module)
        _protect_arguments(module)
        run_pipeline(module, PREPARE)
        distinct_results.run(module)
        run_pipeline(module, BUFFERIZE)
        buffers = gpu_device_buffers.run(module)
        gpu_loop_mapping.run(module, block_size=block_size)
        run_pipeline(module, OUTLINE)
        gpu_kernel_dedup.run(module)
        tk = cuda_toolkit() if toolkit is None else toolkit
        run_pipeline(module, _to_nvvm(chip, features, opt_level, format, tk))
        return CudaLowering(buffers, kernel_ptx(module) if format == "isa" else None)


def _lower_to_cuda(module: ir.Module, chip: str, features: str, opt_level: int, format: str,
                   block_size: int, toolkit: str) -> None:
    lower_to_cuda(module, chip, features, opt_level, format, block_size, toolkit or None)


registry.register_pass(
    "qmlir-lower-to-cuda",
    "named pipeline: bufferize, map linalg onto GPU threads, outline kernels, NVVM + PTX/cubin, host via CUDA runtime calls",
    _lower_to_cuda,
    {
        "chip": registry.Option(str, "sm_90", "the GPU architecture (sm_80, sm_90, ...)"),
        "features": registry.Option(str, "+ptx80", "PTX ISA version (sm_90 needs +ptx80 or later)"),
        "opt-level": registry.Option(int, 3, "LLVM optimization level of the kernels"),
        "format": registry.Option(str, "isa", "isa: PTX text; bin: cubin; fatbin: fat binary (need ptxas)",
                                  choices=FORMATS),
        "block-size": registry.Option(int, 256, "threads per block"),
        "toolkit": registry.Option(str, "", "CUDA toolkit path (libdevice, ptxas); default CUDA_HOME or /usr/local/cuda"),
    },
)
