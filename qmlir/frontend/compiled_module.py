"""`qmlir.compile(model, example_inputs)`: export, import, lower, JIT; a callable with the
model's own calling convention (pytree inputs and outputs) and its IR as text."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils import _pytree as pytree

from qmlir.errors import InputMismatchError
from qmlir.frontend.export import export
from qmlir.frontend.importer import import_graph
from qmlir.runtime.engine import compile_graph


class CompiledModule:
    """A model compiled for one input signature. Calling it with another shape or dtype
    raises `InputMismatchError`; parameters are read from the model at each call (by
    pointer), so in-place weight updates are seen and nothing is copied."""

    def __init__(self, model: torch.nn.Module, example_inputs: tuple, example_kwargs: dict | None = None):
        t0 = time.perf_counter()
        self._exported = export(model, example_inputs, example_kwargs)
        t1 = time.perf_counter()
        self._graph = import_graph(self._exported.graph_module)
        t2 = time.perf_counter()
        self.mlir: str = self._graph.mlir
        self._fn = compile_graph(self._graph)
        t3 = time.perf_counter()
        self.timings = {"export": t1 - t0, "import": t2 - t1, "compile": t3 - t2}

    @property
    def inputs(self):
        return self._fn.inputs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flat, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        if spec != self._exported.in_spec:
            raise InputMismatchError(f"inputs are structured as {spec}, but the model was compiled for "
                                     f"{self._exported.in_spec}")
        for pos, value in self._exported.constants.items():
            if flat[pos] != value:
                raise InputMismatchError(f"non-tensor input #{pos} was {value!r} at compile time, got {flat[pos]!r}")
        tensors = [value if kind == "state" else flat[value] for kind, value in self._exported.bindings]
        outs = self._fn(*tensors)
        return pytree.tree_unflatten(outs, self._exported.out_spec)


def compile(model: torch.nn.Module, example_inputs: tuple = (), example_kwargs: dict | None = None) -> CompiledModule:
    """Compile `model` for the shapes and dtypes of `example_inputs` (strict: an unsupported op
    raises `UnsupportedOpError` naming all of them)."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    return CompiledModule(model, tuple(example_inputs), example_kwargs)
