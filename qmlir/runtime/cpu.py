"""Load a CPU artifact and call it with torch tensors.

Arguments and results cross by pointer: inputs are passed in place (made contiguous if
they are not), results are written into tensors allocated here with torch, which the
compiled function receives as out-parameters. bf16 stays bf16; nothing goes via numpy.
The runtime only loads: it parses the artifact's LLVM-dialect bytecode and JIT-compiles it
with MLIR's ExecutionEngine, or loads the machine code an earlier process made of the same
artifact (qmlir/runtime/objects.py); lowering happens in qmlir.target, before.
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading
import time
from typing import List, Sequence

import torch
from mlir import ir
from mlir.execution_engine import ExecutionEngine

from qmlir.errors import CompileError, InputMismatchError
from qmlir.ir.specs import TensorSpec
from qmlir.runtime import objects
from qmlir.runtime.artifact import Artifact
from qmlir.runtime.libs import runtime_library
from qmlir.runtime.loaded import LoadedFunction
from qmlir.runtime.memref import point_at

_LOCK = threading.Lock()
_GLOBAL = ("async_runtime", "gomp")  # loaded globally, not through an engine's shared_libs
_GLOBAL_LIBRARIES: dict = {}  # runtime library name -> its handle, loaded once with RTLD_GLOBAL
# Engines of threaded functions outlive their CpuFunction by a moment: a worker thread that
# has signalled its task's completion may still be returning through the JIT code; freeing the
# code at once crashed it. They are freed on a later load, a second after retirement.
_RETIRED: list = []
_RETIRE_SECONDS = 1.0


def _free_retired() -> None:
    now = time.monotonic()
    with _LOCK:
        _RETIRED[:] = [(t, e) for t, e in _RETIRED if now - t < _RETIRE_SECONDS]


_MALLOC_TUNED = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (once per process; True if done).

    Compiled functions allocate their intermediate buffers with malloc on every call. By
    default glibc serves blocks of a few MB with fresh mmaps (its threshold adapts only up to
    32 MB) and returns the top of the heap to the system when it frees, so every call faulted
    in and zeroed fresh pages: SmolLM2's attention over 128 x 640 scores took 12.2 ms, 4.4 ms
    with freed memory kept (eager PyTorch: 1.6 ms), and a decoder layer's prefill 19.5 ms ->
    15 ms. Blocks up to 32 MB now come from the heap and freed memory stays with the process
    (its footprint stays at its peak). `QMLIR_KEEP_MEMORY=0` leaves malloc as it was."""
    global _MALLOC_TUNED
    with _LOCK:
        if _MALLOC_TUNED is None:
            _MALLOC_TUNED = False
            if os.environ.get("QMLIR_KEEP_MEMORY", "1").strip() not in ("0", "off", "no") and \
                    platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                try:
                    libc = ctypes.CDLL(None)
                    ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
                    ok = libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1 and ok
                    _MALLOC_TUNED = ok
                except (OSError, AttributeError):
                    pass
    return _MALLOC_TUNED


def load_global(name: str) -> None:
    """Load the runtime library `name` once per process with RTLD_GLOBAL, so that every engine's
    calls into it resolve: MLIR's async runtime, and libgomp (the thread team of threaded
    kernels, the copy torch itself runs on).

    Not through ExecutionEngine's shared_libs: each engine that loads the async runtime that way
    calls the library's destroy hook when it is freed, which deletes the process-wide runtime,
    and the next engine's threads then crash. Loaded once, the library lives as long as the process."""
    with _LOCK:
        if name not in _GLOBAL_LIBRARIES:
            _GLOBAL_LIBRARIES[name] = ctypes.CDLL(runtime_library(name), mode=ctypes.RTLD_GLOBAL)


class CpuFunction(LoadedFunction):
    """One JIT-compiled function with a fixed input signature, loaded from an artifact."""

    kind = "cpu"
    runtime_name = "CPU"

    def __init__(self, artifact: Artifact, opt_level: int = 2):
        self._take(artifact)
        self.cache_hit = bool(artifact.extras.get("cache_hit", False))
        self._threaded = "async_runtime" in artifact.libraries
        keep_freed_memory()
        _free_retired()
        t0 = time.perf_counter()
        self._engine = None
        for name in artifact.libraries:
            if name in _GLOBAL:
                load_global(name)
        libs = [runtime_library(name) for name in artifact.libraries]
        cached = objects.path_for(objects.key(artifact.bytecode, opt_level, artifact.libraries))
        addr = objects.load(cached, "_mlir__mlir_ciface_" + self.func_name)
        # machine code from an earlier process (qmlir/runtime/objects.py): no parse, no LLVM
        self.object_hit = addr is not None
        if self.object_hit:
            self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr)
        else:
            self._context = ir.Context()
            with self._context:
                module = self._parse()
                try:  # position-independent, so that its object file links into a shared library
                    self._engine = ExecutionEngine(module, opt_level=opt_level, enable_pic=True,
                                                   shared_libs=[p for n, p in zip(artifact.libraries, libs)
                                                                if n not in _GLOBAL])
                except RuntimeError as e:
                    raise CompileError(f"JIT compilation failed: {e}") from None
                self._module = module
            self._fn = self._lookup(self.func_name)
            objects.store(cached, self._engine, libs)
        self.jit_seconds = time.perf_counter() - t0
        self.compile_seconds = self.lower_seconds + self.jit_seconds
        self._pack([s.shape for s in self.inputs + self._all_outputs])
        self._lock = threading.Lock()
        # what each argument must be, in the form the per-call loop compares fastest
        self._expect = [(torch.Size(s.shape), s.dtype) for s in self.inputs]

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None and self._threaded and _LOCK is not None:  # None: the interpreter is exiting
            with _LOCK:
                _RETIRED.append((time.monotonic(), engine))

    def check(self, args: Sequence[torch.Tensor]) -> None:
        check_inputs(self.func_name, self.inputs, args)

    def __call__(self, *args: torch.Tensor) -> List[torch.Tensor]:
        # One loop checks each argument and points its descriptor at it: a decode step passes
        # ~300 weights and cache tensors, so what runs per argument is kept to a few attribute
        # reads (the per-step cost is measured by benchmarks/bench.py's overhead row).
        expect = self._expect
        if len(args) != len(expect):
            self.check(args)  # raises, naming what is wrong
        outs = [torch.empty(s.shape, dtype=s.dtype) for s in self.outputs]
        ins = list(args)
        with self._lock:
            descs = self._descs
            for i, a in enumerate(args):
                shape, dtype = expect[i]
                if not isinstance(a, torch.Tensor) or a.dtype != dtype or a.shape != shape or not a.is_cpu:
                    self.check(args)  # raises, naming what is wrong
                if not a.is_contiguous():
                    a = ins[i] = a.contiguous()
                desc = descs[i]
                desc.allocated = desc.aligned = a.data_ptr()
            for desc, t in zip(descs[len(args):], outs):
                point_at(desc, t)
            self._point_checks()
            self._fn(self._packed)
            checks = self._check_results()
        if self.mutated:
            self._write_back(args, ins)
        return self._results(outs, checks)


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
