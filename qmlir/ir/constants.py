"""Tensor constants: small tensors captured from the graph become dense attributes; tensors
marked with `freeze` (quantization scales, zero points) are known to lowerings at compile time."""
from __future__ import annotations

import numpy as np
import torch
from mlir import ir
from mlir.dialects import arith
from typing import Optional

from qmlir.ir.types import tensor_type


def dense_constant(t: torch.Tensor) -> ir.Value:
    """An arith.constant holding `t`'s values (bit-exact, bf16 and f16 included)."""
    t = t.detach().contiguous().cpu()
    ty = tensor_type(t.shape, t.dtype)
    if t.dtype == torch.bool:
        attr = ir.DenseElementsAttr.get(t.numpy().astype(np.int8), type=ty.element_type, shape=list(t.shape))
    elif t.dtype in (torch.bfloat16, torch.float16):
        raw = t.view(torch.int16).numpy()
        attr = ir.DenseElementsAttr.get(raw, type=ty.element_type, shape=list(t.shape))
    else:
        attr = ir.DenseElementsAttr.get(t.numpy(), type=ty.element_type, shape=list(t.shape))
    return arith.ConstantOp(ty, attr).result


FROZEN_ATTR = "_qmlir_frozen"


def freeze(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Mark `t` as a compile-time constant for the qmlir importer (its value may be read by lowerings)."""
    if t is not None:
        setattr(t, FROZEN_ATTR, True)
    return t


def is_frozen(t: object) -> bool:
    """True for a tensor marked with `freeze`."""
    return isinstance(t, torch.Tensor) and getattr(t, FROZEN_ATTR, False)
