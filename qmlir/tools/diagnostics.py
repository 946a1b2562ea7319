"""MLIR-style diagnostics for the command-line tools: `file:line:col: error: message`."""
from __future__ import annotations

import re
import sys

from mlir import ir

_LOC = re.compile(r'loc\("([^"]*)":(\d+):(\d+)\)')


def location_prefix(loc: str, filename: str) -> str:
    """'loc("-":3:5)' -> 'input.mlir:3:5' (the parser names its buffer "-")."""
    m = _LOC.search(loc)
    if not m:
        return filename
    name = filename if m.group(1) in ("-", "") else m.group(1)
    return f"{name}:{m.group(2)}:{m.group(3)}"


def report_mlir_error(tool: str, err: ir.MLIRError, filename: str) -> None:
    diags = list(err.error_diagnostics)
    if not diags:
        print(f"{tool}: error: {err.message}", file=sys.stderr)
    for d in diags:
        print(f"{location_prefix(str(d.location), filename)}: error: {d.message}", file=sys.stderr)
        for note in d.notes:
            print(f"{location_prefix(str(note.location), filename)}: note: {note.message}", file=sys.stderr)


def fail(tool: str, message: str) -> int:
    print(f"{tool}: error: {message}", file=sys.stderr)
    return 1
