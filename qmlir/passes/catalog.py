"""Every qmlir pass and named pipeline of this layer, registered once (imported by the registry).
The targets' own pipelines (qmlir-lower-to-cpu, qmlir-lower-to-cuda) register in qmlir/target."""
from qmlir.passes import dequant_matmul_fold  # noqa: F401
from qmlir.passes import distinct_results  # noqa: F401
from qmlir.passes import drop_mutated_results  # noqa: F401
from qmlir.passes import exp_polynomial  # noqa: F401
from qmlir.passes import forall_to_gomp  # noqa: F401
from qmlir.passes import expand_kernels  # noqa: F401
from qmlir.passes import fuse_quantized_matmul  # noqa: F401
from qmlir.passes import gpu_device_buffers  # noqa: F401
from qmlir.passes import gpu_kernel_dedup  # noqa: F401
from qmlir.passes import gpu_loop_mapping  # noqa: F401
from qmlir.passes import loop_outlining  # noqa: F401
from qmlir.passes import lower_quant  # noqa: F401
from qmlir.passes import mixed_precision  # noqa: F401
from qmlir.passes import pipelines  # noqa: F401
from qmlir.passes import protect_arguments  # noqa: F401
from qmlir.passes import quantize_matmul  # noqa: F401
from qmlir.passes import select_kernels  # noqa: F401
from qmlir.passes import split_outliers  # noqa: F401
from qmlir.passes import transpose_matmul_fold  # noqa: F401
