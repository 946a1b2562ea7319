"""Checks of tensor-level IR that need no run: what would otherwise crash the compiled code or
the process (an LLVM assertion, a segmentation fault, an allocation that cannot succeed).

- `tensor.extract` / `tensor.insert` at a constant index outside a static dimension: the
  compiled code would read or write outside the tensor;
- a tensor of more bytes than this machine has memory: a constant that cannot be materialized,
  an intermediate that cannot be allocated.

`static_errors(module)` returns one message per problem, with the op's location.
"""
from __future__ import annotations

import math
import os
from typing import List

from mlir import ir

_INDEXED = {"tensor.extract": (0, 1), "tensor.insert": (1, 2)}  # op -> (tensor operand, first index operand)


def memory_bytes() -> int:
    """This machine's physical memory in bytes (a large number where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


def _constant_index(v: ir.Value):
    if isinstance(v, ir.OpResult) and v.owner.name == "arith.constant":
        attr = v.owner.attributes["value"]
        if isinstance(attr, ir.IntegerAttr):
            return ir.IntegerAttr(attr).value
    return None


def _bytes(t: ir.RankedTensorType) -> int:
    et = t.element_type
    width = getattr(et, "width", None)
    if width is None:
        try:
            width = ir.IntegerType(et).width
        except ValueError:
            width = 32
    return math.prod(t.shape) * max(1, width) // 8


def static_errors(module: ir.Module, limit_bytes: int | None = None) -> List[str]:
    limit = memory_bytes() if limit_bytes is None else limit_bytes
    errors: List[str] = []

    def visit(op):
        name = op.name
        if name == "func.func":
            ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
            for what, types in (("argument", ftype.inputs), ("result", ftype.results)):
                for i, t in enumerate(types):
                    if isinstance(t, ir.RankedTensorType) and t.has_static_shape and _bytes(t) > limit:
                        errors.append(f"{op.location}: {what} {i} of @{ir.StringAttr(op.attributes['sym_name']).value}"
                                      f" is a {t} of {_bytes(t) / 2 ** 30:.1f} GiB, more than this machine's "
                                      f"{limit / 2 ** 30:.1f} GiB of memory")
        if name in _INDEXED:
            t_pos, first = _INDEXED[name]
            t = op.operands[t_pos].type
            if isinstance(t, ir.RankedTensorType):
                for d, v in enumerate(list(op.operands)[first:]):
                    i = _constant_index(v)
                    size = t.shape[d] if d < t.rank else None
                    if i is not None and size is not None and not ir.ShapedType.is_dynamic_size(size) \
                            and not 0 <= i < size:
                        errors.append(f"{op.location}: {name} at index {i} of dimension {d} with size {size} "
                                      f"(type {t}): out of bounds")
        for r in op.results:
            t = r.type
            if isinstance(t, ir.RankedTensorType) and t.has_static_shape and _bytes(t) > limit:
                errors.append(f"{op.location}: {name} makes a {t} of {_bytes(t) / 2 ** 30:.1f} GiB, more than "
                              f"this machine's {limit / 2 ** 30:.1f} GiB of memory")
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return errors
