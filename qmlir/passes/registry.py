"""The one registry of qmlir passes and named pipelines, shared by torch.compile, qmlir.compile,
the targets and qmlir-opt.

A pass is a module in `qmlir/passes/` with a function `run(module, **options)` and one
`register_pass(...)` line giving its command-line name, a one-line summary, its typed options
and its anchor: "func.func" (it rewrites inside functions: it may be nested in `func.func(...)`)
or "builtin.module" (it adds or removes functions, or reads the whole module). A pipeline
(qmlir/passes/pipeline.py) adds each pass to an MLIR `PassManager` with
`PassManager.add(callable)`: qmlir passes are MLIR passes, verified after each run and seen by
MLIR's instrumentation, in one pass manager with the upstream passes.

A named pipeline (`register_pipeline`) is a list of stages built from its options; it expands
where it is named, so `qmlir-opt --qmlir-lower-to-cpu --dump-pass-pipeline` prints every stage.
Options are typed; an unknown option or a bad value is a `PassOptionError` naming it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence


from qmlir.errors import QmlirError

ANCHORS = ("func.func", "builtin.module")


class PassOptionError(QmlirError):
    """An unknown pass, an unknown option or a value of the wrong type."""


@dataclass(frozen=True)
class Option:
    type: type  # float, int, bool or str
    default: Any
    help: str
    choices: Sequence[str] | None = None
    minimum: float | None = None  # for int and float options: the least value accepted
    maximum: float | None = None
    # (option, value) this option only means something with: a value other than the default given
    # while that option has another value is an error (e.g. group-size without granularity=group)
    requires: tuple | None = None

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
        if self.type in (int, float) and (self.minimum is not None and value < self.minimum
                                          or self.maximum is not None and value > self.maximum):
            lo = "" if self.minimum is None else f">= {self.minimum:g}"
            hi = "" if self.maximum is None else f"<= {self.maximum:g}"
            raise PassOptionError(f"{pass_name}: option '{key}' must be {' and '.join(x for x in (lo, hi) if x)}, "
                                  f"got '{text}'")
        return value

    def render(self, value: Any) -> str:
        if self.type is bool:
            return "true" if value else "false"
        return str(value)


def _parse_options(name: str, options: Dict[str, Option], text: str) -> Dict[str, Any]:
    """'threshold=6.0 mode=static' (space-separated, as mlir-opt) -> typed values, defaults filled in."""
    values = {k: o.default for k, o in options.items()}
    for item in filter(None, re.split(r"\s+", text.strip())):
        key, _, raw = item.partition("=")
        if key not in options:
            known = ", ".join(options) or "none"
            raise PassOptionError(f"{name}: unknown option '{key}' (options: {known})")
        values[key] = options[key].parse(name, key, raw)
    for key, o in options.items():
        if o.requires and values[key] != o.default and values[o.requires[0]] != o.requires[1]:
            raise PassOptionError(f"{name}: option '{key}={o.render(values[key])}' has no effect unless "
                                  f"{o.requires[0]}={o.requires[1]} (got {o.requires[0]}={values[o.requires[0]]})")
    return values


def render_options(options: Dict[str, Option], values: Dict[str, Any]) -> str:
    """Typed values -> '{key=value ...}' (every option, so the text says all), or '' without options."""
    if not options:
        return ""
    return "{" + " ".join(f"{k}={o.render(values.get(k, o.default))}" for k, o in options.items()) + "}"


@dataclass(frozen=True)
class PassSpec:
    name: str
    summary: str
    run: Callable[..., Any]  # run(module, **options); module has .operation, .body, .context
    options: Dict[str, Option] = field(default_factory=dict)
    anchor: str = "func.func"

    def apply(self, module, options: Dict[str, Any] | None = None) -> Any:
        """Run on `module` directly (not through a pass manager), with command-line style
        options ('group-size' -> group_size)."""
        values = {k: o.default for k, o in self.options.items()}
        values.update(options or {})
        return self.run(module, **{k.replace("-", "_"): v for k, v in values.items()})

    def parse_options(self, text: str) -> Dict[str, Any]:
        return _parse_options(self.name, self.options, text)


@dataclass(frozen=True)
class PipelineSpec:
    """A named pipeline: `build(**options)` returns its stages as pipeline element texts."""

    name: str
    summary: str
    build: Callable[..., List[str]]
    options: Dict[str, Option] = field(default_factory=dict)

    def parse_options(self, text: str) -> Dict[str, Any]:
        return _parse_options(self.name, self.options, text)

    def stages(self, values: Dict[str, Any]) -> List[str]:
        return self.build(**{k.replace("-", "_"): v for k, v in values.items()})


_PASSES: Dict[str, PassSpec] = {}
_PIPELINES: Dict[str, PipelineSpec] = {}


def register_pass(name: str, summary: str, run: Callable[..., Any], options: Dict[str, Option] | None = None,
                  anchor: str = "func.func") -> PassSpec:
    if name in _PASSES or name in _PIPELINES:
        raise ValueError(f"pass {name} registered twice")
    if anchor not in ANCHORS:
        raise ValueError(f"pass {name}: anchor must be one of {ANCHORS}")
    spec = PassSpec(name, summary, run, dict(options or {}), anchor)
    _PASSES[name] = spec
    return spec


def register_pipeline(name: str, summary: str, build: Callable[..., List[str]],
                      options: Dict[str, Option] | None = None) -> PipelineSpec:
    if name in _PASSES or name in _PIPELINES:
        raise ValueError(f"pipeline {name} registered twice")
    spec = PipelineSpec(name, summary, build, dict(options or {}))
    _PIPELINES[name] = spec
    return spec


def lookup(name: str) -> PassSpec | None:
    _load_all()
    return _PASSES.get(name)


def lookup_pipeline(name: str) -> PipelineSpec | None:
    _load_all()
    return _PIPELINES.get(name)


def all_passes() -> list:
    """Every pass and named pipeline, by name."""
    _load_all()
    entries = {**_PASSES, **_PIPELINES}
    return [entries[k] for k in sorted(entries)]


def _load_all() -> None:
    from qmlir.passes import catalog  # noqa: F401  (imports every pass module)

