"""The Target values and the named pipelines they register (qmlir-lower-to-cpu, qmlir-lower-to-cuda)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Dict, Optional, Sequence, Union

from qmlir.errors import QmlirError
from qmlir.passes import registry
from qmlir.passes.pipeline import Pipeline
from qmlir.passes.pipelines import CUDA_FORMATS, cpu_stages, cuda_stages
from qmlir.runtime.artifact import Artifact
from qmlir.target import host


class TargetError(QmlirError):
    """A target that does not exist, bad target options, or an artifact for another machine."""


def _options(text: str, what: str) -> Dict[str, str]:
    values = {}
    for item in filter(None, re.split(r"\s+", text.strip())):
        key, eq, value = item.partition("=")
        if not eq:
            raise TargetError(f"{what}: option '{item}' needs a value (key=value)")
        values[key] = value
    return values


class Target:
    """Where code runs. Subclasses: CpuTarget, CudaTarget."""

    kind: ClassVar[str] = ""

    @staticmethod
    def cpu(features: Optional[Sequence[str]] = None, threads: Optional[int] = None) -> "CpuTarget":
        """The CPU target; features/threads default to the running machine's (see target/host.py)."""
        return CpuTarget.of(features, threads)

    @staticmethod
    def cuda(chip: Optional[str] = None, features: Optional[str] = None, format: str = "isa",
             block_size: int = 256, opt_level: int = 3, toolkit: Optional[str] = None, device=None) -> "CudaTarget":
        """The CUDA target; chip/features default to `device`'s (the current GPU), else sm_90/+ptx80."""
        return CudaTarget.of(chip, features, format, block_size, opt_level, toolkit, device)

    @staticmethod
    def parse(text: str) -> "Target":
        """'cpu', 'cuda', or either with options: 'cpu{features=avx512_bf16,avx512_vnni threads=2}'
        (features=host / threads=host, or leaving them out: the running machine's)."""
        text = text.strip()
        name, brace, rest = text.partition("{")
        name = name.strip()
        if brace and not rest.endswith("}"):
            raise TargetError(f"malformed target '{text}' (expected name{{key=value ...}})")
        opts = _options(rest[:-1], name) if brace else {}
        if name == "cpu":
            extra = set(opts) - {"features", "threads"}
            if extra:
                raise TargetError(f"cpu target: unknown option(s) {', '.join(sorted(extra))} (options: features, threads)")
            feats = None if opts.get("features", "host") == "host" else \
                [f for f in opts["features"].split(",") if f]
            threads = opts.get("threads", "host")
            return CpuTarget.of(feats, None if threads == "host" else _int(threads, "cpu target: threads"))
        if name == "cuda":
            known = {"chip", "features", "format", "block-size", "opt-level", "toolkit"}
            extra = set(opts) - known
            if extra:
                raise TargetError(f"cuda target: unknown option(s) {', '.join(sorted(extra))} "
                                  f"(options: {', '.join(sorted(known))})")
            return CudaTarget.of(opts.get("chip"), opts.get("features"), opts.get("format", "isa"),
                                 _int(opts.get("block-size", "256"), "cuda target: block-size"),
                                 _int(opts.get("opt-level", "3"), "cuda target: opt-level"), opts.get("toolkit"))
        raise TargetError(f"unknown target '{name}' (targets: cpu, cuda)")

    # what every target provides
    def text(self) -> str:
        raise NotImplementedError

    def pipeline(self) -> Pipeline:
        raise NotImplementedError

    def load(self, artifact: Artifact, **kwargs) -> Callable:
        raise NotImplementedError

    def compile(self, module, entry: Optional[str] = None) -> Artifact:
        """Lower `module` (tensor-level IR, as qmlir emits it) into an artifact for this target."""
        from qmlir.target.compile import compile_module
        return compile_module(module, self, entry)

    def __str__(self) -> str:
        return self.text()


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TargetError(f"{what} must be an integer, got '{text}'") from None


