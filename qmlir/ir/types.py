"""The one mapping between torch dtypes and MLIR element types."""
from __future__ import annotations

import torch
from mlir import ir

from qmlir.errors import QmlirError

_FLOAT = {
    torch.float32: ir.F32Type.get,
    torch.float64: ir.F64Type.get,
    torch.bfloat16: ir.BF16Type.get,
    torch.float16: ir.F16Type.get,
}
_INT_WIDTH = {
    torch.int64: 64,
    torch.int32: 32,
    torch.int16: 16,
    torch.int8: 8,
    torch.bool: 8,  # stored as bytes, like torch; i1 only inside computations (scalar_type)
}

SUPPORTED_DTYPES = tuple(_FLOAT) + tuple(_INT_WIDTH)


def element_type(dtype: torch.dtype) -> ir.Type:
    """MLIR storage element type for a torch dtype (signless integers; bool is stored as i8,
    because LLVM 22's memref lowering cannot store i1)."""
    if dtype in _FLOAT:
        return _FLOAT[dtype]()
    if dtype in _INT_WIDTH:
        return ir.IntegerType.get_signless(_INT_WIDTH[dtype])
    raise QmlirError(f"unsupported dtype {dtype}; qmlir supports {', '.join(map(str, SUPPORTED_DTYPES))}")


def scalar_type(dtype: torch.dtype) -> ir.Type:
    """The type a value of `dtype` has inside a computation: i1 for bool, else the storage type."""
    return ir.IntegerType.get_signless(1) if dtype == torch.bool else element_type(dtype)


def tensor_type(shape, dtype: torch.dtype) -> ir.RankedTensorType:
    return ir.RankedTensorType.get([int(s) for s in shape], element_type(dtype))


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype PyTorch's CPU kernels compute in: bf16/f16 are upcast to f32, rounded once at the end."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def torch_dtype(t: ir.Type) -> torch.dtype:
    """Inverse of element_type for storage types (i8 reads as int8; i1, a computed value, as bool)."""
    if isinstance(t, ir.RankedTensorType):
        t = t.element_type
    for dtype, make in _FLOAT.items():
        if t == make():
            return dtype
    if isinstance(t, ir.IntegerType):
        widths = {64: torch.int64, 32: torch.int32, 16: torch.int16, 8: torch.int8, 1: torch.bool}
        if t.width in widths:
            return widths[t.width]
        raise QmlirError(f"no torch dtype for MLIR type {t}: tensors crossing a function boundary must be "
                         "8, 16, 32 or 64-bit integers (i1 inside computations)")
    raise QmlirError(f"no torch dtype for MLIR type {t}")
