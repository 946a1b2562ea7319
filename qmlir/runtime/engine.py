"""Compile an imported graph once and call it with torch tensors on the CPU.

Arguments and results cross by pointer: inputs are passed in place (made contiguous if
they are not), results are written into tensors allocated here with torch, which the
compiled function receives as out-parameters. bf16 stays bf16; nothing goes via numpy.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from typing import List, Sequence

import torch
from mlir import ir
from mlir.execution_engine import ExecutionEngine

from qmlir.errors import CompileError, InputMismatchError, QmlirError
from qmlir.frontend.importer import ImportedGraph, TensorSpec
from qmlir.frontend.types import torch_dtype
from qmlir.passes import lower_quant, pipelines
from qmlir.passes.pipelines import lower_to_llvm_cpu
from qmlir.runtime import disk_cache
from qmlir.runtime.libs import runtime_library
from qmlir.runtime.memref import make_descriptor, point_at

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


_ASYNC_RUNTIME = None
# Engines of threaded functions outlive their CompiledFunction by a moment: a worker thread that
# has signalled its task's completion may still be returning through the JIT code; freeing the
# code at once crashed it. They are freed on a later compile, a second after retirement.
_RETIRED: list = []
_RETIRE_SECONDS = 1.0


def _free_retired() -> None:
    now = time.monotonic()
    with _CACHE_LOCK:
        _RETIRED[:] = [(t, e) for t, e in _RETIRED if now - t < _RETIRE_SECONDS]


def load_async_runtime() -> None:
    """Load MLIR's async runtime (the threads of parallel kernels) once per process, globally.

    Not through ExecutionEngine's shared_libs: each engine that loads it that way calls the
    library's destroy hook when it is freed, which deletes the process-wide runtime, and the
    next engine's threads then crash. Loaded once with RTLD_GLOBAL, its exported
    mlirAsyncRuntime* symbols resolve for every engine and the runtime lives as long as the process.
    """
    global _ASYNC_RUNTIME
    with _CACHE_LOCK:
        if _ASYNC_RUNTIME is None:
            _ASYNC_RUNTIME = ctypes.CDLL(runtime_library("async_runtime"), mode=ctypes.RTLD_GLOBAL)


class CompiledFunction:
    """One JIT-compiled function with a fixed input signature."""

    def __init__(self, graph: ImportedGraph, opt_level: int = 2):
        self.inputs: List[TensorSpec] = list(graph.inputs)
        self.outputs: List[TensorSpec] = list(graph.outputs)
        self.func_name = graph.func_name
        self._threaded = False
        _free_retired()
        t0 = time.perf_counter()
        with graph.context:
            text = str(graph.module)
            cache_key = disk_cache.key(text, pipelines.cpu_pipeline_key())
            module = disk_cache.load(cache_key, graph.context)
            self.cache_hit = module is not None
            if module is None:
                module = ir.Module.parse(text)
                lower_to_llvm_cpu(module)
                disk_cache.store(cache_key, module)
            self.lower_seconds = time.perf_counter() - t0
            self._threaded = pipelines.needs_async_runtime(module)
            if self._threaded:
                load_async_runtime()
            try:
                self._engine = ExecutionEngine(module, opt_level=opt_level,
                                               shared_libs=[runtime_library("c_runner_utils")])
            except RuntimeError as e:
                raise CompileError(f"JIT compilation failed: {e}") from None
        self._context = graph.context
        addr = self._engine.raw_lookup("_mlir_ciface_" + self.func_name)
        if not addr:
            raise CompileError(f"compiled module has no entry point {self.func_name}")
        self._fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr)
        self.compile_seconds = time.perf_counter() - t0
        self._descs = [make_descriptor(s.shape) for s in self.inputs + self.outputs]
        self._desc_ptrs = [ctypes.c_void_p(ctypes.addressof(d)) for d in self._descs]
        self._packed = (ctypes.c_void_p * len(self._descs))(*[ctypes.addressof(p) for p in self._desc_ptrs])
        self._lock = threading.Lock()

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None and self._threaded:
            with _CACHE_LOCK:
                _RETIRED.append((time.monotonic(), engine))

    def check(self, args: Sequence[torch.Tensor]) -> None:
        check_inputs(self.func_name, self.inputs, args)

    def __call__(self, *args: torch.Tensor) -> List[torch.Tensor]:
        self.check(args)
        ins = [a.detach().contiguous() for a in args]
        outs = [torch.empty(s.shape, dtype=s.dtype) for s in self.outputs]
        with self._lock:
            for desc, t in zip(self._descs, ins + outs):
                point_at(desc, t)
            self._fn(self._packed)
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


def compile_graph(graph: ImportedGraph) -> CompiledFunction:
    """Compile `graph`, reusing a function already compiled from the same IR in this process."""
    key = hashlib.sha256((pipelines.cpu_pipeline_key() + "\n" + graph.mlir).encode()).hexdigest()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    fn = CompiledFunction(graph)
    with _CACHE_LOCK:
        _CACHE[key] = fn
    return fn


def entry_function(module: ir.Module, name: str | None = None) -> ir.Operation:
    """The function to run: `name`, else the only public function, else `forward`."""
    funcs = [op for op in module.body.operations if op.operation.name == "func.func" and op.regions[0].blocks]
    names = [ir.StringAttr(f.operation.attributes["sym_name"]).value for f in funcs]
    if name is not None:
        if name not in names:
            raise QmlirError(f"no function '{name}' in the module (functions: {', '.join(names) or 'none'})")
        return funcs[names.index(name)]
    public = [f for f in funcs if "sym_visibility" not in f.operation.attributes]
    if len(public) == 1:
        return public[0]
    if "forward" in names:
        return funcs[names.index("forward")]
    raise QmlirError(f"{len(public)} public functions ({', '.join(names)}); choose one by name")


def _specs(types, what: str) -> List[TensorSpec]:
    specs = []
    for i, t in enumerate(types):
        if not isinstance(t, ir.RankedTensorType) or not t.has_static_shape:
            raise QmlirError(f"{what} {i} has type {t}; only functions on statically shaped tensors can run")
        specs.append(TensorSpec(tuple(t.shape), torch_dtype(t.element_type)))
    return specs


def compile_module(module: ir.Module, entry: str | None = None) -> CompiledFunction:
    """Compile a tensor-level module (as qmlir emits or qmlir-opt prints) for its entry function."""
    if pipelines.has_quant_ops(module):  # quantized signatures become their storage types
        lower_quant.run(module)
    fn = entry_function(module, entry)
    name = ir.StringAttr(fn.operation.attributes["sym_name"]).value
    ftype = ir.FunctionType(ir.TypeAttr(fn.operation.attributes["function_type"]).value)
    fn.operation.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    graph = ImportedGraph(module, module.context, name, _specs(ftype.inputs, "argument"),
                          _specs(ftype.results, "result"))
    return CompiledFunction(graph)


def compile_mlir(text: str, entry: str | None = None) -> CompiledFunction:
    """Parse `text` in a new context and compile its entry function."""
    context = ir.Context()
    with context:
        return compile_module(ir.Module.parse(text), entry)
