"""Helpers for lit tests and examples: import a function or module and print its MLIR."""
from __future__ import annotations

import sys
from typing import Callable

import torch

from qmlir.frontend.compiled_module import import_model


class FunctionModule(torch.nn.Module):
    """Wrap a plain function of tensors as a module."""

    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def print_ir(fn: Callable | torch.nn.Module, *args: torch.Tensor, title: str | None = None,
             locations: bool = False) -> None:
    """Print `// -----`, an optional `// title`, and the imported IR of `fn(*args)`."""
    module = fn if isinstance(fn, torch.nn.Module) else FunctionModule(fn)
    torch._dynamo.reset()
    graph = import_model(module, tuple(args))
    print("// -----")
    if title:
        print(f"// {title}")
    text = graph.module.operation.get_asm(enable_debug_info=locations)
    print(text)
    sys.stdout.flush()
