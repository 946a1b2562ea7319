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
from qmlir.frontend.compiled_module import CompiledModule, compile, import_model
from qmlir.frontend.dynamo_backend import QmlirFallbackWarning, backend, qmlir_backend
from qmlir.frontend.importer import import_graph
from qmlir.target import Target
from qmlir.quantization import (
    CalibrationError,
    QuantConfig,
    QuantConfigError,
    QuantizationError,
    load_quantized,
    quantize,
    save_quantized,
)


def supported_ops() -> list:
    """Names of the ATen overloads qmlir lowers, sorted."""
    from qmlir.dialect_ops.registry import op_name, registered_ops
    return sorted(op_name(op) for op in registered_ops())


__all__ = [
    "CompileError", "CompiledModule", "IndexOutOfRangeError", "CudaUnavailableError", "InputMismatchError", "QmlirError", "UnsupportedOp",
    "UnsupportedOpError", "QmlirFallbackWarning", "Target", "backend", "compile", "import_graph", "import_model", "qmlir_backend", "supported_ops",
    "CalibrationError", "QuantConfig", "QuantConfigError", "QuantizationError", "load_quantized", "quantize",
    "save_quantized",
]
__version__ = "0.1.0"
