"""Tensor specs: the shapes and dtypes a compiled function takes and returns, read off the IR."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from mlir import ir
from mlir.dialects import quant

from qmlir.errors import QmlirError
from qmlir.ir.types import torch_dtype


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one function argument or result."""

    shape: tuple
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"{str(self.dtype).replace('torch.', '')}{list(self.shape)}"

    def to_json(self) -> list:
        return [list(self.shape), str(self.dtype).replace("torch.", "")]

    @staticmethod
    def from_json(value) -> "TensorSpec":
        shape, dtype = value
        dt = getattr(torch, dtype, None)
        if not isinstance(dt, torch.dtype):
            raise QmlirError(f"unknown dtype '{dtype}' in a tensor spec")
        return TensorSpec(tuple(int(s) for s in shape), dt)


# The trailing results of a function that are the new values of arguments it writes in place
# (a graph's input mutations), by argument position: `qmlir.mutated_results = [3, 5]` says the
# last two results are the new values of arguments 3 and 5. After bufferization,
# qmlir-drop-mutated-results writes each into its argument's buffer (nothing to do when it was
# computed there in place) and removes them; callers never see them.
MUTATED_RESULTS_ATTR = "qmlir.mutated_results"


def mutated_results(fn: ir.Operation) -> List[int]:
    """The argument positions of `fn`'s trailing mutated results (qmlir.mutated_results), in order."""
    if MUTATED_RESULTS_ATTR not in fn.attributes:
        return []
    return [ir.IntegerAttr(a).value for a in ir.ArrayAttr(fn.attributes[MUTATED_RESULTS_ATTR])]


def function_name(fn: ir.Operation) -> str:
    return ir.StringAttr(fn.attributes["sym_name"]).value


def entry_function(module: ir.Module, name: str | None = None) -> ir.Operation:
    """The function to run: `name`, else the only public function, else `forward`."""
    funcs = [op.operation for op in module.body.operations
             if op.operation.name == "func.func" and op.operation.regions[0].blocks]
    names = [function_name(f) for f in funcs]
    if name is not None:
        if name not in names:
            raise QmlirError(f"no function '{name}' in the module (functions: {', '.join(names) or 'none'})")
        return funcs[names.index(name)]
    public = [f for f in funcs if "sym_visibility" not in f.attributes]
    if len(public) == 1:
        return public[0]
    if "forward" in names:
        return funcs[names.index("forward")]
    raise QmlirError(f"{len(public)} public functions ({', '.join(names)}); choose one by name")


def _element(t: ir.Type) -> ir.Type:
    """Quantized element types are passed as their storage type (what qmlir-lower-quant makes of them)."""
    return t.storage_type if isinstance(t, quant.QuantizedType) else t


def specs_of(types, what: str) -> List[TensorSpec]:
    specs = []
    for i, t in enumerate(types):
        if not isinstance(t, ir.RankedTensorType) or not t.has_static_shape:
            raise QmlirError(f"{what} {i} has type {t}; only functions on statically shaped tensors can run")
        specs.append(TensorSpec(tuple(t.shape), torch_dtype(_element(t.element_type))))
    return specs


def function_specs(fn: ir.Operation) -> tuple[List[TensorSpec], List[TensorSpec]]:
    """(argument specs, result specs) of a func.func on ranked tensors."""
    ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
    return specs_of(ftype.inputs, "argument"), specs_of(ftype.results, "result")
