"""Load a CUDA artifact and call it with torch CUDA tensors.

The artifact's host code (LLVM dialect) is JIT-compiled by MLIR's ExecutionEngine; it launches
the kernels through libmlir_cuda_runtime.so (the kernels' binary is embedded and loaded by the
driver when the engine initializes). Tensors cross by device pointer: inputs in place, results
written into CUDA tensors allocated here with torch, intermediates in one workspace tensor per
call (torch's caching allocator), constants uploaded once. Nothing goes through host memory.

Streams: the compiled code runs on its own stream (one per call, MLIR's runtime creates it).
A call first waits for torch's current stream (so the inputs are ready), and returns once its
own stream has finished (so the results are ready for whatever torch runs next).
"""
from __future__ import annotations

import ctypes
import threading
import time
from typing import List, Sequence

import torch
from mlir import ir
from mlir.execution_engine import ExecutionEngine

from qmlir.errors import CompileError, CudaUnavailableError
from qmlir.runtime.artifact import Artifact
from qmlir.runtime.cpu import check_inputs
from qmlir.runtime.libs import runtime_library
from qmlir.runtime.loaded import LoadedFunction
from qmlir.runtime.memref import make_descriptor, point_at


def cuda_device(device: torch.device | int | str | None = None) -> torch.device:
    """The CUDA device to run on, or `CudaUnavailableError` saying why there is none."""
    if not torch.backends.cuda.is_built():
        raise CudaUnavailableError(f"this torch build ({torch.__version__}) has no CUDA support; "
                                   "target='cuda' needs a CUDA build of torch and an NVIDIA GPU "
                                   "(emit='ptx' works without one)")
    if not torch.cuda.is_available():
        raise CudaUnavailableError("no CUDA device or driver is available (torch.cuda.is_available() is False); "
                                   "emit='ptx' works without one")
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if dev.type != "cuda":
        raise CudaUnavailableError(f"target='cuda' needs CUDA tensors, got a tensor on {dev}")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def chip_of(device: torch.device) -> tuple[str, str]:
    """(chip, PTX features) for `device`: sm_90 -> ('sm_90', '+ptx80')."""
    major, minor = torch.cuda.get_device_capability(device)
    ptx = "+ptx80" if major < 10 else "+ptx86"
    return f"sm_{major}{minor}", ptx


def _runtime():
    try:
        return ctypes.CDLL(runtime_library("cuda_runtime"))
    except OSError as e:
        raise CudaUnavailableError(f"cannot load MLIR's CUDA runtime library (is the NVIDIA driver, "
                                   f"libcuda.so.1, installed?): {e}") from None


class CudaFunction(LoadedFunction):
    """One function compiled for a CUDA device with a fixed input signature, loaded from an artifact."""

    kind = "cuda"
    runtime_name = "CUDA"

    def __init__(self, artifact: Artifact, device: torch.device | None = None, opt_level: int = 0):
        self._take(artifact)
        self.device = cuda_device(device)
        self.ptx = artifact.extras.get("ptx")
        constant_bytes, workspace_bytes = artifact.extras["buffers"]
        upload = artifact.extras["upload_function"]
        runtime = _runtime()
        runtime.mgpuSetDefaultDevice(ctypes.c_int32(self.device.index))
        t0 = time.perf_counter()
        self._context = ir.Context()
        with self._context:
            module = self._parse()
            try:
                torch.cuda.init()
                # the host code calls only the CUDA wrappers (no memrefCopy: copies are kernels)
                self._engine = ExecutionEngine(module, opt_level=opt_level,
                                               shared_libs=[runtime_library("cuda_runtime")])
                self._engine.initialize()  # global constructors load the kernels' module
            except RuntimeError as e:
                raise CompileError(f"JIT compilation for CUDA failed: {e}") from None
            self._module = module
        self._runtime = runtime
        self._fn = self._lookup(self.func_name)
        self._workspace_bytes = workspace_bytes
        self.compile_seconds = self.lower_seconds + time.perf_counter() - t0
        shapes = [s.shape for s in self.inputs + self._all_outputs]
        self._pack(shapes + [(max(1, constant_bytes),), (max(1, workspace_bytes),)])
        self._lock = threading.Lock()
        # loaded inside AOT autograd's fake-tensor mode: these must be real device tensors
        from torch._subclasses.fake_tensor import unset_fake_temporarily
        with unset_fake_temporarily():
            self._constants = torch.empty(max(1, constant_bytes), dtype=torch.uint8, device=self.device)
            if constant_bytes:
                self._upload(upload)

    def _upload(self, name: str) -> None:
        desc = make_descriptor(tuple(self._constants.shape))
        point_at(desc, self._constants)
        ptr = ctypes.c_void_p(ctypes.addressof(desc))
        packed = (ctypes.c_void_p * 1)(ctypes.addressof(ptr))
        torch.cuda.synchronize(self.device)
        self._lookup(name)(packed)

    def check(self, args: Sequence[torch.Tensor]) -> None:
        check_inputs(self.func_name, self.inputs, args, self.device)

    def __call__(self, *args: torch.Tensor) -> List[torch.Tensor]:
        self.check(args)
        ins = [a if a.is_contiguous() else a.contiguous() for a in args]
        outs = [torch.empty(s.shape, dtype=s.dtype, device=self.device) for s in self._all_outputs]
        workspace = torch.empty(max(1, self._workspace_bytes), dtype=torch.uint8, device=self.device)
        with self._lock:
            for desc, t in zip(self._descs, ins + outs + [self._constants, workspace]):
                point_at(desc, t)
            torch.cuda.current_stream(self.device).synchronize()  # inputs written by torch are ready
            self._fn(self._packed)  # returns after its stream has finished
        self._write_back(args, ins)
        return self._results(outs)


def load(artifact: Artifact, device: torch.device | None = None) -> CudaFunction:
    return CudaFunction(artifact, device)
