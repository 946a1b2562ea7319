"""Pipelines as data: 'builtin.module(qmlir-pass{opt=v}, canonicalize, func.func(cse, qmlir-lower-quant))'.

`Pipeline.parse(text)` reads a textual pipeline in which qmlir passes, named pipelines and
upstream MLIR passes mix; named pipelines expand in place into their stages, so
`str(pipeline)` is the whole pipeline as one `--pass-pipeline` string. `pass_manager()` builds
one MLIR `PassManager`: upstream elements are added as text, each qmlir pass with
`PassManager.add(callable)`, so MLIR verifies the IR after every pass and its instrumentation
(`enable_ir_printing`, timing) sees qmlir passes like any other.

Nesting: the Python bindings expose no nested pass managers, so a qmlir pass written inside
`func.func(...)` runs as one module-level pass over every function (qmlir's function passes
only rewrite inside functions, so this is what nesting means for them); a module-anchored qmlir
pass (one that adds or removes functions) inside `func.func(...)` is an error. Upstream passes
keep their nesting as written.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from mlir import ir, passmanager

from qmlir.errors import CompileError, QmlirError
from qmlir.passes import registry


class PipelineError(QmlirError):
    """A malformed pipeline, an unknown pass or a bad option."""


@dataclass(frozen=True)
class Stage:
    """One pipeline element: a qmlir pass with typed options, an upstream pass (its text), or an
    op anchor (`func.func(...)`) holding nested stages."""

    text: str  # the element as written (upstream) or the pass name (qmlir) or the anchor op name
    spec: Optional[registry.PassSpec] = None
    values: Optional[Tuple[Tuple[str, Any], ...]] = None
    nested: Optional[Tuple["Stage", ...]] = None

    def __str__(self) -> str:
        if self.nested is not None:
            return f"{self.text}({','.join(str(s) for s in self.nested)})"
        if self.spec is not None:
            return self.spec.name + registry.render_options(self.spec.options, dict(self.values or ()))
        return self.text

    def walk(self):
        yield self
        for s in self.nested or ():
            yield from s.walk()


def split_top_level(text: str) -> List[str]:
    """Split 'a, b{x=1,y=2}, func.func(c, d)' at commas outside braces and parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '{ch}' in pass pipeline '{text}'")
        if ch == "," and depth == 0:
            if not "".join(cur).strip():
                raise PipelineError(f"empty element in pass pipeline '{text}'")
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise PipelineError(f"unbalanced brackets in pass pipeline '{text}'")
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    elif parts:
        raise PipelineError(f"empty element in pass pipeline '{text}'")
    return parts


def _parse_elements(text: str, anchor: str) -> List[Stage]:
    stages: List[Stage] = []
    for element in split_top_level(text):
        name, paren, inner = element.partition("(")
        if paren and "{" not in name:
            if not inner.rstrip().endswith(")"):
                raise PipelineError(f"malformed nesting '{element}'")
            op_name = name.strip()
            if "." not in op_name and op_name != "any":
                raise PipelineError(f"'{op_name}(...)': nest passes under an operation name (func.func, "
                                    "gpu.module, builtin.module)")
            stages.append(Stage(op_name, nested=tuple(_parse_elements(inner.rstrip()[:-1], op_name))))
            continue
        name, brace, rest = element.partition("{")
        name = name.strip()
        if brace and not rest.rstrip().endswith("}"):
            raise PipelineError(f"malformed options for {name}: '{element}'")
        options = rest.rstrip()[:-1] if brace else ""
        named = registry.lookup_pipeline(name)
        if named is not None:
            for stage_text in named.stages(named.parse_options(options)):
                stages.extend(_parse_elements(stage_text, anchor))
            continue
        spec = registry.lookup(name)
        if spec is None:
            stages.append(Stage(element.strip()))
            continue
        if anchor not in ("builtin.module", "any") and (spec.anchor != "func.func" or anchor != "func.func"):
            raise PipelineError(f"{name} runs on {spec.anchor}; it cannot be nested in {anchor}(...)")
        stages.append(Stage(name, spec, tuple(spec.parse_options(options).items())))
    return stages


