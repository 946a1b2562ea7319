"""A compiled artifact: what `qmlir.target.compile` makes and a runtime loader runs.

It holds the lowered module (LLVM dialect, as MLIR bytecode), the entry function's name and
tensor signature, the target it was compiled for (canonical text) and what loading it needs
(runtime libraries; for CUDA the device buffers' sizes and the kernels' PTX). It is plain data:
`to_bytes()` / `from_bytes()` store it (the disk cache does) and load it again in another
process, which then only JIT-compiles the LLVM dialect.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from qmlir.errors import QmlirError
from qmlir.ir.specs import TensorSpec

_MAGIC = b"QMLIRART"
_VERSION = 1


class ArtifactError(QmlirError):
    """Bytes that are not a (complete, current) qmlir artifact."""


@dataclass(frozen=True)
class Artifact:
    kind: str  # "cpu" or "cuda": which runtime loads it
    target: str  # the Target's canonical text
    func_name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    bytecode: bytes  # the lowered module, MLIR bytecode
    libraries: Tuple[str, ...] = ()  # MLIR runtime libraries to load ("c_runner_utils", "async_runtime", ...)
    extras: Dict[str, Any] = field(default_factory=dict)  # JSON values: cuda buffers, ptx, timings
    lower_seconds: float = 0.0

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "version": _VERSION, "kind": self.kind, "target": self.target, "func_name": self.func_name,
            "inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
            "libraries": list(self.libraries), "extras": self.extras, "lower_seconds": self.lower_seconds,
            "bytecode_bytes": len(self.bytecode), "bytecode_sha256": hashlib.sha256(self.bytecode).hexdigest(),
        }).encode()
        return _MAGIC + struct.pack("<Q", len(header)) + header + self.bytecode

    @staticmethod
    def from_bytes(data: bytes) -> "Artifact":
        if len(data) < len(_MAGIC) + 8 or not data.startswith(_MAGIC):
            raise ArtifactError("not a qmlir artifact (bad magic)")
        (n,) = struct.unpack_from("<Q", data, len(_MAGIC))
        start = len(_MAGIC) + 8
        if start + n > len(data):
            raise ArtifactError("truncated qmlir artifact")
        try:
            h = json.loads(data[start:start + n].decode())
            if h.get("version") != _VERSION:
                raise ArtifactError(f"qmlir artifact version {h.get('version')}, this qmlir reads {_VERSION}")
            if len(data) - start - n != h["bytecode_bytes"]:
                raise ArtifactError(f"truncated qmlir artifact: {len(data) - start - n} of {h['bytecode_bytes']} "
                                    "bytes of its module")
            if hashlib.sha256(data[start + n:]).hexdigest() != h["bytecode_sha256"]:
                raise ArtifactError("damaged qmlir artifact: its module does not match its checksum")
            return Artifact(h["kind"], h["target"], h["func_name"],
                            tuple(TensorSpec.from_json(s) for s in h["inputs"]),
                            tuple(TensorSpec.from_json(s) for s in h["outputs"]),
                            data[start + n:], tuple(h["libraries"]), dict(h["extras"]), float(h["lower_seconds"]))
        except ArtifactError:
            raise
        except (ValueError, KeyError, TypeError, QmlirError) as e:
            raise ArtifactError(f"corrupt qmlir artifact header ({type(e).__name__}: {e})") from None

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"Artifact({self.kind}, {self.target}, @{self.func_name}({ins}) -> ({outs}), {len(self.bytecode)} bytes)"

