"""What the running CPU can do, read once from the OS (Linux: /proc/cpuinfo flags).

The CPU pipeline uses dot-product instructions (AVX512_BF16 `vdpbf16ps`, AVX512_VNNI
`vpdpbusd`) only when the CPU running the process has them; everything else takes the portable
vector path. The JIT compiles for the host CPU, so code built here runs here.
`QMLIR_CPU_DISABLE=avx512_bf16,avx512_vnni` hides features (to test the portable path).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def _flags() -> frozenset:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has(feature: str) -> bool:
    """True when the host CPU reports `feature` (a /proc/cpuinfo flag name) and it is not disabled."""
    disabled = {f.strip() for f in os.environ.get("QMLIR_CPU_DISABLE", "").split(",") if f.strip()}
    return feature not in disabled and feature in _flags()
