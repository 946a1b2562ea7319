"""qmlir-opt: mlir-opt for qmlir. Reads a .mlir file, runs a pipeline that mixes qmlir passes
and any upstream MLIR pass, and prints the result.

    qmlir-opt in.mlir --qmlir-lower-quant --canonicalize -o out.mlir
    qmlir-opt in.mlir --pass-pipeline='builtin.module(qmlir-lower-quant, func.func(cse))'
    qmlir-opt in.mlir --qmlir-lower-to-cpu --dump-pass-pipeline -o /dev/null
    qmlir-opt --list-passes
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence, Tuple

from mlir import ir

from qmlir import target  # noqa: F401  (registers the targets' named pipelines)
from qmlir.errors import QmlirError
from qmlir.passes import registry
from qmlir.passes.pipeline import Pipeline
from qmlir.passes.pipeline import PipelineError as UsageError
from qmlir.tools.diagnostics import (fail, location_prefix, read_text, report_mlir_error, run_guarded,
                                     precheck, write_atomically)

TOOL = "qmlir-opt"
SPLIT_MARKER = "// -----"

USAGE = f"""usage: {TOOL} [FILE|-] [-o OUT] [PASS FLAGS...] [--pass-pipeline='builtin.module(...)']
                 [--split-input-file] [--mlir-print-ir-after-all] [--dump-pass-pipeline]
                 [--mlir-timing] [--list-passes] [--help]

Runs passes over a .mlir file, in the order given, and prints the result (mlir-opt conventions).
A pass flag is --NAME or --NAME='OPTIONS' for any qmlir pass or named pipeline below or any
upstream MLIR pass (--canonicalize, --cse, --one-shot-bufferize='bufferize-function-boundaries' ...).
All of them run in one MLIR pass manager, which verifies the IR after every pass.

