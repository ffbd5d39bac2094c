"""Numeric precision: ``exact`` (float32 everywhere) or an opt-in ``fast`` mode.

``fast`` trades a measured amount of fidelity for speed where the hardware has a cheaper
number format: bfloat16 on CPUs with AVX512-BF16 or AMX (through OpenVINO), float16 on
GPUs. Where an engine has nothing faster than float32 on the device in use, ``fast``
runs float32 and :func:`fast_notice` says so, instead of pretending.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

PRECISIONS = ("exact", "fast")
EXACT, FAST = PRECISIONS
# CPU flags (Linux /proc/cpuinfo names) whose presence makes bfloat16 pay.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them; empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    OpenVINO lists bfloat16 among its capabilities on any AVX-512 CPU, where it is
    emulated and slower than float32, so the flags decide; where they cannot be read
    (no /proc/cpuinfo) the answer is no, and ``fast`` says it runs exact.
    """
    return bool(cpu_flags() & BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (what benchmarks and the engine ranking are keyed by)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def fast_notice(engine: str, device: str, alternative: str = "") -> str:
    """The one line said when ``fast`` is asked of an engine that has no faster mode on
    ``device``: it runs exact (float32) instead."""
    line = f"precision 'fast': {engine} has no faster mode than float32 on {device}; running exact"
    return f"{line} ({alternative})" if alternative else line
