"""Compile apart from load: `compile_module(module, target) -> Artifact` runs the target's
pipeline; `load(artifact)` hands it to the runtime; `build` does both, with two caches:

- in this process, loaded functions by (target, IR, entry): the same graph compiles once;
- on disk (qmlir/target/disk_cache.py), artifacts by (target, pipeline, IR, entry, code
  fingerprint): a second process skips the pipeline and only JIT-compiles.

The code fingerprint is derived, not listed: the source of every qmlir module the pipeline's
passes are defined in and, transitively, every qmlir module those import (found by reading
their import statements), plus this module, the target's, and the MLIR build.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from mlir import ir

from qmlir.errors import CompileError
from qmlir.ir.checks import CHECKS_ATTR
from qmlir.ir.static_checks import static_errors
from qmlir.ir.specs import TensorSpec, entry_function, function_name, function_specs, mutated_results
from qmlir.ir.walk import contains
from qmlir.passes import forall_to_gomp, gpu_device_buffers
from qmlir.runtime.artifact import Artifact, ArtifactError
from qmlir.target import disk_cache
from qmlir.target.base import Target, as_target

_LOADED: dict = {}
_LOCK = threading.Lock()


def _module_file(name: str) -> Optional[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _qmlir_imports(path: Path, package: str) -> set:
    """Names of the qmlir modules `path` imports (anywhere in the file, function bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "qmlir")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "qmlir":
                continue
            if base != "qmlir":  # `from qmlir import kernels` imports qmlir.kernels, not the whole API
                names.add(base)
            for a in node.names:
                if _module_file(f"{base}.{a.name}") is not None:
                    names.add(f"{base}.{a.name}")
    return names