options:
  FILE                        input .mlir file, or - for standard input (default: -)
  -o OUT                      write the result to OUT instead of standard output
  --pass-pipeline=PIPELINE    a textual pipeline, 'builtin.module(p1, p2{{opt=v}}, func.func(p3))',
                              mixing qmlir and upstream passes
  --split-input-file          process each '{SPLIT_MARKER}'-separated chunk on its own
  --mlir-print-ir-after-all   print the IR after every pass to standard error (MLIR's instrumentation)
  --dump-pass-pipeline        print the whole pipeline (named pipelines expanded) to standard error
  --mlir-timing               print MLIR's pass timing report to standard error
  --mlir-print-debuginfo      print locations
  --list-passes               list qmlir's passes and named pipelines with their options
  -h, --help                  this help
"""


def parse_args(argv: Sequence[str]) -> Tuple[dict, Pipeline]:
    opts = {"input": "-", "output": None, "split": False, "print_after_all": False, "debuginfo": False,
            "list": False, "help": False, "dump_pipeline": False, "timing": False}
    pipeline = Pipeline(())
    args = list(argv)
    positional = []
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            opts["help"] = True
        elif a == "-o":
            if not args:
                raise UsageError("-o needs a file name")
            opts["output"] = args.pop(0)
        elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
            opts["output"] = a[2:]
        elif a == "--split-input-file":
            opts["split"] = True
        elif a == "--mlir-print-ir-after-all":
            opts["print_after_all"] = True
        elif a == "--mlir-print-debuginfo":
            opts["debuginfo"] = True
        elif a == "--list-passes":
            opts["list"] = True
        elif a == "--dump-pass-pipeline":
            opts["dump_pipeline"] = True
        elif a == "--mlir-timing":
            opts["timing"] = True
        elif a.startswith("--pass-pipeline"):
            _, eq, value = a.partition("=")
            if not eq:
                if not args:
                    raise UsageError("--pass-pipeline needs a value")
                value = args.pop(0)
            pipeline = pipeline + Pipeline.parse(value)
        elif a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            value = value.strip().strip("'\"")
            if not name or any(c in name for c in "(){},"):
                raise UsageError(f"malformed pass flag '{a}'")
            pipeline = pipeline + Pipeline.parse(f"{name}{{{value}}}" if eq and value else name)
        elif a == "-" or not a.startswith("-"):
            positional.append(a)
        else:
            raise UsageError(f"unknown option '{a}' (see --help)")
    if len(positional) > 1:
        raise UsageError(f"one input file expected, got {len(positional)}: {' '.join(positional)}")
    if positional:
        opts["input"] = positional[0]
    return opts, pipeline


def list_passes() -> str:
    lines = ["qmlir passes and named pipelines (each also a flag: --NAME or --NAME='opt=value ...'):", ""]
    for spec in registry.all_passes():
        anchor = f" [{spec.anchor}]" if getattr(spec, "anchor", "func.func") != "func.func" else ""
        lines.append(f"  {spec.name:32} {spec.summary}{anchor}")
        for key, o in spec.options.items():
            choices = f" ({'|'.join(o.choices)})" if o.choices else ""
            setting = f"{key}={o.default}"
            lines.append(f"      {setting:<30} {o.type.__name__}{choices}: {o.help}")
    lines.append("")
    lines.append("Any upstream MLIR pass works too (mlir-opt --help lists them).")
    return "\n".join(lines)


def process(text: str, filename: str, pm, opts: dict, context: ir.Context) -> Optional[str]:
    bad = precheck(text)
    if bad is not None:
        print(f"{filename}:{bad[0]}:{bad[1]}: error: {bad[2]}", file=sys.stderr)
        return None
    try:
        module = ir.Module.parse(text, context=context)
    except ir.MLIRError as e:
        report_mlir_error(TOOL, e, filename)
        return None
    try:
        pm.run(module.operation)
        module.operation.verify()
    except ir.MLIRError as e:
        report_mlir_error(TOOL, e, filename)
        return None
    except QmlirError as e:
        print(f"{_relocate(str(e), filename)}" if str(e).startswith("loc(") else f"{filename}: error: {e}",
              file=sys.stderr)
        return None
    return module.operation.get_asm(enable_debug_info=opts["debuginfo"])


def _relocate(message: str, filename: str) -> str:
    loc, _, rest = message.partition(": ")
    return f"{location_prefix(loc, filename)}: error: {rest}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts, pipeline = parse_args(argv)
    except QmlirError as e:
        return fail(TOOL, str(e))
    if opts["help"]:
        print(USAGE)
        print(list_passes())
        return 0
    if opts["list"]:
        print(list_passes())
        return 0
    context = ir.Context()
    context.allow_unregistered_dialects = False
    try:
        pm = pipeline.pass_manager(context, print_after_all=opts["print_after_all"], timing=opts["timing"])
    except QmlirError as e:
        return fail(TOOL, str(e))
    if opts["dump_pipeline"]:
        print(pipeline, file=sys.stderr)
    filename = opts["input"]
    try:
        text = read_text(filename)
    except OSError as e:
        return fail(TOOL, f"cannot read '{filename}': {e.strerror}")
    except UnicodeDecodeError as e:
        return fail(TOOL, f"'{filename}' is not UTF-8 text (byte {e.start}); .mlir files are UTF-8")
    chunks = text.split(SPLIT_MARKER) if opts["split"] else [text]
    outputs, status = [], 0
    line_offset = 0
    for chunk in chunks:
        # keep line numbers right in diagnostics: pad each chunk with the lines before it
        result = process("\n" * line_offset + chunk, "-" if filename == "-" else filename, pm, opts, context)
        line_offset += chunk.count("\n")
        if result is None:
            status = 1
        else:
            outputs.append(result.rstrip("\n"))
    out_text = ("\n" + SPLIT_MARKER + "\n").join(outputs) + "\n"
    if opts["output"]:
        if status != 0:  # a file is written whole or not at all: never a partial result
            return fail(TOOL, f"not writing '{opts['output']}': {len(chunks) - len(outputs)} of {len(chunks)} "
                              "input(s) failed")
        try:
            write_atomically(opts["output"], out_text)
        except OSError as e:
            return fail(TOOL, f"cannot write '{opts['output']}': {e.strerror}")
    elif status == 0 or opts["split"]:
        sys.stdout.write(out_text)
    return status


def entry() -> None:
    """Console entry point: no Python traceback and no signal for anything a user can cause."""
    sys.exit(run_guarded(TOOL, main))


if __name__ == "__main__":
    entry()