@dataclass(frozen=True)
class CpuTarget(Target):
    features: tuple = ()  # kernel-relevant CPU features (host.KERNEL_FEATURES), sorted
    threads: int = 1
    kind: ClassVar[str] = "cpu"

    @staticmethod
    def of(features: Optional[Sequence[str]] = None, threads: Optional[int] = None) -> "CpuTarget":
        feats = host.kernel_features() if features is None else tuple(features)
        unknown = sorted(set(feats) - set(host.KERNEL_FEATURES))
        if unknown:
            raise TargetError(f"cpu target: unknown CPU feature(s) {', '.join(unknown)} "
                              f"(features kernels use: {', '.join(host.KERNEL_FEATURES)})")
        n = host.default_threads() if threads is None else threads
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise TargetError(f"cpu target: threads must be a positive integer, got {threads!r}")
        return CpuTarget(tuple(sorted(set(feats))), n)

    def text(self) -> str:
        return f"cpu{{features={','.join(self.features)} threads={self.threads}}}"

    def pipeline(self) -> Pipeline:
        return Pipeline.of(*cpu_stages(self.features, self.threads, gomp=_has_gomp()))

    def portable(self) -> "CpuTarget":
        """The same target without ISA kernels (the portable vector schedule only)."""
        return CpuTarget((), self.threads)

    def load(self, artifact: Artifact, **kwargs) -> Callable:
        """A callable for `artifact`; a TargetError if it was compiled for another target or uses
        CPU features this machine lacks (its code would not run here)."""
        from qmlir.runtime.cpu import CpuFunction
        if artifact.kind != "cpu":
            raise TargetError(f"a {artifact.kind} artifact ({artifact.target}) cannot be loaded on the CPU")
        lacking = [f for f in Target.parse(artifact.target).features if not host.has(f)]
        if lacking:
            raise TargetError(f"the artifact was compiled for {artifact.target}; this CPU lacks "
                              f"{', '.join(lacking)} (compile for qmlir.Target.cpu() here)")
        return CpuFunction(artifact)


def default_toolkit() -> str:
    """A CUDA toolkit for libdevice (math functions) and ptxas: CUDA_HOME / CUDA_PATH, else
    /usr/local/cuda if present, else none (PTX is still emitted; math calls stay external)."""
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"):
        if os.environ.get(var):
            return os.environ[var]
    default = Path("/usr/local/cuda")
    return str(default) if (default / "nvvm" / "libdevice").is_dir() else ""


@dataclass(frozen=True)
class CudaTarget(Target):
    chip: str = "sm_90"
    features: str = "+ptx80"
    format: str = "isa"
    block_size: int = 256
    opt_level: int = 3
    toolkit: str = ""
    kind: ClassVar[str] = "cuda"

    @staticmethod
    def of(chip=None, features=None, format="isa", block_size=256, opt_level=3, toolkit=None, device=None):
        if chip is None and device is not None or (chip is None and _cuda_present()):
            from qmlir.runtime.cuda import chip_of, cuda_device
            detected_chip, detected_features = chip_of(cuda_device(device))
            chip = detected_chip
            features = features or detected_features
        chip = chip or "sm_90"
        features = features or "+ptx80"
        if not re.fullmatch(r"sm_\d+[a-z]?", chip):
            raise TargetError(f"cuda target: chip must look like sm_90, got '{chip}'")
        if format not in CUDA_FORMATS:
            raise TargetError(f"cuda target: format must be one of {', '.join(CUDA_FORMATS)}, got '{format}'")
        if block_size < 32 or block_size % 32 or block_size > 1024:
            raise TargetError(f"cuda target: block-size must be a multiple of 32 in [32, 1024], got {block_size}")
        if opt_level not in (0, 1, 2, 3):
            raise TargetError(f"cuda target: opt-level must be 0..3, got {opt_level}")
        return CudaTarget(chip, features, format, block_size, opt_level,
                          default_toolkit() if toolkit is None else toolkit)

    def text(self) -> str:
        return (f"cuda{{chip={self.chip} features={self.features} format={self.format} "
                f"block-size={self.block_size} opt-level={self.opt_level} toolkit={self.toolkit}}}")

    def pipeline(self) -> Pipeline:
        return Pipeline.of(*cuda_stages(self.chip, self.features, self.opt_level, self.format,
                                        self.block_size, self.toolkit))

    def load(self, artifact: Artifact, device=None, **kwargs) -> Callable:
        from qmlir.runtime.cuda import CudaFunction
        if artifact.kind != "cuda":
            raise TargetError(f"a {artifact.kind} artifact ({artifact.target}) cannot be loaded on CUDA")
        return CudaFunction(artifact, device)


