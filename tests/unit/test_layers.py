"""The layering of qmlir's packages, checked on the source: no module imports from a layer above
its own, and the rank-2 packages (independent libraries over qmlir.ir) do not import each other.

    6  qmlir.cli, qmlir.tools, qmlir.testing, the package root qmlir (qmlir/__init__.py)
    5  qmlir.frontend
    4  qmlir.target
    3  qmlir.passes
    2  qmlir.dialect_ops, qmlir.kernels, qmlir.quantization, qmlir.runtime, qmlir.zoo, qmlir.evaluation
    1  qmlir.ir, qmlir.data
    0  qmlir.errors

Every import counts, wherever it is (module level, inside functions, under TYPE_CHECKING):
`import qmlir.x`, `from qmlir.x import y`, relative imports, and `from qmlir import x` (which
imports qmlir.x when x is a submodule, else the package root). Imports within one package are
allowed.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

import qmlir

QMLIR_DIR = Path(qmlir.__file__).resolve().parent
REPO_ROOT = QMLIR_DIR.parent
ROOT = "qmlir"

LAYERS: Dict[str, int] = {
    "qmlir.errors": 0, "qmlir.paths": 0,
    "qmlir.ir": 1, "qmlir.data": 1,
    "qmlir.dialect_ops": 2, "qmlir.kernels": 2, "qmlir.quantization": 2, "qmlir.runtime": 2,
    "qmlir.zoo": 2, "qmlir.evaluation": 2,
    "qmlir.passes": 3,
    "qmlir.target": 4,
    "qmlir.frontend": 5,
    "qmlir.cli": 6, "qmlir.tools": 6, "qmlir.testing": 6, ROOT: 6,
}
INDEPENDENT_RANK = 2  # packages of this rank may not import each other


def package_of(module: str) -> Optional[str]:
    """The layered package `module` belongs to ('qmlir.passes.registry' -> 'qmlir.passes'),
    'qmlir' for the root itself, None for a qmlir module no layer names."""
    if module == ROOT:
        return ROOT
    parts = module.split(".")
    if parts[0] != ROOT or len(parts) < 2:
        return None
    top = f"{ROOT}.{parts[1]}"
    return top if top in LAYERS else None


def describe(package: str) -> str:
    name = "the package root qmlir" if package == ROOT else package
    return f"layer {LAYERS[package]} ({name})"


def is_submodule(name: str) -> bool:
    """True when qmlir.<name> is a module or package of the tree (`from qmlir import name`)."""
    return (QMLIR_DIR / f"{name}.py").is_file() or (QMLIR_DIR / name / "__init__.py").is_file()


def module_name(path: Path) -> str:
    rel = path.resolve().relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> List[Tuple[int, str]]:
    """(line, qmlir module) for every import of a qmlir module in `source`, anywhere in it."""
    found: List[Tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                keep = len(parts) - (node.level - 1)
                if keep <= 0:
                    raise AssertionError(f"{module}: relative import beyond the top-level package")
                base = ".".join(parts[:keep] + ([base] if base else []))
            if base != ROOT and not base.startswith(ROOT + "."):
                continue
            if base == ROOT:
                # `from qmlir import zoo` imports qmlir.zoo; `from qmlir import Target` the root
                for alias in node.names:
                    found.append((node.lineno, f"{ROOT}.{alias.name}" if is_submodule(alias.name) else ROOT))
            else:
                found.append((node.lineno, base))
    return found


def violations(module: str, label: str, source: str, is_package: bool = False) -> List[str]:
    """Every layering violation of the module `module` (file `label`) with source `source`."""
    importer = package_of(module)
    if importer is None:
        return [f"{label}: module {module} belongs to no layer (add its package to LAYERS in {Path(__file__).name})"]
    out = []
    for line, target in imported_modules(source, module, is_package):
        imported = package_of(target)
        if imported is None:
            out.append(f"{label}:{line}: imports {target}, which belongs to no layer")
            continue
        if imported == importer:
            continue
        mine, theirs = LAYERS[importer], LAYERS[imported]
        if theirs > mine:
            out.append(f"{label}:{line}: imports {target} from {describe(imported)}, above its own "
                       f"{describe(importer)}")
        elif theirs == mine == INDEPENDENT_RANK:
            out.append(f"{label}:{line}: imports {target} from {describe(imported)}; the rank-{INDEPENDENT_RANK} "
                       f"packages are independent, and it is in {describe(importer)}")
    return out


def check_file(path: Path) -> List[str]:
    module = module_name(path)
    label = str(path.resolve().relative_to(REPO_ROOT))
    return violations(module, label, path.read_text(encoding="utf-8"), path.name == "__init__.py")


SOURCES = sorted(p for p in QMLIR_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_tree_has_modules_in_every_layer():
    packages = {package_of(module_name(p)) for p in SOURCES}
    assert set(LAYERS) <= packages, f"layers with no module: {sorted(set(LAYERS) - packages)}"
    assert len(SOURCES) > 50


def test_no_module_imports_from_a_layer_above_or_a_sibling_library():
    problems = [v for path in SOURCES for v in check_file(path)]
    assert not problems, "layering violations:\n" + "\n".join(problems)


# The checker itself, on synthetic sources.

def test_checker_catches_an_import_from_a_higher_layer():
    (v,) = violations("qmlir.runtime.fake", "qmlir/runtime/fake.py", "from qmlir.passes import registry\n")
    assert "qmlir/runtime/fake.py:1" in v
    assert "qmlir.passes" in v
    assert "layer 3 (qmlir.passes)" in v and "layer 2 (qmlir.runtime)" in v


def test_checker_sees_imports_inside_functions_and_plain_imports():
    src = ("import os\n"
           "def f():\n"
           "    import qmlir.target.base\n"
           "    return os\n")
    (v,) = violations("qmlir.passes.fake", "qmlir/passes/fake.py", src)
    assert "qmlir/passes/fake.py:3" in v and "qmlir.target.base" in v
    assert "layer 4 (qmlir.target)" in v and "layer 3 (qmlir.passes)" in v


def test_checker_resolves_from_qmlir_import():
    # a submodule: qmlir.zoo (rank 2, a sibling of qmlir.kernels)
    (v,) = violations("qmlir.kernels.fake", "qmlir/kernels/fake.py", "from qmlir import zoo\n")
    assert "qmlir.zoo" in v and "independent" in v
    # a name of the root (not a submodule): the root, rank 6
    (v,) = violations("qmlir.passes.fake", "qmlir/passes/fake.py", "from qmlir import QmlirError\n")
    assert "the package root qmlir" in v and "layer 6" in v
    (v,) = violations("qmlir.ir.fake", "qmlir/ir/fake.py", "import qmlir\n")
    assert "layer 6" in v and "layer 1 (qmlir.ir)" in v
    # qmlir.target from qmlir.passes
    (v,) = violations("qmlir.passes.fake", "qmlir/passes/fake.py", "from qmlir import target\n")
    assert "layer 4 (qmlir.target)" in v


def test_checker_resolves_relative_imports():
    (v,) = violations("qmlir.runtime.fake", "qmlir/runtime/fake.py", "from ..passes import registry\n")
    assert "qmlir.passes" in v and "layer 3" in v
    (v,) = violations("qmlir.runtime", "qmlir/runtime/__init__.py", "from ..target import host\n", is_package=True)
    assert "qmlir.target" in v
    assert violations("qmlir.runtime.fake", "qmlir/runtime/fake.py", "from . import artifact\nfrom .cpu import x\n") == []


@pytest.mark.parametrize("module, src", [
    ("qmlir.passes.fake", "from qmlir.kernels import all_kernels\nfrom qmlir.ir.walk import functions\n"),
    ("qmlir.passes.fake", "from qmlir.errors import CompileError\nimport torch\nfrom mlir import ir\n"),
    ("qmlir.tools.fake", "from qmlir import zoo, target\nimport qmlir\nfrom qmlir.frontend import importer\n"),
    ("qmlir", "from qmlir.tools import opt\nfrom qmlir.testing import x\n"),
    ("qmlir.errors", "import enum\n"),
])
def test_checker_allows_imports_downwards_and_within_a_package(module, src):
    assert violations(module, module.replace(".", "/") + ".py", src) == []


def test_checker_flags_a_module_outside_every_layer():
    (v,) = violations("qmlir.newpkg.mod", "qmlir/newpkg/mod.py", "")
    assert "belongs to no layer" in v
