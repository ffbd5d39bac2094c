"""Which installed engine runs fastest on this CPU: measured once, then remembered.

The ranking differs between machines (an AVX2 laptop, an AVX-512 server, one with AMX),
so ``auto`` does not assume it. The first time it is needed, every installed engine runs
the instance_norm fixture network (:mod:`cvstyle.testing`) at 320x240: one warm-up
forward, then the fastest of three, in each precision the engine really has. Staged
runs (large instance_norm photos, :mod:`cvstyle.tiling.staged`) rank apart, at their
first use: they run many small networks in turn, which engines do at other relative
speeds than one forward. The figures are kept in the user cache folder
(``engine-timings.json``) under a key made of the CPU model, its core count, the
engines' versions and the method, so a new CPU or an upgraded engine is measured again;
deleting the file measures again too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import platformdirs

from .. import precision, testing
from ..errors import first_line
from ..files import write_atomically
from ..runner import INPUT, Network
from . import onnxruntime as ort_engine
from . import openvino as ov_engine

METHOD = "instance_norm 320x240, best of 3 after a warm-up"
STAGED_METHOD = "instance_norm 640x480 staged in 128 px tiles, the second of two runs"
PROBE_SHAPE = (1, 3, 240, 320)
RUNS = 3
log = logging.getLogger(__name__)
Build = Callable[[object, str, str], Network]  # (graph, engine, precision) -> network on the CPU
StagedRun = Callable[[str, str], float]  # (engine, precision) -> seconds of one staged run
Timings = dict[str, dict[str, float]]  # {precision: {engine: time}}


def installed_engines() -> list[str]:
    """The engines this Python can run: OpenCV always, the others where installed."""
    engines = ["opencv"]
    if ort_engine.available_providers():
        engines.append("onnxruntime")
    if ov_engine.available():
        engines.append("openvino")
    return engines


def _versions() -> str:
    parts = [f"opencv {cv2.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    if ov_engine.available():
        parts.append(f"openvino {ov_engine.version()}")
    return ", ".join(parts)


def cache_key(method: str = METHOD) -> str:
    """What the timings depend on: CPU model, core count, engine versions, method."""
    return f"{precision.cpu_model()} x{os.cpu_count()}; {_versions()}; {method}"


def cache_file() -> Path:
    return Path(platformdirs.user_cache_dir("cvstyle")) / "engine-timings.json"


def _fastest_ms(network: Network, blob: np.ndarray) -> float:
    network.run({INPUT: blob})
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        network.run({INPUT: blob})
        times.append(time.perf_counter() - start)
    return round(min(times) * 1000, 1)


def _each(engines: list[str], timed: Callable[[str, str], float]) -> Timings:
    """``timed(engine, precision)`` for each of ``engines`` in each precision it has;
    ``fast`` lists only the engines that have a faster mode than float32 here."""
    timings: Timings = {precision.EXACT: {}, precision.FAST: {}}
    for engine in engines:
        for wanted in precision.PRECISIONS:
            if wanted == precision.FAST and not (engine == "openvino" and precision.cpu_has_bf16()):
                continue
            try:
                timings[wanted][engine] = timed(engine, wanted)
            except Exception as error:  # any engine's own failure: ranked last, not fatal
                log.info("engine timing: %s (%s) left out: %s", engine, wanted, first_line(error))
    return timings


def measure(build: Build) -> Timings:
    """Milliseconds per forward of each installed engine (:func:`_each`)."""
    from ..onnx_export import to_onnx

    graph = to_onnx(testing.build_checkpoint("instance_norm"), name="engine-timing")
    blob = np.random.default_rng(0).normal(0.0, testing.PIXEL_STD, PROBE_SHAPE).astype(np.float32)
    return _each(installed_engines(), lambda engine, wanted: _fastest_ms(build(graph, engine, wanted), blob))


def _remembered(method: str, measure_now: Callable[[], Timings]) -> Timings:
    """This machine's timings by ``method``, from the cache file or measured now (and saved)."""
    path, key = cache_file(), cache_key(method)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    if isinstance(saved.get(key), dict):
        return saved[key]
    log.info("measuring the installed engines once on this CPU (%s)", method)
    saved[key] = measure_now()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(saved, indent=1).encode())
    except OSError as error:  # a read-only cache: measured again next time
        log.info("cannot keep the engine timings in %s: %s", path, error.strerror or error)
    return saved[key]


@functools.lru_cache(maxsize=1)
def timings(build: Build) -> Timings:
    """This machine's forward timings (:data:`METHOD`)."""
    return _remembered(METHOD, lambda: measure(build))


@functools.lru_cache(maxsize=1)
def staged_timings(run: StagedRun) -> Timings:
    """This machine's staged-run timings (:data:`STAGED_METHOD`), in seconds."""
    return _remembered(STAGED_METHOD, lambda: _each(_staged_candidates(), run))


def _by_speed(engines: list[str], measured: Timings, wanted: str) -> list[str]:
    """``engines``, fastest first in the ``wanted`` precision (an engine without a fast
    mode counts with its exact time); engines that failed to run come last."""
    exact, fast = measured.get(precision.EXACT, {}), measured.get(precision.FAST, {})

    def speed(engine: str) -> float:
        if wanted == precision.FAST and engine in fast:
            return fast[engine]
        return exact.get(engine, float("inf"))

    return sorted(engines, key=speed)


def ranked(build: Build, wanted: str) -> list[str]:
    """Installed engines, fastest first at single forwards in the ``wanted`` precision."""
    installed = installed_engines()
    if len(installed) == 1:
        return installed
    return _by_speed(installed, timings(build), wanted)


def _staged_candidates() -> list[str]:
    # OpenCV's forwards ran several times slower than the other two engines' on every CPU
    # measured (docs/benchmarks.md), and a staged run is those forwards; it stays out
    # rather than add seconds to the timing.
    return [engine for engine in installed_engines() if engine != "opencv"]


def staged_ranked(run: StagedRun, wanted: str) -> list[str]:
    """ONNX Runtime and OpenVINO, where installed, fastest first at staged runs in the
    ``wanted`` precision (``run`` times one: see :func:`cvstyle.tiling.time_staged_probe`)."""
    candidates = _staged_candidates()
    if len(candidates) <= 1:
        return candidates
    return _by_speed(candidates, staged_timings(run), wanted)