@dataclass(frozen=True)
class Pipeline:
    stages: Tuple[Stage, ...]

    @staticmethod
    def parse(text: str) -> "Pipeline":
        text = text.strip()
        for anchor in ("builtin.module", "any"):
            if text.startswith(anchor + "(") and text.endswith(")"):
                text = text[len(anchor) + 1:-1]
                break
        return Pipeline(tuple(_parse_elements(text, "builtin.module")))

    @staticmethod
    def of(*texts: str) -> "Pipeline":
        """A pipeline from element texts (each may itself be a list: 'a, b{x=1}')."""
        return Pipeline.parse(",".join(t for t in texts if t.strip()))

    def __str__(self) -> str:
        return "builtin.module(" + ",".join(str(s) for s in self.stages) + ")"

    def __add__(self, other: "Pipeline") -> "Pipeline":
        return Pipeline(self.stages + other.stages)

    def qmlir_passes(self) -> List[registry.PassSpec]:
        """The qmlir passes this pipeline runs (with repeats), in order."""
        return [s.spec for top in self.stages for s in top.walk() if s.spec is not None]

    def pass_manager(self, context: ir.Context, print_after_all: bool = False, timing: bool = False
                     ) -> passmanager.PassManager:
        """One MLIR PassManager for the whole pipeline (a PipelineError if an upstream pass or its
        options do not exist)."""
        pm = passmanager.PassManager("builtin.module", context=context)
        upstream: List[str] = []

        def flush():
            if upstream:
                for element in upstream:
                    _check_nested_pipelines(element, context)
                text = ",".join(upstream)
                try:
                    pm.add(text)
                except ValueError as e:
                    raise _upstream_error(upstream, context, e) from None
                upstream.clear()

        for stage in self.stages:
            groups = [stage] if stage.nested is None else _split_nested(stage)
            for g in groups:
                if g.spec is None:
                    upstream.append(str(g))
                else:
                    flush()
                    pm.add(_as_mlir_pass(g.spec, dict(g.values or ())), name=g.spec.name, argument=g.spec.name,
                           description=g.spec.summary)
        flush()
        if print_after_all:
            pm.enable_ir_printing(print_after_all=True)
        if timing:
            pm.enable_timing()
        return pm

    def run(self, module: ir.Module, what: str = "pass pipeline") -> None:
        """Run on `module` in place; diagnostics of upstream passes become a CompileError
        starting with `what`; qmlir passes raise their own typed errors."""
        pm = self.pass_manager(module.context)
        try:
            pm.run(module.operation)
        except ir.MLIRError as e:
            raise CompileError(f"{what} failed: {e}") from None


# Options of upstream passes whose value is itself a pass pipeline, parsed by the pass only when
# it runs: a bad one printed an error there and the run went on (exit status 0).
_PIPELINE_OPTIONS = ("default-pipeline=",)


def _option_value(text: str, start: int) -> str:
    """The option value starting at `start`: up to a space or the option list's closing brace."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "{(":
            depth += 1
        elif c in "})":
            if depth == 0:
                break
            depth -= 1
        elif c == " " and depth == 0:
            break
        i += 1
    return text[start:i]


def _check_nested_pipelines(element: str, context: ir.Context) -> None:
    """PipelineError for an option of `element` that names a pipeline MLIR cannot parse."""
    for option in _PIPELINE_OPTIONS:
        at = element.find(option)
        if at < 0 or "{" not in element[:at]:
            continue
        value = _option_value(element, at + len(option))
        try:
            passmanager.PassManager.parse(f"builtin.module(func.func({value}))", context=context)
        except ValueError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else "invalid pipeline"
            raise PipelineError(f"bad pipeline in option {option}{value} of '{element}': {msg}") from None


def _upstream_error(elements: List[str], context: ir.Context, error: ValueError) -> PipelineError:
    """The error naming the first upstream element MLIR cannot parse on its own."""
    for element in elements:
        try:
            passmanager.PassManager.parse(f"builtin.module({element})", context=context)
        except ValueError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else "invalid pass"
            return PipelineError(f"unknown pass or bad options '{element}': {msg}")
    msg = str(error).strip().splitlines()[0] if str(error).strip() else "invalid pass"
    return PipelineError(f"unknown pass or bad options in '{','.join(elements)}': {msg}")


def _split_nested(stage: Stage) -> List[Stage]:
    """An anchor's stages as runs of upstream passes (kept nested) and qmlir passes (module-level)."""
    out: List[Stage] = []
    run: List[Stage] = []
    for s in stage.nested:
        if s.spec is None:
            run.append(s)
            continue
        if run:
            out.append(Stage(stage.text, nested=tuple(run)))
            run = []
        out.append(s)
    if run:
        out.append(Stage(stage.text, nested=tuple(run)))
    return out


class ModuleView:
    """What a qmlir pass sees of the module op it runs on (the API of `ir.Module` it uses)."""

    def __init__(self, op: ir.Operation):
        self.operation = op

    @property
    def body(self) -> ir.Block:
        return self.operation.regions[0].blocks[0]

    @property
    def context(self) -> ir.Context:
        return self.operation.context

    def __str__(self) -> str:
        return str(self.operation)


def _as_mlir_pass(spec: registry.PassSpec, values: Dict[str, Any]):
    kwargs = {k.replace("-", "_"): v for k, v in values.items()}

    def run(op, _pass) -> None:
        with op.context, ir.Location.unknown():
            try:
                spec.run(ModuleView(op), **kwargs)
            except ir.MLIRError as e:
                raise CompileError(f"{spec.name} failed: {e}") from None

    run.__name__ = spec.name
    return run


def apply_pipeline(module: ir.Module, text: str) -> None:
    """Parse `text`, check every pass exists, and run it on `module`."""
    Pipeline.parse(text).run(module)
