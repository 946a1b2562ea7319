"""`qmlir.compile(model, example_inputs)`: capture the whole model as one graph (TorchDynamo,
fullgraph), import, lower and JIT it; a callable with the model's own calling convention.

It goes through the same Dynamo + AOT-autograd capture as `torch.compile(backend="qmlir")`,
so the two doors see the same graph and produce the same IR, but it is strict (an unsupported
op or a graph break raises) and bound to the example inputs' shapes and dtypes.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, List, Union

import torch
from torch.utils import _pytree as pytree

from qmlir.errors import InputMismatchError, QmlirError, UnsupportedOpError
from qmlir.frontend.dynamo_backend import backend as make_backend
from qmlir.ir.specs import TensorSpec
from qmlir.target import Target, as_target


def _signature(args: tuple, kwargs: dict):
    flat, spec = pytree.tree_flatten((args, kwargs))
    leaves = [TensorSpec(tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else ("const", x) for x in flat]
    return spec, leaves


class CompiledModule:
    """A model compiled for one input signature. Calling it with another structure, shape or
    dtype raises `InputMismatchError`; parameters are passed to the compiled code by pointer
    at each call, so weights are not copied and in-place weight updates are seen."""

    def __init__(self, model: torch.nn.Module, example_inputs: tuple, example_kwargs: dict | None = None,
                 passes: str | None = None, target: Union[Target, str, None] = None, bounds_checks: bool = True):
        kwargs = dict(example_kwargs or {})
        self.graphs: List = []  # one CompiledGraph per captured graph (one, with fullgraph)
        self._signature = _signature(tuple(example_inputs), kwargs)
        self._model = model
        self._compiled = torch.compile(model, backend=make_backend(strict=True, on_compile=self.graphs.append, passes=passes,
                                                                target=target, bounds_checks=bounds_checks),
                                       fullgraph=True, dynamic=False)
        self._target = as_target(target)
        t0 = time.perf_counter()
        with _target_context(self._target):
            _capture_errors(lambda: self._compiled(*example_inputs, **kwargs))
        if not self.graphs:  # never run eagerly in qmlir's name
            raise QmlirError("TorchDynamo ran the model without handing a graph to qmlir")
        self.compile_seconds = time.perf_counter() - t0

    @property
    def mlir(self) -> str:
        """The imported MLIR (linalg/arith/math/tensor on tensors, after `passes`), before lowering.
        (If Dynamo had to capture the model again, e.g. after torch._dynamo.reset(), the latest.)"""
        return self.graphs[-1].graph.mlir

    def mlir_with_locations(self) -> str:
        return self.graphs[-1].graph.module.operation.get_asm(enable_debug_info=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        spec, leaves = _signature(args, kwargs)
        want_spec, want = self._signature
        if spec != want_spec:
            raise InputMismatchError(f"inputs are structured as {spec}, but the model was compiled for {want_spec}")
        for i, (got, exp) in enumerate(zip(leaves, want)):
            if got != exp:
                raise InputMismatchError(f"input #{i}: compiled for {exp}, got {got}; "
                                         "call qmlir.compile again for this shape/dtype")
        with torch.no_grad(), _target_context(self._target):
            return self._compiled(*args, **kwargs)


def _target_context(target: Target):
    """On CUDA, SDPA would decompose to fused kernels (flash/efficient/cuDNN attention) that have
    no lowering; the math backend decomposes it into matmuls and softmax, as on the CPU."""
    if target.kind != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.MATH])


# Each qmlir.compile captures the model's forward once more; Dynamo counts those captures per code
# object (one class's forward) against its recompile limit (8), so a user compiling a ninth model
# of one class (benchmarking configurations) hit it. The captures are qmlir's own, each bound to
# its CompiledModule: the limit is raised for them (not for the user's torch.compile calls).
_CAPTURE_LIMIT = 1024


def _capture_errors(call: Callable[[], Any]) -> None:
    """Run a Dynamo-compiled call, turning capture failures into qmlir's typed errors."""
    limit = max(_CAPTURE_LIMIT, torch._dynamo.config.recompile_limit)
    patch = torch._dynamo.config.patch(recompile_limit=limit,
                                       accumulated_recompile_limit=max(limit, torch._dynamo.config.accumulated_recompile_limit))
    try:
        with torch.no_grad(), patch:
            call()
    except torch._dynamo.exc.BackendCompilerFailed as e:
        if isinstance(e.inner_exception, QmlirError):
            raise e.inner_exception from None
        raise
    except torch._dynamo.exc.FailOnRecompileLimitHit:
        raise QmlirError("TorchDynamo's recompile limit for this forward() is reached (one capture per "
                         "qmlir.compile of the same code with new shapes); call torch._dynamo.reset() or raise "
                         "torch._dynamo.config.recompile_limit") from None
    except torch._dynamo.exc.Unsupported as e:
        raise UnsupportedOpError([("graph capture", "TorchDynamo cannot capture the model as one graph: "
                                   f"{str(e).splitlines()[0]}")]) from None


