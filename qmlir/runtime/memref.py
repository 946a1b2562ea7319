"""Ranked memref descriptors built straight from torch tensors (no numpy, any dtype).

MLIR's C interface passes a memref as {allocated, aligned, offset, sizes[rank], strides[rank]}.
Descriptor classes are made once per rank and reused: `mlir.runtime`'s helper defines a
new ctypes class on every call, which costs tens of microseconds.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache

import torch


@lru_cache(maxsize=None)
def descriptor_type(rank: int) -> type:
    fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64)]
    if rank:
        fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


def make_descriptor(shape: tuple) -> ctypes.Structure:
    """A descriptor for a contiguous tensor of `shape`; only the pointers change per call."""
    desc = descriptor_type(len(shape))()
    if shape:
        stride, strides = 1, []
        for s in reversed(shape):
            strides.append(stride)
            stride *= s
        desc.sizes[:] = list(shape)
        desc.strides[:] = list(reversed(strides))
    return desc


def point_at(desc: ctypes.Structure, t: torch.Tensor) -> None:
    ptr = t.data_ptr()
    desc.allocated = ptr
    desc.aligned = ptr