def import_closure(roots) -> set:
    """The names of the qmlir modules reachable by imports from `roots` (module names), roots included."""
    seen, todo = set(), sorted(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(sorted(_qmlir_imports(path, package) - seen))
    return seen


@lru_cache(maxsize=None)
def code_fingerprint(roots: frozenset) -> str:
    """Hash of the qmlir modules reachable by imports from `roots` (module names), and the MLIR build."""
    h = hashlib.sha256(b"qmlir-artifact-1")
    for name in sorted(import_closure(roots)):
        path = _module_file(name)
        if path is not None:
            h.update(name.encode() + b"\0" + path.read_bytes())
    h.update(str(Path(ir.__file__).resolve().parent).encode())
    try:
        from importlib.metadata import version
        h.update(version("xtc-mlir-python-bindings").encode())
    except Exception:  # noqa: BLE001  (any other build of the bindings: the path above identifies it)
        pass
    return h.hexdigest()


def fingerprint_modules(target: Target) -> frozenset:
    """The roots of `target`'s code fingerprint: its passes' modules, the target's and this one."""
    passes = {spec.run.__module__ for spec in target.pipeline().qmlir_passes()}
    return frozenset(passes | {__name__, type(target).__module__})


def _source_text(source: Union[str, ir.Module]) -> str:
    return source if isinstance(source, str) else str(source)


Specs = Optional[Tuple[Sequence[TensorSpec], Sequence[TensorSpec]]]


def _specs_text(specs: Specs) -> str:
    return "" if specs is None else " ".join(str(s) for s in specs[0]) + " -> " + " ".join(str(s) for s in specs[1])


def compile_module(source: Union[str, ir.Module], target: Union[Target, str, None] = None,
                   entry: Optional[str] = None, specs: Specs = None) -> Artifact:
    """Lower the tensor-level module `source` (IR text, or a module: it is not changed) for
    `target` into an artifact for its entry function (`entry`, else the only public one, else
    `forward`). `specs` (inputs, outputs) give the torch dtypes where the IR cannot (a bool
    tensor is stored as i8); by default they are read off the function type. Uses the disk cache."""
    target = as_target(target)
    text = _source_text(source)
    pipeline = target.pipeline()
    key = disk_cache.key(text, f"{target.text()}\n{pipeline}\n{entry}\n{_specs_text(specs)}",
                         code_fingerprint(fingerprint_modules(target)))
    cached = disk_cache.load(key)
    if cached is not None:
        try:
            art = Artifact.from_bytes(cached)  # checks the module's length and checksum
            return Artifact(art.kind, art.target, art.func_name, art.inputs, art.outputs, art.bytecode,
                            art.libraries, {**art.extras, "cache_hit": True}, art.lower_seconds)
        except ArtifactError:
            pass  # an unreadable or damaged entry is a miss, and is rewritten below
    t0 = time.perf_counter()
    context = ir.Context()
    with context, ir.Location.unknown():
        module = ir.Module.parse(text)
        problems = static_errors(module)  # what would crash the compiled code or its allocation
        if problems:
            more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
            raise CompileError(f"{problems[0]}{more}")
        fn = entry_function(module, entry)
        name = function_name(fn)
        inputs, outputs = function_specs(fn)
        if specs is not None:
            if [s.shape for s in specs[0]] != [s.shape for s in inputs] or \
                    [s.shape for s in specs[1]] != [s.shape for s in outputs]:
                raise ArtifactError(f"the given specs {_specs_text(specs)} do not match @{name}'s type")
            inputs, outputs = list(specs[0]), list(specs[1])
        n_mutated = len(mutated_results(fn))  # trailing; dropped by the pipeline (qmlir-drop-mutated-results)
        if n_mutated:
            outputs = outputs[:len(outputs) - n_mutated]
        fn.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        # The C-interface wrapper the runtime calls passes every memref descriptor field of every
        # argument as its own scalar argument (~2,600 for a SmolLM2 step's weights and caches): LLVM's
        # instruction selection of that one call took 5 of the decode graph's 19 s of JIT. Inlined
        # into the wrapper, the call is gone (the JIT of that graph: about 3x faster).
        passthrough = [a for a in ir.ArrayAttr(fn.attributes["passthrough"])] if "passthrough" in fn.attributes else []
        if not any(isinstance(a, ir.StringAttr) and ir.StringAttr(a).value == "alwaysinline" for a in passthrough):
            fn.attributes["passthrough"] = ir.ArrayAttr.get(passthrough + [ir.StringAttr.get("alwaysinline")])
        checks = [ir.StringAttr(a).value for a in ir.ArrayAttr(fn.attributes[CHECKS_ATTR])] \
            if CHECKS_ATTR in fn.attributes else []
        if len(checks) > len(outputs) or any(s != TensorSpec((2,), torch.int64) for s in outputs[len(outputs) - len(checks):]):
            raise ArtifactError(f"@{name}: {CHECKS_ATTR} names {len(checks)} check(s), but its trailing "
                                "results are not tensor<2xi64>")
        mutated = written_arguments(fn)
        pipeline.run(module, f"{target.kind} pipeline")
        extras: dict = {"checks": checks} if checks else {}
        if mutated:
            extras["mutated"] = mutated
        if target.kind == "cpu":
            libraries = ("c_runner_utils",) + (("async_runtime",) if _calls(module, "mlirAsyncRuntime") else ()) \
                + ((forall_to_gomp.LIBRARY,) if _calls(module, forall_to_gomp.GOMP_PARALLEL) else ())
        else:
            libraries = ("cuda_runtime",)
            buffers = {b.function: b for b in gpu_device_buffers.recorded(module.operation)}
            if name not in buffers:
                raise ArtifactError(f"the cuda pipeline recorded no device buffers for @{name}")
            extras.update({"buffers": [buffers[name].constant_bytes, buffers[name].workspace_bytes],
                      "upload_function": buffers[name].upload_function,
                      "ptx": kernel_ptx(module) if getattr(target, "format", "") == "isa" else None})
        buf = io.BytesIO()
        module.operation.write_bytecode(buf)
    art = Artifact(target.kind, target.text(), name, tuple(inputs), tuple(outputs), buf.getvalue(), libraries,
                   extras, time.perf_counter() - t0)
    disk_cache.store(key, art.to_bytes())
    return art


def written_arguments(fn) -> list:
    """Positions of the arguments `fn` declares written in place (`bufferization.writable = true`:
    the inputs a graph mutates); the runtime copies them back when it had to pass a copy."""
    if "arg_attrs" not in fn.attributes:
        return []
    out = []
    for i, d in enumerate(ir.ArrayAttr(fn.attributes["arg_attrs"])):
        d = ir.DictAttr(d)
        if "bufferization.writable" in d and ir.BoolAttr(d["bufferization.writable"]).value:
            out.append(i)
    return out


def _calls(module: ir.Module, prefix: str) -> bool:
    """True when a lowered module calls a function named `prefix...` (MLIR's async runtime,
    libgomp): its library must be loaded. convert-async-to-llvm declares the runtime's functions
    whether or not anything calls them, so calls are looked for, not declarations."""
    def calls(op):
        return op.name == "llvm.call" and "callee" in op.attributes and \
            ir.FlatSymbolRefAttr(op.attributes["callee"]).value.startswith(prefix)
    return contains(module, calls)


def kernel_ptx(module: ir.Module) -> str:
    """The PTX of every gpu.binary in a lowered module (format isa), concatenated."""
    from mlir.dialects import gpu
    texts = []

    def visit(op):
        if op.name == "gpu.binary":
            for obj in ir.ArrayAttr(op.attributes["objects"]):
                texts.append(gpu.ObjectAttr(obj).object.decode())
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return "\n".join(texts)


def load(artifact: Artifact, **kwargs) -> Callable:
    """The callable for `artifact`, through the target it was compiled for."""
    return as_target(artifact.target).load(artifact, **kwargs)


def build(source: Union[str, ir.Module], target: Union[Target, str, None] = None, entry: Optional[str] = None,
          device=None, specs: Specs = None) -> Callable:
    """compile_module + load, reusing a function already loaded from the same IR for the same
    target (and device) in this process."""
    target = as_target(target, device)
    text = _source_text(source)
    key = (target.text(), hashlib.sha256(text.encode()).hexdigest(), entry, str(device), _specs_text(specs))
    with _LOCK:
        hit = _LOADED.get(key)
    if hit is not None:
        return hit
    art = compile_module(text, target, entry, specs)
    fn = target.load(art, device=device)
    with _LOCK:
        _LOADED[key] = fn
    return fn


def compile_mlir(text: str, entry: Optional[str] = None, target: Union[Target, str, None] = None,
                 device=None) -> Callable:
    """Compile and load IR text (as qmlir emits it or qmlir-opt prints it); not cached in-process."""
    target = as_target(target, device)
    art = compile_module(text, target, entry)
    return target.load(art, device=device)

