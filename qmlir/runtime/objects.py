"""On-disk cache of CPU machine code: a loaded artifact's JIT output kept as a shared library.

The artifact cache (qmlir/target/disk_cache.py) skips qmlir's lowering in a second process, but
LLVM's code generation of the LLVM dialect still ran at every load: for SmolLM2's prefill and
decode graphs, most of a warm start. Here the first load JIT-compiles as before with
position-independent code, dumps the engine's object file (`ExecutionEngine.dump_to_object_file`)
and links it with the system C compiler (`cc -shared`) into `<key>.so` beside the artifacts; a
later load `dlopen`s that library and calls the same packed entry point, without parsing the
module or running LLVM at all.

The key covers the artifact's module bytes, the optimization level, the runtime libraries, the
MLIR build and the host CPU (the JIT compiles for the host's features), so any change misses.
Without a cache directory (`QMLIR_CACHE_DIR=off`) or a C compiler, loads JIT-compile as before;
a library that cannot be written or loaded is a miss (it is rebuilt), never an error.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from mlir import ir

from qmlir.paths import cache_dir

_SUFFIX = ".qmlir-so"
_HOST: Optional[str] = None


def _host() -> str:
    """The host CPU as the JIT sees it: model and feature flags."""
    global _HOST
    if _HOST is None:
        lines = []
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith(("model name", "flags", "Features", "CPU part")):
                        lines.append(line.strip())
                    if not line.strip() and lines:
                        break  # the first processor is enough
        except OSError:
            pass
        import platform
        _HOST = platform.machine() + "\n" + "\n".join(lines)
    return _HOST


def key(bytecode: bytes, opt_level: int, libraries: Sequence[str]) -> str:
    h = hashlib.sha256(b"qmlir-object-1\n")
    h.update(f"{opt_level}\n{','.join(libraries)}\n{Path(ir.__file__).resolve().parent}\n".encode())
    h.update(_host().encode())
    h.update(hashlib.sha256(bytecode).digest())
    return h.hexdigest()


def path_for(k: str) -> Optional[Path]:
    d = cache_dir()
    return None if d is None else d / f"{k}{_SUFFIX}"


def load(path: Optional[Path], symbol: str):
    """The address of `symbol` in the cached library `path`, or None (absent, unreadable, or
    not a library this process can load: it is then removed, to be rebuilt)."""
    if path is None or not path.is_file():
        return None
    try:
        lib = ctypes.CDLL(str(path), mode=os.RTLD_NOW | os.RTLD_LOCAL)
        return ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    except (OSError, AttributeError):
        try:
            path.unlink()
        except OSError:
            pass
        return None


def store(path: Optional[Path], engine, libraries: Sequence[str]) -> bool:
    """Link `engine`'s object file into the library `path` (atomically); False when it cannot be
    (no cache directory, no C compiler, a failed link: the caller keeps its JIT-compiled code)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if path is None or cc is None:
        return False
    tmpdir = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = tempfile.mkdtemp(dir=path.parent, prefix=".qmlir-obj-")
        obj, lib = os.path.join(tmpdir, "code.o"), os.path.join(tmpdir, "code.so")
        engine.dump_to_object_file(obj)
        dirs = sorted({str(Path(p).parent) for p in libraries})
        cmd = [cc, "-shared", "-o", lib, obj, *libraries, *[f"-Wl,-rpath,{d}" for d in dirs], "-lm"]
        done = subprocess.run(cmd, capture_output=True, timeout=300)
        if done.returncode != 0 or not os.path.isfile(lib):
            return False
        os.replace(lib, path)
        return True
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return False
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
