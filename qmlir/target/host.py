"""What the running machine offers, read once from the OS: the CPU's features (Linux:
/proc/cpuinfo flags) and the CPUs this process may use. Only `Target.cpu()` reads these, when
it detects the host; passes and kernels get them as options, never from here.

`QMLIR_CPU_DISABLE=avx2,avx512_bf16,avx512_vnni` hides features (to test the portable path);
`QMLIR_NUM_THREADS=N` sets the worker count.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

# The CPU features some kernel in qmlir/kernels can use (others do not change the code).
KERNEL_FEATURES = ("avx2", "avx512_bf16", "avx512_vnni")


@lru_cache(maxsize=None)
def _flags() -> frozenset:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def disabled_features() -> frozenset:
    return frozenset(f.strip() for f in os.environ.get("QMLIR_CPU_DISABLE", "").split(",") if f.strip())


def has(feature: str) -> bool:
    """True when the host CPU reports `feature` (a /proc/cpuinfo flag name) and it is not disabled."""
    return feature not in disabled_features() and feature in _flags()


def kernel_features() -> tuple:
    """The kernel-relevant features of the host CPU, minus QMLIR_CPU_DISABLE."""
    return tuple(f for f in KERNEL_FEATURES if has(f))


def default_threads() -> int:
    """Worker count for parallel kernels: QMLIR_NUM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("QMLIR_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            from qmlir.errors import QmlirError
            raise QmlirError(f"QMLIR_NUM_THREADS must be a positive integer, got '{env}'") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
