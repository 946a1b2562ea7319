"""On-disk cache of compiled artifacts, so that a second process skips qmlir's lowering pipeline.

What is cached is the whole artifact (qmlir/runtime/artifact.py: the LLVM-dialect module as MLIR
bytecode, its signature, what loading it needs), keyed by the tensor-level IR, the target and
its pipeline, and a fingerprint of the code that shapes the lowering (derived from imports in
qmlir/target/compile.py) and of the MLIR build, so a change to any of them misses. A hit still
JIT-compiles the LLVM dialect, but skips bufferization, tiling and the conversions (most of
the compile time of a model).

Location: `$QMLIR_CACHE_DIR` if set, else `$XDG_CACHE_HOME/qmlir`, else `~/.cache/qmlir`.
`QMLIR_CACHE_DIR=off` disables it. Entries are written atomically (temporary file + rename);
an unreadable entry is treated as a miss and rewritten.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

_SUFFIX = ".qmlir-artifact"


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off."""
    env = os.environ.get("QMLIR_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qmlir"


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
