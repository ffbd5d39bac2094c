"""Memory budgets: sizes as people write them, and what this machine has free."""

from __future__ import annotations

import os
import re

from .errors import CvstyleError

# Share of the memory available when a run starts that large photos may use by default.
DEFAULT_SHARE = 0.5
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(size: int | float | str) -> int:
    """Bytes from ``1500000000``, ``"1.5G"``, ``"800M"``, ``"2GiB"`` (binary units)."""
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        if size <= 0:
            raise CvstyleError(f"memory size must be positive, not {size}")
        return int(size)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(size).upper())
    if not match or float(match.group(1)) <= 0:
        raise CvstyleError(f"memory size {str(size)[:40]!r} is not a size such as 1.5G, 800M or 2000000000")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _proc_kib(path: str, key: str) -> int | None:
    """A ``key: N kB`` line of a /proc file, in bytes (None where there is none)."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int:
    """Bytes of memory available to new work now (MemAvailable on Linux)."""
    available = _proc_kib("/proc/meminfo", "MemAvailable")
    return available if available is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_budget() -> int:
    """The memory a large photo may use when none is given: a share of what is available."""
    return int(available_memory() * DEFAULT_SHARE)


def resident_memory() -> int:
    """Bytes this process holds in RAM now (VmRSS on Linux; 0 where unknown)."""
    return _proc_kib("/proc/self/status", "VmRSS") or 0
