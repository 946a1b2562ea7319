"""The op registry: one lowering per ATen overload, keyed by the OpOverload object itself."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Union

import torch

OpKey = Union[torch._ops.OpOverload, Callable]
Lowering = Callable  # (ctx, node, *args, **kwargs) -> Value | tuple[Value, ...]

_REGISTRY: Dict[OpKey, Lowering] = {}


def lowering(*targets: OpKey) -> Callable[[Lowering], Lowering]:
    """Register `fn` as the lowering of each ATen overload in `targets`.

    The lowering receives the importer context, the FX node, and the node's
    arguments with every FX node replaced by its MLIR value. It returns MLIR
    values, or raises `UnsupportedOp`; it never returns None to mean "could not".
    """

    def register(fn: Lowering) -> Lowering:
        for target in targets:
            if target in _REGISTRY:
                raise ValueError(f"two lowerings registered for {target}")
            _REGISTRY[target] = fn
        return fn

    return register


def lookup(target: OpKey) -> Lowering | None:
    return _REGISTRY.get(target)


def registered_ops() -> Iterable[OpKey]:
    return list(_REGISTRY)


def op_name(target: OpKey) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))
