"""MLIR-style diagnostics for the command-line tools: `file:line:col: error: message`."""
from __future__ import annotations

import faulthandler
import os
import re
import signal
import sys
import tempfile
import time
from typing import Callable

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
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the permissions open() would give it (mkstemp's are private)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def run_guarded(tool: str, main: Callable[[], int], timeout: float | None = None) -> int:
    """Run `main()` in a forked child process and return its exit status. What MLIR or LLVM
    cannot report as a diagnostic (an assertion that aborts, a crash) then kills only the child:
    the tool prints one error line and exits 1 instead of dying with a signal. Files are written
    whole or not at all (write_atomically), so a child that dies leaves none half-written.
    `timeout` (seconds, for fuzzing) turns a child that runs longer into an error too.
    QMLIR_NO_CRASH_GUARD=1 runs `main()` in this process (for debuggers)."""
    if not hasattr(os, "fork") or os.environ.get("QMLIR_NO_CRASH_GUARD"):
        return _unguarded(tool, main)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = 1
        faulthandler.disable()  # a crash here is reported by the parent, in one line
        try:
            code = _unguarded(tool, main)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return fail(tool, f"gave up after {timeout:g} s")
            time.sleep(0.005)
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return 130
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return fail(tool, f"MLIR stopped with {name} on this input: an assertion or crash inside LLVM/MLIR "
                          "instead of a diagnostic (the input is probably malformed or unsupported); "
                          "nothing was written; please report it")
    return os.WEXITSTATUS(status)


def _unguarded(tool: str, main: Callable[[], int]) -> int:
    try:
        return main()
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a qmlir bug: still one line, and a non-zero exit
        return fail(tool, f"internal error ({type(e).__name__}: {e}); please report it")


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def unclosed_bracket(text: str) -> tuple | None:
    """(line, column, bracket) of the first bracket never closed when the text ends (outside
    string literals and // comments), or None. A truncated file is reported this way before the
    MLIR parser sees it (LLVM 22's parser asserts on some inputs that end inside an op)."""
    stack = []
    line, col, i, n = 1, 1, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':  # string literal, with escapes
            i += 1
            col += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                    col += 1
                if i < n and text[i] == "\n":
                    line, col = line + 1, 0
                i += 1
                col += 1
        elif ch == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in _CLOSERS:
            stack.append((line, col, ch))
        elif ch in ")]}":
            if stack and _CLOSERS[stack[-1][2]] == ch:
                stack.pop()
            else:
                return None  # a stray closer: the parser reports it
        if i < n and text[i] == "\n":
            line, col = line + 1, 0
        i += 1
        col += 1
    return stack[0] if stack else None


# linalg.transpose / linalg.broadcast parse `permutation =` / `dimensions =` with a custom parser
# that, in LLVM 22, aborts (a null attribute) instead of reporting anything but an integer list.
_ARRAY_KEYWORD = re.compile(r"\b(permutation|dimensions)\s*=")
# A linalg structured op's attribute dictionary followed by '<' that does not open a property
# dictionary: LLVM 22's parser casts whatever follows to a dictionary and aborts.
_LINALG_PROPS = re.compile(r"(linalg\.\w+)\s*\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}\s*<(?!\s*\{)")
_COMMENT = re.compile(r"//[^\n]*")
_ARRAY_VALUE = re.compile(r"\s*(\[\s*(-?\d+\s*(,\s*-?\d+\s*)*)?\]|array<i64(\s*:\s*-?\d+(\s*,\s*-?\d+)*)?\s*>)")


def precheck(text: str) -> tuple | None:
    """(line, column, message) for input the MLIR parser is known to abort on instead of
    reporting it (LLVM 22), or None: a file that ends inside an op, and a malformed
    `permutation =` / `dimensions =` list."""
    open_at = unclosed_bracket(text)
    if open_at is not None:
        line, col, bracket = open_at
        return line, col, f"unexpected end of input: '{bracket}' is never closed"
    code = _COMMENT.sub(lambda c: " " * len(c.group(0)), text)  # same offsets, comments blanked
    for m in _ARRAY_KEYWORD.finditer(code):
        if not _ARRAY_VALUE.match(code, m.end()):
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            return line, col, f"expected a list of integers after '{m.group(0)}', like [1, 0]"
    for m in _LINALG_PROPS.finditer(code):
        line = code.count("\n", 0, m.end()) + 1
        col = m.end() - (code.rfind("\n", 0, m.end()) + 1)
        return line, col, f"expected 'ins' or 'outs' after the attributes of {m.group(1)}, got '<'"
    return None
