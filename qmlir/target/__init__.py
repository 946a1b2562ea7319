"""Targets: where compiled code runs. A `Target` is a value (frozen, hashable) that builds its
pipeline, compiles a module into an artifact and loads artifacts; its canonical text is part
of every cache key.

    qmlir.Target.cpu()                          the running CPU: its kernel features, its CPUs
    qmlir.Target.cpu(features=(), threads=1)    the portable path on one thread
    qmlir.Target.cuda()                         the current GPU's chip (sm_90 without one)
    qmlir.Target.parse("cpu{features=avx512_vnni threads=2}")

The doors (`torch.compile(backend=qmlir.backend(target=...))`, `qmlir.compile(target=...)`,
`qmlir-run --target`) take a Target or its text; it travels as this value to the runtime.
"""
from qmlir.target.base import CpuTarget, CudaTarget, Target, TargetError, as_target  # noqa: F401
from qmlir.target.compile import build, compile_mlir, compile_module, load  # noqa: F401

__all__ = ["CpuTarget", "CudaTarget", "Target", "TargetError", "as_target", "build", "compile_mlir",
           "compile_module", "load"]
