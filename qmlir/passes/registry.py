"""The one registry of qmlir passes and named pipelines, shared by torch.compile,
qmlir.compile and qmlir-opt.

A pass is a module in `qmlir/passes/` with a function `run(module, **options)` and one
`register_pass(...)` line giving its command-line name, a one-line summary and its options.
Options are typed; an unknown option or a bad value is a `PassOptionError` naming it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Sequence

from mlir import ir

from qmlir.errors import QmlirError


class PassOptionError(QmlirError):
    """An unknown pass, an unknown option or a value of the wrong type."""


@dataclass(frozen=True)
class Option:
    type: type  # float, int, bool or str
    default: Any
    help: str
    choices: Sequence[str] | None = None

    def parse(self, pass_name: str, key: str, text: str) -> Any:
        try:
            if self.type is bool:
                if text.lower() in ("1", "true", "on", ""):
                    return True
                if text.lower() in ("0", "false", "off"):
                    return False
                raise ValueError(text)
            if self.type is float:
                value = float("inf") if text in ("inf", "+inf") else float(text)
                if math.isnan(value):
                    raise ValueError(text)
                return value
            value = self.type(text)
        except ValueError:
            raise PassOptionError(f"{pass_name}: option '{key}' expects a {self.type.__name__}, got '{text}'") from None
        if self.choices and value not in self.choices:
            raise PassOptionError(f"{pass_name}: option '{key}' must be one of {', '.join(self.choices)}, got '{text}'")
        return value


@dataclass(frozen=True)
class PassSpec:
    name: str
    summary: str
    run: Callable[..., Any]  # run(module: ir.Module, **options)
    options: Dict[str, Option] = field(default_factory=dict)

    def apply(self, module: ir.Module, options: Dict[str, Any] | None = None) -> Any:
        """Run on `module` with command-line style options ('group-size' -> group_size)."""
        values = {k: o.default for k, o in self.options.items()}
        values.update(options or {})
        return self.run(module, **{k.replace("-", "_"): v for k, v in values.items()})

    def parse_options(self, text: str) -> Dict[str, Any]:
        """'threshold=6.0 mode=static' (space-separated, as mlir-opt) -> typed values, defaults filled in."""
        values = {k: o.default for k, o in self.options.items()}
        for item in filter(None, re.split(r"\s+", text.strip())):
            key, _, raw = item.partition("=")
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise PassOptionError(f"{self.name}: unknown option '{key}' (options: {known})")
            values[key] = self.options[key].parse(self.name, key, raw)
        return values


_PASSES: Dict[str, PassSpec] = {}


def register_pass(name: str, summary: str, run: Callable[..., Any], options: Dict[str, Option] | None = None) -> PassSpec:
    if name in _PASSES:
        raise ValueError(f"pass {name} registered twice")
    spec = PassSpec(name, summary, run, dict(options or {}))
    _PASSES[name] = spec
    return spec


def lookup(name: str) -> PassSpec | None:
    _load_all()
    return _PASSES.get(name)


def all_passes() -> list[PassSpec]:
    _load_all()
    return [_PASSES[k] for k in sorted(_PASSES)]


def _load_all() -> None:
    from qmlir.passes import catalog  # noqa: F401  (imports every pass module)


def find_ops(module: ir.Module, *names: str) -> list:
    """Every op named one of `names` in `module`, in walk order (collected before any rewrite)."""
    found = []

    def visit(op):
        if op.name in names:
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found