def _cuda_present() -> bool:
    try:
        import torch
        return torch.backends.cuda.is_built() and torch.cuda.is_available()
    except Exception:  # noqa: BLE001  (no usable torch.cuda: no GPU to detect)
        return False


def as_target(value: Union[Target, str, None], device=None) -> Target:
    """A Target from a Target, its text ('cpu', 'cuda{chip=sm_80}') or None (the CPU here)."""
    if value is None:
        return Target.cpu()
    if isinstance(value, Target):
        return value
    if isinstance(value, str):
        if value.strip() == "cuda" and device is not None:
            return Target.cuda(device=device)
        return Target.parse(value)
    raise TargetError(f"target must be a qmlir.Target or its name ('cpu', 'cuda'), got {type(value).__name__}")


def _has_gomp() -> bool:
    """Whether threaded kernels can run on libgomp (torch's OpenMP runtime; qmlir/runtime/libs.py)."""
    from qmlir.runtime.libs import gomp_library
    return gomp_library() is not None


def _lower_to_cpu(features: str, threads: int) -> list:
    feats = None if features == "host" else [f for f in features.split(",") if f]
    return [str(s) for s in CpuTarget.of(feats, threads or None).pipeline().stages]


def _lower_to_cuda(chip: str, features: str, opt_level: int, format: str, block_size: int, toolkit: str) -> list:
    t = CudaTarget.of(chip, features, format, block_size, opt_level, toolkit or None)
    return [str(s) for s in t.pipeline().stages]


registry.register_pipeline(
    "qmlir-lower-to-cpu",
    "named pipeline of Target.cpu(): quant semantics, fold transposes/dequantization, select + expand kernels, "
    "bufferize with out-parameters, outline loops, libgomp threads, LLVM dialect",
    _lower_to_cpu,
    {"features": registry.Option(str, "host", "CPU features kernels may use (comma-separated; host: this CPU's)"),
     "threads": registry.Option(int, 0, "worker threads (0: this machine's CPUs)", minimum=0)},
)

registry.register_pipeline(
    "qmlir-lower-to-cuda",
    "named pipeline of Target.cuda(): quant semantics, bufferize, map linalg onto GPU threads, outline kernels, "
    "NVVM + PTX/cubin, host code via CUDA runtime calls",
    _lower_to_cuda,
    {
        "chip": registry.Option(str, "sm_90", "the GPU architecture (sm_80, sm_90, ...)"),
        "features": registry.Option(str, "+ptx80", "PTX ISA version (sm_90 needs +ptx80 or later)"),
        "opt-level": registry.Option(int, 3, "LLVM optimization level of the kernels", minimum=0, maximum=3),
        "format": registry.Option(str, "isa", "isa: PTX text; bin: cubin; fatbin: fat binary (need ptxas)",
                                  choices=CUDA_FORMATS),
        "block-size": registry.Option(int, 256, "threads per block (a multiple of 32)", minimum=32, maximum=1024),
        "toolkit": registry.Option(str, "", "CUDA toolkit path (libdevice, ptxas); default CUDA_HOME or /usr/local/cuda"),
    },
)