def import_model(model: torch.nn.Module, example_inputs: tuple = (), example_kwargs: dict | None = None):
    """Capture `model` as one graph and import it to MLIR without lowering or compiling it:
    the `ImportedGraph` (`.mlir`, `.module`, input/output specs). For reading IR and for lit."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    graphs: List = []
    compiled = torch.compile(model, backend=make_backend(strict=True, on_import=graphs.append),
                             fullgraph=True, dynamic=False)
    _capture_errors(lambda: compiled(*example_inputs, **dict(example_kwargs or {})))
    return graphs[0]


def compile(model: torch.nn.Module, example_inputs: tuple = (), example_kwargs: dict | None = None,
            passes: str | None = None, target: Union[Target, str, None] = None,
            emit: str | None = None, bounds_checks: bool = True) -> CompiledModule | str:
    """Compile `model` for the shapes and dtypes of `example_inputs` (strict: unsupported ops
    raise `UnsupportedOpError` naming all of them). `passes` is a qmlir-opt pipeline run on the
    imported IR before lowering (e.g. "qmlir-mixed-precision{type=bf16}").

    target: a qmlir.Target or its text ("cpu", the default: the running CPU; "cuda": GPU kernels,
    inputs and outputs are CUDA tensors, `CudaUnavailableError` when there is no device).
    emit="ptx" (with a cuda target): return the kernels' PTX text (sm_90 unless the target says
    otherwise) instead of a callable; needs no GPU.
    bounds_checks=False: no run-time index checks (see qmlir.backend)."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if emit is not None:
        t = as_target("cuda{chip=sm_90}" if target == "cuda" else target)
        if emit != "ptx" or t.kind != "cuda":
            raise QmlirError(f"emit='{emit}' with target='{t}': only emit='ptx' with a cuda target is supported")
        if t.format != "isa":
            raise QmlirError(f"emit='ptx' needs the cuda target's format=isa, got format={t.format}")
        return _emit_ptx(model, tuple(example_inputs), example_kwargs, passes, t)
    target = as_target(target)
    if target.kind == "cuda":
        from qmlir.runtime.cuda import cuda_device
        cuda_device()  # CudaUnavailableError before any capture work
        for i, x in enumerate(pytree.tree_leaves((example_inputs, example_kwargs or {}))):
            if isinstance(x, torch.Tensor) and x.device.type != "cuda":
                raise InputMismatchError(f"target='cuda': example input #{i} is on {x.device}; pass CUDA tensors "
                                         "(and a model on the GPU: model.cuda())")
    return CompiledModule(model, tuple(example_inputs), example_kwargs, passes, target, bounds_checks)


def _emit_ptx(model: torch.nn.Module, example_inputs: tuple, example_kwargs: dict | None, passes: str | None,
              target: Target) -> str:
    """Capture and import as qmlir.compile does, then compile for `target` (cuda, isa) to PTX text."""
    graphs: List = []
    compiled = torch.compile(model, backend=make_backend(strict=True, on_import=graphs.append, passes=passes),
                             fullgraph=True, dynamic=False)
    with _target_context(target):
        _capture_errors(lambda: compiled(*example_inputs, **dict(example_kwargs or {})))
    if not graphs:
        raise QmlirError("TorchDynamo ran the model without handing a graph to qmlir")
    graph = graphs[-1]
    return target.compile(graph.mlir, graph.func_name).extras["ptx"]
