"""Typed exceptions a user can cause; every CLI and API maps these to one clear message."""
from __future__ import annotations

from collections import Counter
from typing import Iterable


class QmlirError(Exception):
    """Base class of every error qmlir raises on purpose."""


class UnsupportedOp(QmlirError):
    """Raised by a lowering that cannot handle one node: says which node and why."""

    def __init__(self, node: object, reason: str):
        self.node = node
        self.reason = reason
        target = getattr(node, "target", node)
        super().__init__(f"{target}: {reason}")


class UnsupportedOpError(QmlirError):
    """A graph holds ops qmlir cannot lower; lists all of them at once, with counts."""

    def __init__(self, problems: Iterable[tuple[str, str]]):
        self.problems = list(problems)
        counts = Counter(self.problems)
        self.ops = sorted({op for op, _ in self.problems})
        lines = [f"  {op} x{n}: {reason}" for (op, reason), n in sorted(counts.items())]
        super().__init__(
            f"{len(self.ops)} unsupported op(s) in the graph:\n" + "\n".join(lines)
        )


class InputMismatchError(QmlirError, TypeError):
    """A compiled function was called with inputs it was not built for."""


class CompileError(QmlirError):
    """MLIR lowering or JIT compilation failed; carries the MLIR diagnostics."""


class CudaUnavailableError(QmlirError):
    """target='cuda' on a machine without a usable CUDA device, driver or CUDA build of torch."""


class IndexOutOfRangeError(QmlirError, IndexError):
    """A compiled gather read at an index outside its source (as PyTorch raises IndexError): the
    message names the op, its node and source line, and the index. Nothing was read out of bounds
    (the read is clamped in range and the results are discarded)."""
