"""On-disk cache of compiled artifacts, so that a second process skips qmlir's lowering pipeline.

What is cached is the whole artifact (qmlir/runtime/artifact.py: the LLVM-dialect module as MLIR
bytecode, its signature, what loading it needs), keyed by the tensor-level IR, the target and
its pipeline, and a fingerprint of the code that shapes the lowering (derived from imports in
qmlir/target/compile.py) and of the MLIR build, so a change to any of them misses. A hit skips
bufferization, tiling and the conversions; the machine code LLVM then makes of it is cached by
the runtime beside it (qmlir/runtime/objects.py).

Location: `$QMLIR_CACHE_DIR` if set, else `$XDG_CACHE_HOME/qmlir`, else `~/.cache/qmlir`.
`QMLIR_CACHE_DIR=off` disables it. Entries are written atomically (temporary file + rename);
an unreadable entry is treated as a miss and rewritten.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from qmlir.paths import cache_dir  # noqa: F401  (one location for every cache)

_SUFFIX = ".qmlir-artifact"


def key(mlir_text: str, settings: str, fingerprint: str) -> str:
    h = hashlib.sha256(fingerprint.encode())
    h.update(settings.encode())
    h.update(b"\n")
    h.update(mlir_text.encode())
    return h.hexdigest()


def load(k: str) -> bytes | None:
    """The cached artifact bytes for key `k`, or None."""
    d = cache_dir()
    if d is None:
        return None
    try:
        return (d / f"{k}{_SUFFIX}").read_bytes()
    except OSError:
        return None


def store(k: str, data: bytes) -> None:
    """Write `data` under key `k`; failures to write are ignored (a cache)."""
    d = cache_dir()
    if d is None:
        return
    tmp = None
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, d / f"{k}{_SUFFIX}")
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
