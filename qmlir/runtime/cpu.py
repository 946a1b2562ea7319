"""Load a CPU artifact and call it with torch tensors.

Arguments and results cross by pointer: inputs are passed in place (made contiguous if
they are not), results are written into tensors allocated here with torch, which the
compiled function receives as out-parameters. bf16 stays bf16; nothing goes via numpy.
The runtime only loads: it parses the artifact's LLVM-dialect bytecode and JIT-compiles it
with MLIR's ExecutionEngine; lowering happens in qmlir.target, before.
"""
from __future__ import annotations

import ctypes
import threading
import time
from typing import List, Sequence

import torch
from mlir import ir
from mlir.execution_engine import ExecutionEngine

from qmlir.errors import CompileError, InputMismatchError
from qmlir.ir.specs import TensorSpec
from qmlir.runtime.artifact import Artifact
from qmlir.runtime.checks import raise_failed
from qmlir.runtime.libs import runtime_library
from qmlir.runtime.memref import make_descriptor, point_at

_LOCK = threading.Lock()
_ASYNC_RUNTIME = None
# Engines of threaded functions outlive their CpuFunction by a moment: a worker thread that
# has signalled its task's completion may still be returning through the JIT code; freeing the
# code at once crashed it. They are freed on a later load, a second after retirement.
_RETIRED: list = []
_RETIRE_SECONDS = 1.0


def _free_retired() -> None:
    now = time.monotonic()
    with _LOCK:
        _RETIRED[:] = [(t, e) for t, e in _RETIRED if now - t < _RETIRE_SECONDS]


def load_async_runtime() -> None:
    """Load MLIR's async runtime (the threads of parallel kernels) once per process, globally.

    Not through ExecutionEngine's shared_libs: each engine that loads it that way calls the
    library's destroy hook when it is freed, which deletes the process-wide runtime, and the
    next engine's threads then crash. Loaded once with RTLD_GLOBAL, its exported
    mlirAsyncRuntime* symbols resolve for every engine and the runtime lives as long as the process.
    """
    global _ASYNC_RUNTIME
    with _LOCK:
        if _ASYNC_RUNTIME is None:
            _ASYNC_RUNTIME = ctypes.CDLL(runtime_library("async_runtime"), mode=ctypes.RTLD_GLOBAL)


class CpuFunction:
    """One JIT-compiled function with a fixed input signature, loaded from an artifact."""

    def __init__(self, artifact: Artifact, opt_level: int = 2):
        if artifact.kind != "cpu":
            raise CompileError(f"a {artifact.kind} artifact cannot be loaded on the CPU runtime")
        self.artifact = artifact
        self.inputs: List[TensorSpec] = list(artifact.inputs)
        self._checks = list(artifact.extras.get("checks", ()))
        n_checks = len(self._checks)
        self._all_outputs: List[TensorSpec] = list(artifact.outputs)
        # what the caller gets; the trailing check results are the runtime's (qmlir/runtime/checks.py)
        self.outputs: List[TensorSpec] = self._all_outputs[:len(self._all_outputs) - n_checks]
        self.func_name = artifact.func_name
        self.lower_seconds = artifact.lower_seconds
        self.cache_hit = bool(artifact.extras.get("cache_hit", False))
        self._threaded = "async_runtime" in artifact.libraries
        _free_retired()
        t0 = time.perf_counter()
        self._context = ir.Context()
        with self._context:
            try:
                module = ir.Module.parse(artifact.bytecode)
            except ir.MLIRError as e:
                raise CompileError(f"cannot read the artifact's module: {e}") from None
            if self._threaded:
                load_async_runtime()
            libs = [runtime_library(name) for name in artifact.libraries if name != "async_runtime"]
            try:
                self._engine = ExecutionEngine(module, opt_level=opt_level, shared_libs=libs)
            except RuntimeError as e:
                raise CompileError(f"JIT compilation failed: {e}") from None
            self._module = module
        addr = self._engine.raw_lookup("_mlir_ciface_" + self.func_name)
        if not addr:
            raise CompileError(f"compiled module has no entry point {self.func_name}")
        self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr)
        self.jit_seconds = time.perf_counter() - t0
        self.compile_seconds = self.lower_seconds + self.jit_seconds
        self._descs = [make_descriptor(s.shape) for s in self.inputs + self._all_outputs]
        self._desc_ptrs = [ctypes.c_void_p(ctypes.addressof(d)) for d in self._descs]
        self._packed = (ctypes.c_void_p * len(self._descs))(*[ctypes.addressof(p) for p in self._desc_ptrs])
        self._lock = threading.Lock()

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None and self._threaded:
            with _LOCK:
                _RETIRED.append((time.monotonic(), engine))

    def check(self, args: Sequence[torch.Tensor]) -> None:
        check_inputs(self.func_name, self.inputs, args)

    def __call__(self, *args: torch.Tensor) -> List[torch.Tensor]:
        self.check(args)
        ins = [a.detach().contiguous() for a in args]
        outs = [torch.empty(s.shape, dtype=s.dtype) for s in self._all_outputs]
        with self._lock:
            for desc, t in zip(self._descs, ins + outs):
                point_at(desc, t)
            self._fn(self._packed)
        if self._checks:
            n = len(self._checks)
            raise_failed(self._checks, outs[-n:])
            outs = outs[:-n]
        return outs


def check_inputs(func_name: str, specs: Sequence[TensorSpec], args: Sequence[torch.Tensor],
                 device: torch.device | None = None) -> None:
    """InputMismatchError unless `args` are tensors of exactly `specs` on `device` (None: the CPU)."""
    if len(args) != len(specs):
        raise InputMismatchError(f"{func_name} takes {len(specs)} tensor(s), got {len(args)}")
    for i, (a, spec) in enumerate(zip(args, specs)):
        if not isinstance(a, torch.Tensor):
            raise InputMismatchError(f"input {i}: expected a tensor {spec}, got {type(a).__name__}")
        if tuple(a.shape) != spec.shape or a.dtype != spec.dtype:
            got = TensorSpec(tuple(a.shape), a.dtype)
            raise InputMismatchError(f"input {i}: compiled for {spec}, got {got}; compile again for this shape/dtype")
        if device is None and a.device.type != "cpu":
            raise InputMismatchError(f"input {i}: compiled for the CPU, got a tensor on {a.device}")
        if device is not None and a.device != device:
            raise InputMismatchError(f"input {i}: compiled for {device}, got a tensor on {a.device}")


def load(artifact: Artifact) -> CpuFunction:
    return CpuFunction(artifact)
