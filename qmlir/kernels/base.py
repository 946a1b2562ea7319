"""What a micro-kernel is, and how its choice is recorded on the IR.

A kernel is one module of this package that registers one `Kernel`: a matcher with its tile
choice (`select(op, threads) -> config | None`), and a body (`expand(module, [(op, config)])`)
that replaces the matched ops. `qmlir-select-kernels` asks the kernels a target's features allow,
in priority order, and records the first one's choice on the op as a discardable attribute

    linalg.matmul {qmlir.kernel = {name = "bf16_dot", mr = 4 : i64, nr = 4 : i64, ...}} ...

(the role of IREE's lowering configs); `qmlir-expand-kernels{stage=...}` then expands every op
by the kernel and config written on it. The attribute is the whole contract: a lit test can
write it by hand, and a new kernel is one new module here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlir import ir

KERNEL_ATTR = "qmlir.kernel"
STAGES = ("tensors", "buffers")

Config = Dict[str, Any]  # str -> int | str | tuple of ints


@dataclass(frozen=True)
class Kernel:
    name: str
    summary: str
    stage: str  # "tensors": expanded before bufferization; "buffers": after it
    features: frozenset  # CPU features the body needs (/proc/cpuinfo flag names)
    priority: int  # higher is asked first, and expanded first within its stage
    ops: Tuple[str, ...]  # op names it may match
    select: Callable[[ir.Operation, int], Optional[Config]]
    expand: Callable[[Any, List[Tuple[ir.Operation, Config]]], int]


_KERNELS: Dict[str, Kernel] = {}


def register_kernel(kernel: Kernel) -> Kernel:
    if kernel.name in _KERNELS:
        raise ValueError(f"kernel {kernel.name} registered twice")
    if kernel.stage not in STAGES:
        raise ValueError(f"kernel {kernel.name}: stage must be one of {STAGES}")
    _KERNELS[kernel.name] = kernel
    return kernel


def all_kernels() -> List[Kernel]:
    """Every kernel, highest priority first."""
    from qmlir import kernels  # noqa: F401  (imports every kernel module)
    return sorted(_KERNELS.values(), key=lambda k: -k.priority)


def kernel_named(name: str) -> Kernel | None:
    from qmlir import kernels  # noqa: F401
    return _KERNELS.get(name)


def _attr(value: Any) -> ir.Attribute:
    i64 = ir.IntegerType.get_signless(64)
    if isinstance(value, bool):
        return ir.IntegerAttr.get(i64, int(value))
    if isinstance(value, int):
        return ir.IntegerAttr.get(i64, value)
    if isinstance(value, str):
        return ir.StringAttr.get(value)
    if isinstance(value, (tuple, list)):
        return ir.DenseI64ArrayAttr.get([int(v) for v in value])
    raise TypeError(f"kernel config value {value!r}: int, str or a sequence of ints expected")


def _value(attr: ir.Attribute) -> Any:
    if isinstance(attr, ir.IntegerAttr):
        return int(attr.value)
    if isinstance(attr, ir.StringAttr):
        return attr.value
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return tuple(int(v) for v in attr)
    raise TypeError(f"unexpected kernel config attribute {attr}")


def record(op: ir.Operation, name: str, config: Config) -> None:
    """Write the choice `name` with `config` on `op` (qmlir.kernel = {name = ..., ...})."""
    entries = {"name": ir.StringAttr.get(name)}
    entries.update({k: _attr(v) for k, v in config.items()})
    op.attributes[KERNEL_ATTR] = ir.DictAttr.get(entries)


def recorded(op: ir.Operation) -> Tuple[str, Config] | None:
    """(kernel name, config) recorded on `op`, or None."""
    if KERNEL_ATTR not in op.attributes:
        return None
    d = ir.DictAttr(op.attributes[KERNEL_ATTR])
    if "name" not in d:
        return None
    values = {a.name: _value(a.attr) for a in d}
    return values.pop("name"), values


def largest_divisor(n: int, limit: int, multiple: int) -> int | None:
    """Largest d <= limit with n % d == 0 and d % multiple == 0."""
    for d in range(min(n, limit), 0, -1):
        if n % d == 0 and d % multiple == 0:
            return d
    return None


def splice(op: ir.Operation, function_text: str, operands: Sequence[ir.Value], returns_result: bool) -> None:
    """Replace `op` by the body of the one function in `function_text`, its arguments bound to
    `operands`. With `returns_result`, the function's returned value replaces op's result.
    (The body is moved, not inlined: the inliner refuses x86vector ops and intrinsic calls,
    which have no inliner interface.)"""
    parsed = ir.Module.parse(function_text)
    block = parsed.body.operations[0].regions[0].blocks[0]
    for arg, value in zip(block.arguments, operands):
        arg.replace_all_uses_with(value)
    body = list(block.operations)
    for inner in body[:-1]:
        inner.operation.move_before(op)
    if returns_result:
        op.results[0].replace_all_uses_with(body[-1].operands[0])
    op.erase()
