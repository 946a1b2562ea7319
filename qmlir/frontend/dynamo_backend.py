"""The TorchDynamo backend: AOT autograd with core-ATen decompositions and functionalization
gives an inference graph with parameters as inputs; qmlir imports and compiles it. A graph it
cannot compile runs eagerly after one warning naming every unsupported op (strict: raises)."""
from __future__ import annotations

import warnings
from typing import Callable, List

import torch
from torch._decomp import core_aten_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from qmlir.errors import UnsupportedOpError
from qmlir.frontend.importer import import_graph
from qmlir.runtime.engine import compile_graph

_WARNED: set = set()


class QmlirFallbackWarning(UserWarning):
    """A graph runs eagerly instead of through qmlir."""


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, QmlirFallbackWarning, stacklevel=3)


def backend(strict: bool = False) -> Callable:
    """A configured backend: `torch.compile(model, backend=qmlir.backend(strict=True))`."""

    def fw_compiler(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]):
        try:
            graph = import_graph(gm)
        except UnsupportedOpError as e:
            if strict:
                raise
            _warn_once(f"qmlir: running this graph eagerly. {e}")
            return make_boxed_func(gm.forward)
        fn = compile_graph(graph)

        def run(args):
            return fn(*args)

        run._boxed_call = True
        return run

    compile_with_aot = aot_autograd(fw_compiler=fw_compiler, decompositions=core_aten_decompositions())

    def qmlir_backend(gm: torch.fx.GraphModule, example_inputs: List[torch.Tensor]):
        if torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in example_inputs):
            message = ("qmlir compiles inference graphs; this graph needs gradients and runs eagerly "
                       "(wrap the call in torch.no_grad() or torch.inference_mode())")
            if strict:
                raise UnsupportedOpError([("autograd", message)])
            _warn_once(message)
            return gm.forward
        return compile_with_aot(gm, example_inputs)

    return qmlir_backend


qmlir_backend = backend()
