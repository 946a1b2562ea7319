"""Every qmlir pass and named pipeline, registered once (imported by the registry)."""
from qmlir.passes import bf16_dot_matmul  # noqa: F401
from qmlir.passes import dequant_matmul_fold  # noqa: F401
from qmlir.passes import fuse_quantized_matmul  # noqa: F401
from qmlir.passes import gpu_device_buffers  # noqa: F401
from qmlir.passes import int8_dot_matmul  # noqa: F401
from qmlir.passes import gpu_kernel_dedup  # noqa: F401
from qmlir.passes import gpu_loop_mapping  # noqa: F401
from qmlir.passes import lower_quant  # noqa: F401
from qmlir.passes import lower_to_cuda  # noqa: F401
from qmlir.passes import mixed_precision  # noqa: F401
from qmlir.passes import pipelines  # noqa: F401
from qmlir.passes import transpose_matmul_fold  # noqa: F401
from qmlir.passes import quantize_matmul  # noqa: F401
from qmlir.passes import split_outliers  # noqa: F401
