"""On-disk cache of lowered modules, so that a second process skips qmlir's lowering pipeline.

What is cached is the module after `lower_to_llvm_cpu` (LLVM dialect, as MLIR bytecode), keyed
by the tensor-level IR, the pipeline's target settings (threads, CPU features used) and a
fingerprint of qmlir's lowering code and the MLIR version, so a change to any of them misses.
A hit still JIT-compiles the LLVM dialect (LLVM's optimizer and code generator), but skips
bufferization, tiling and the conversions (most of the compile time of a model).

Location: `$QMLIR_CACHE_DIR` if set, else `$XDG_CACHE_HOME/qmlir`, else `~/.cache/qmlir`.
`QMLIR_CACHE_DIR=off` disables it. Entries are written atomically (temporary file + rename);
an unreadable entry is treated as a miss and rewritten.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from mlir import ir

_FORMAT = "1"


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off."""
    env = os.environ.get("QMLIR_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qmlir"


@lru_cache(maxsize=None)
def _code_fingerprint() -> str:
    """Hash of the code that decides the lowered module: qmlir's passes and the MLIR build."""
    import qmlir.passes as passes
    h = hashlib.sha256(_FORMAT.encode())
    for path in sorted(Path(passes.__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(str(Path(ir.__file__).resolve().parent).encode())
    try:
        from importlib.metadata import version
        h.update(version("xtc-mlir-python-bindings").encode())
    except Exception:  # noqa: BLE001  (any other build of the bindings: the path above identifies it)
        pass
    return h.hexdigest()


def key(mlir_text: str, pipeline_key: str) -> str:
    h = hashlib.sha256(_code_fingerprint().encode())
    h.update(pipeline_key.encode())
    h.update(b"\n")
    h.update(mlir_text.encode())
    return h.hexdigest()


def load(k: str, context: ir.Context) -> ir.Module | None:
    """The cached lowered module for key `k`, parsed in `context`, or None."""
    d = cache_dir()
    if d is None:
        return None
    path = d / f"{k}.mlirbc"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        with context:
            return ir.Module.parse(data)
    except ir.MLIRError:
        return None


def store(k: str, module: ir.Module) -> None:
    """Write `module` (lowered) under key `k`; failures to write are ignored (a cache)."""
    d = cache_dir()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            module.operation.write_bytecode(f)
        os.replace(tmp, d / f"{k}.mlirbc")
    except OSError:
        pass
