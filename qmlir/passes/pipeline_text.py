"""Textual pass pipelines: 'builtin.module(qmlir-pass{opt=v}, canonicalize, func.func(cse))'.

qmlir passes and upstream MLIR passes mix in one string. Consecutive upstream passes run in one
PassManager; each qmlir pass (Python) runs in between. Used by qmlir-opt, qmlir.compile and
the torch.compile backend (`passes=`), so the three doors run the same passes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

from mlir import ir, passmanager

from qmlir.errors import QmlirError
from qmlir.passes import registry


class PipelineError(QmlirError):
    """A malformed pipeline, an unknown pass or a bad option."""


@dataclass
class Step:
    """One pipeline element: a qmlir pass (Python) or a run of upstream pass text."""

    text: str
    qmlir: Optional[registry.PassSpec] = None
    options: Optional[dict] = None


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
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise PipelineError(f"unbalanced brackets in pass pipeline '{text}'")
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def parse_element(element: str) -> Step:
    name, brace, rest = element.partition("{")
    name = name.strip()
    spec = registry.lookup(name)
    if spec is None:
        return Step(element)
    if brace and not rest.rstrip().endswith("}"):
        raise PipelineError(f"malformed options for {name}: '{element}'")
    options = spec.parse_options(rest.rstrip()[:-1] if brace else "")
    return Step(element, spec, options)


def parse_pipeline(text: str) -> List[Step]:
    text = text.strip()
    if text.startswith("builtin.module(") and text.endswith(")"):
        text = text[len("builtin.module("):-1]
    elif text.startswith("any(") and text.endswith(")"):
        text = text[len("any("):-1]
    return [parse_element(e) for e in split_top_level(text)]


def check_upstream(steps: Sequence[Step], context: ir.Context) -> None:
    """Fail before touching the IR if an upstream pass or option does not exist."""
    for s in steps:
        if s.qmlir is None:
            try:
                passmanager.PassManager.parse(f"builtin.module({s.text})", context=context)
            except ValueError as e:
                msg = str(e).strip().splitlines()[0] if str(e).strip() else "invalid pass"
                raise PipelineError(f"unknown pass or bad options '{s.text}': {msg}") from None


def run_steps(module: ir.Module, steps: Sequence[Step], print_after_all: bool) -> None:
    """Consecutive upstream passes share one PassManager; each qmlir pass runs in between."""
    i = 0
    while i < len(steps):
        if steps[i].qmlir is not None:
            step = steps[i]
            with module.context, ir.Location.unknown():
                step.qmlir.apply(module, step.options)
            if print_after_all:
                print(f"// -----// IR Dump After {step.qmlir.name} //----- //", file=sys.stderr)
                print(module, file=sys.stderr)
            i += 1
            continue
        j = i
        while j < len(steps) and steps[j].qmlir is None:
            j += 1
        pm = passmanager.PassManager.parse("builtin.module(" + ",".join(s.text for s in steps[i:j]) + ")",
                                           context=module.context)
        if print_after_all:
            pm.enable_ir_printing(print_after_all=True)
        pm.run(module.operation)
        i = j




def apply_pipeline(module: ir.Module, text: str) -> None:
    """Parse `text`, check every pass exists, and run it on `module`."""
    steps = parse_pipeline(text)
    check_upstream(steps, module.context)
    run_steps(module, steps, print_after_all=False)
