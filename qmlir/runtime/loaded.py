"""What the CPU and CUDA runtimes share: reading an artifact's signature and module, finding its
entry points, the packed memref descriptors a call passes, and the run-time checks' results."""
from __future__ import annotations

import ctypes
from typing import List, Sequence

import torch
from mlir import ir

from qmlir.errors import CompileError
from qmlir.ir.specs import TensorSpec
from qmlir.runtime.artifact import Artifact
from qmlir.runtime.checks import raise_failed
from qmlir.runtime.memref import make_descriptor


class LoadedFunction:
    """Base of CpuFunction and CudaFunction: one entry function of an artifact of `kind`."""

    kind = ""
    runtime_name = ""

    def _take(self, artifact: Artifact) -> None:
        if artifact.kind != self.kind:
            raise CompileError(f"a {artifact.kind} artifact cannot be loaded on the {self.runtime_name} runtime")
        self.artifact = artifact
        self.inputs: List[TensorSpec] = list(artifact.inputs)
        self._checks = list(artifact.extras.get("checks", ()))
        # inputs the function writes in place (a graph's input mutations, e.g. a KV cache)
        self.mutated: List[int] = list(artifact.extras.get("mutated", ()))
        self._all_outputs: List[TensorSpec] = list(artifact.outputs)
        # what the caller gets; the trailing check results are the runtime's (qmlir/runtime/checks.py)
        self.outputs: List[TensorSpec] = self._all_outputs[:len(self._all_outputs) - len(self._checks)]
        self.func_name = artifact.func_name
        self.lower_seconds = artifact.lower_seconds

    def _parse(self) -> ir.Module:
        """The artifact's module, in a context of this function's own (entered by the caller)."""
        try:
            return ir.Module.parse(self.artifact.bytecode)
        except ir.MLIRError as e:
            raise CompileError(f"cannot read the artifact's module: {e}") from None

    def _lookup(self, name: str):
        addr = self._engine.raw_lookup("_mlir_ciface_" + name)
        if not addr:
            raise CompileError(f"compiled module has no entry point {name}")
        return ctypes.CFUNCTYPE(None, ctypes.c_void_p)(addr)

    def _pack(self, shapes: Sequence[tuple]) -> None:
        """One memref descriptor per argument, and the packed pointer array a call passes. The
        check results (tensor<2xi64> each) are rows of one buffer of this function's, pointed at
        once: a decode step has ~60 of them, and allocating and reading each separately cost more
        than the rest of the call's packing."""
        self._descs = [make_descriptor(s) for s in shapes]
        self._desc_ptrs = [ctypes.c_void_p(ctypes.addressof(d)) for d in self._descs]
        self._packed = (ctypes.c_void_p * len(self._descs))(*[ctypes.addressof(p) for p in self._desc_ptrs])
        self._check_buffer = None  # made at the first call (loading may run under fake-tensor mode)

    def _point_checks(self) -> None:
        """Point the check results' descriptors at rows of the check buffer (once; with the lock
        held). CPU only: CudaFunction points them at device tensors of each call."""
        if self._check_buffer is None:
            n = len(self._checks)
            self._check_buffer = torch.zeros((n, 2), dtype=torch.int64)
            first = len(self.inputs) + len(self.outputs)
            for k, desc in enumerate(self._descs[first:first + n]):
                desc.allocated = desc.aligned = self._check_buffer[k].data_ptr()

    def _check_results(self) -> torch.Tensor | None:
        """This call's check results as one [checks, 2] tensor (call with the lock held: the
        buffer is reused by the next call); None when the function has no checks."""
        return self._check_buffer.clone() if self._checks else None

    def _write_back(self, args: Sequence[torch.Tensor], passed: Sequence[torch.Tensor]) -> None:
        """A mutated input that was passed as a contiguous copy (the caller's tensor is not
        contiguous) gets the written values copied back; a contiguous one was written in place."""
        for i in self.mutated:
            if passed[i] is not args[i]:
                with torch.no_grad():
                    args[i].copy_(passed[i])

    def _results(self, outs: List[torch.Tensor], checks: torch.Tensor | None = None) -> List[torch.Tensor]:
        """The caller's results: the check results (the trailing outputs, or `checks` given as
        one [checks, 2] tensor) are stripped, and raise if one failed."""
        if not self._checks:
            return outs
        if checks is not None:
            raise_failed(self._checks, checks)
            return outs
        n = len(self._checks)
        raise_failed(self._checks, outs[-n:])
        return outs[:-n]
