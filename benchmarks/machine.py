"""The machine a run measures: CPU and its SIMD, cores, memory, versions, threads, load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from harness import ROOT, Plan, table

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    cpu, flags = "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return cpu, flags


def memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        return f"{kib / 2**20:.1f} GiB"
    return "unknown"


def package_versions() -> str:
    versions = [f"opencv-python {cv2.__version__}", f"numpy {np.__version__}"]
    for package in ("onnxruntime", "openvino", "torch"):
        try:
            versions.append(f"{package} {__import__(package).__version__}")
        except ImportError:
            versions.append(f"{package} not installed")
    return ", ".join(versions)


def project_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip() or "?"
    return "?"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_line() -> str:
    """One line for a standalone benchmark's output: CPU, cores, versions, commit, load, time."""
    cpu, flags = cpu_model_and_flags()
    simd = ", ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if flag in flags)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu} ({simd}), {usable} cores; {package_versions()}; commit {project_commit()}; "
            f"load {load_average()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def machine_description(plan: Plan) -> str:
    """The machine section of the document, as a markdown table."""
    cpu, flags = cpu_model_and_flags()
    simd = ", ".join(flag for flag in SIMD_FLAGS if flag in flags)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parallel = next(
        (line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
         if "Parallel framework" in line),
        "?",
    )
    rows = [
        ["CPU", f"{cpu} ({simd or 'no AVX2'})"],
        ["cores", f"{os.cpu_count()} logical, {usable} usable by this process"],
        ["memory", memory_total()],
        ["Python", f"{platform.python_version()} on {platform.platform(terse=True)}"],
        ["versions", package_versions()],
        ["OpenCV threads", f"cv2.getNumThreads() = {cv2.getNumThreads()} ({parallel}); OpenCL: "
         f"{'available' if cv2.ocl.haveOpenCL() else 'not available'}"],
        ["project", f"cvstyle at {project_commit()}"],
        ["mode", "QUICK (fewer sizes and repeats, no 48 or 100 MP): indicative only" if plan.quick else "full"],
        ["load average at start", load_average()],
    ]
    return table(["", ""], rows)
