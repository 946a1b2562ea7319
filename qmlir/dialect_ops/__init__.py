"""ATen lowerings, one module per op family. Importing this package registers them all."""
from qmlir.dialect_ops import (  # noqa: F401
    conv_pool,
    creation,
    elementwise,
    indexing,
    matmul,
    normalization,
    quantized,
    reduction,
    scatter,
    shape,
)
from qmlir.dialect_ops.registry import lowering, lookup, registered_ops

__all__ = ["lowering", "lookup", "registered_ops"]
