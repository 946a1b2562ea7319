"""qmlir: compile PyTorch models to upstream MLIR and run them.

    compiled = torch.compile(model, backend="qmlir")
    cm = qmlir.compile(model, (x,)); cm(x); print(cm.mlir)
    cm = qmlir.compile(model, (x,), target=qmlir.Target.cpu(features=()))   # the portable path
"""
from qmlir.errors import (
    CompileError,
    IndexOutOfRangeError,
    CudaUnavailableError,
    InputMismatchError,
    QmlirError,
    UnsupportedOp,
    UnsupportedOpError,
)
# The rest of the public API is imported on first use (PEP 562): `import qmlir.errors` or the
# qmlir-opt command line then does not pay for torch._dynamo (about 1.5 s per process).
_LAZY = {
    "CompiledModule": "qmlir.frontend.compiled_module", "compile": "qmlir.frontend.compiled_module",
    "import_model": "qmlir.frontend.compiled_module",
    "QmlirFallbackWarning": "qmlir.frontend.dynamo_backend", "backend": "qmlir.frontend.dynamo_backend",
    "qmlir_backend": "qmlir.frontend.dynamo_backend",
    "import_graph": "qmlir.frontend.importer",
    "Target": "qmlir.target",
    "compile_for_generate": "qmlir.frontend.generation",
    **{name: "qmlir.quantization" for name in ("CalibrationError", "QuantConfig", "QuantConfigError",
                                               "QuantizationError", "load_quantized", "quantize", "save_quantized")},
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qmlir' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def supported_ops() -> list:
    """Names of the ATen overloads qmlir lowers, sorted."""
    from qmlir.dialect_ops.registry import op_name, registered_ops
    return sorted(op_name(op) for op in registered_ops())


__all__ = [
    "CompileError", "CompiledModule", "IndexOutOfRangeError", "CudaUnavailableError", "InputMismatchError", "QmlirError", "UnsupportedOp",
    "UnsupportedOpError", "QmlirFallbackWarning", "Target", "backend", "compile", "compile_for_generate", "import_graph", "import_model", "qmlir_backend", "supported_ops",
    "CalibrationError", "QuantConfig", "QuantConfigError", "QuantizationError", "load_quantized", "quantize",
    "save_quantized",
]
__version__ = "0.1.0"
