"""MLIR-style diagnostics for the command-line tools: `file:line:col: error: message`."""
from __future__ import annotations

import os
import re
import sys
import tempfile

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


def read_text(path: str) -> str:
    """The UTF-8 text of `path` (or standard input for '-'); OSError / UnicodeDecodeError as raised."""
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    return data.decode("utf-8")


def write_atomically(path: str, data) -> None:
    """Write `data` (str or bytes) to `path` whole or not at all: a temporary file in the same
    directory, renamed over `path` once complete (a failure leaves any old file as it was)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".qmlir-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
