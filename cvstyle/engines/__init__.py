"""Which inference engine runs a model, and the one cache of loaded networks.

Every engine takes the same blob and gives the same output, so they share the runner's
pre- and post-processing (:class:`~cvstyle.runner.StyleRunner`) and differ only in the
network object each module here builds: :mod:`.opencv` (OpenCV's DNN module),
:mod:`.onnxruntime` and :mod:`.openvino`; on the CPU ``auto`` takes the fastest one
installed, as :mod:`.ranking` measured it. `.t7` checkpoints go to OpenCV 4's Torch
importer directly; every other case runs the model's ONNX graph
(:attr:`cvstyle.model.Model.graph`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import precision
from ..errors import ModelError, unknown_choice
from ..model import Model, cached_onnx, clear_model_cache, open_model
from ..runner import VGG, Network, Preprocessing, StyleRunner
from . import onnxruntime as ort_engine
from . import openvino as ov_engine
from . import ranking
from .opencv import (
    DEVICES, OpenCvNetwork, cuda_available, has_classic_engine, has_new_engine, has_torch_importer, read_graph,
    read_onnx_file, read_torch,
)

if TYPE_CHECKING:
    import onnx

ENGINES = ("auto", "opencv", "onnxruntime", "openvino")
PRECISIONS = precision.PRECISIONS
CACHE_SIZE = 16  # loaded networks kept per process (each model, variant, engine, device)
WHOLE = "whole"  # the variant that is the model as it is
# Forwards at one input size before it runs at full speed: OpenVINO compiles a model for
# a size at its second forward; the other engines are ready after one.
WARM_UP_FORWARDS = ov_engine.SHAPE_REPEATS

log = logging.getLogger(__name__)

__all__ = [
    "DEVICES", "ENGINES", "PRECISIONS", "WARM_UP_FORWARDS", "check_choice", "choose_engine", "engine_candidates",
    "load_runner", "load_variant", "clear_network_cache",
]


def choose_engine(
    engine: str, device: str, model: Model | str | os.PathLike, wanted: str = precision.EXACT
) -> str:
    """The engine that runs ``model``: ``engine`` itself, or the first of ``auto``'s
    :func:`engine_candidates`."""
    return engine_candidates(engine, device, model, wanted)[0]


def engine_candidates(
    engine: str, device: str, model: Model | str | os.PathLike, wanted: str = precision.EXACT
) -> list[str]:
    """Engines to try in turn: ``auto`` takes ONNX Runtime when it has a GPU provider for
    ``device``, OpenCV for OpenCL, and on the CPU every installed engine, fastest first
    as measured on this machine in the ``wanted`` precision (:mod:`.ranking`)."""
    check_choice(engine, wanted)
    if engine != "auto":
        return [engine]
    providers = ort_engine.available_providers()
    is_onnx = model.is_onnx if isinstance(model, Model) else os.fspath(model).lower().endswith(".onnx")
    # A `.t7` reaches the ONNX engines only through the converter, which needs `onnx`.
    convertible = is_onnx or importlib.util.find_spec("onnx") is not None
    if not convertible or device == "opencl":
        return ["opencv"]
    gpu = ort_engine.TENSORRT in providers if device == "cuda-fp16" else ort_engine.CUDA in providers
    if device != "cpu" and gpu:
        return ["onnxruntime"]
    if device.startswith("cuda") or (device == "auto" and cuda_available()):
        return ["opencv"]  # OpenCV's own CUDA backend, or its clear error when it has none
    return ranking.ranked(_probe_network, wanted)


def check_choice(engine: str, wanted: str = precision.EXACT, installed: bool = False) -> None:
    """Fail on an unknown engine or precision, and where ``installed``, on an engine
    asked for by name whose package is missing, as loading a model would (without
    loading one)."""
    if engine not in ENGINES:
        raise unknown_choice("engine", engine, ENGINES)
    if wanted not in PRECISIONS:
        raise unknown_choice("precision", wanted, PRECISIONS)
    if installed and engine == "onnxruntime":
        ort_engine.require_onnxruntime()
    elif installed and engine == "openvino":
        ov_engine.require_openvino()


def build_network(
    graph: "onnx.ModelProto", engine: str, device: str, name: str, wanted: str = precision.EXACT,
    pooled: bool = True, streams: int = 1,
) -> Network:
    """An in-memory graph loaded on ``engine``, uncached. Its ``precision`` says whether
    it runs ``fast`` (``wanted``, where the engine has a faster mode on ``device``).
    ``pooled``: the engine may keep working memory between runs (ONNX Runtime's arena,
    OpenVINO's buffers and models compiled per shape), the fastest for a network run
    again and again; staged runs, which run many networks in turn, keep one arena for
    all of them (ONNX Runtime) or hand the memory back after each run (OpenVINO).
    ``streams``: forwards that may run at once, on engines that can split the cores
    (:mod:`.streams`)."""
    if engine == "openvino":
        return ov_engine.OpenVinoNetwork(graph, device, name, wanted, streams, pooled)
    if engine == "onnxruntime":
        return ort_engine.OnnxRuntimeNetwork(graph, device, name, pooled, streams)
    return OpenCvNetwork(read_graph(graph, name), device, classic=not has_new_engine())


def _say_no_fast_mode(engine: str, device: str) -> None:
    """``fast`` asked for, exact running (said as each model loads)."""
    if device != "cpu":
        hint = ""
    elif engine == "openvino" or not precision.cpu_has_bf16():
        hint = "this CPU has no AVX512-BF16 or AMX"
    else:
        hint = "--engine openvino runs bfloat16 on this CPU" if ov_engine.available() else ""
    log.warning(precision.fast_notice(engine, device, hint))


def _probe_network(graph: "onnx.ModelProto", engine: str, wanted: str) -> Network:
    return build_network(graph, engine, "cpu", "engine timing", wanted)


def _whole_opencv_network(model: Model, device: str) -> Network:
    """The model itself on OpenCV, read from its file (a `.t7` by the Torch importer
    where there is one, else the `.onnx` or the `.t7`'s kept conversion)."""
    if not model.is_onnx and has_torch_importer():
        return OpenCvNetwork(read_torch(model.path), device)
    path = model.path if model.is_onnx else cached_onnx(model.path, model.tree)
    return OpenCvNetwork(read_onnx_file(path), device, classic=has_classic_engine())


_cache: OrderedDict[tuple, StyleRunner] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, load: Callable[[], StyleRunner]) -> StyleRunner:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    runner = load()  # outside the lock: loading takes seconds, other models need not wait
    with _cache_lock:
        runner = _cache.setdefault(key, runner)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return runner


def load_variant(
    model: Model, engine: str, device: str, variant: str,
    make_graph: Callable[[], "onnx.ModelProto"], preprocessing: Preprocessing | None = None,
    wanted: str = precision.EXACT, pooled: bool = True, streams: int = 1,
) -> StyleRunner:
    """The runner of a variant of ``model`` (named ``variant``, its graph made by
    ``make_graph`` on first use) in the ``wanted`` precision with ``streams``, cached
    with the model's own networks. Under ``auto``, a model that one engine cannot load
    goes to the next."""
    candidates = engine_candidates(engine, device, model, wanted)
    prep = preprocessing or model.preprocessing
    for position, candidate in enumerate(candidates):

        def load(candidate: str = candidate) -> StyleRunner:
            if variant == WHOLE and candidate == "opencv":
                network = _whole_opencv_network(model, device)
            else:
                network = build_network(make_graph(), candidate, device, model.name, wanted, pooled, streams)
            if wanted == precision.FAST and network.precision != precision.FAST:
                _say_no_fast_mode(candidate, network.device)
            return StyleRunner(network, prep, model.name)

        try:
            return _cached((model.key, variant, candidate, device, prep, wanted, streams), load)
        except ModelError as error:
            if position == len(candidates) - 1:
                raise
            log.info("%s; engine auto: trying %s instead", error, candidates[position + 1])
    raise AssertionError("engine_candidates always gives at least one engine")


def load_runner(
    model: Model | str | os.PathLike, engine: str = "auto", device: str = "auto",
    preprocessing: Preprocessing | None = None, wanted: str = precision.EXACT, streams: int = 1,
) -> StyleRunner:
    """The (cached) runner of the `.t7` or `.onnx` model at ``model`` (a path or an open
    :class:`~cvstyle.model.Model`) on ``engine`` and ``device``.

    It is called on uint8 BGR images and returns uint8 BGR images; its ``engine`` and
    ``device`` say where it runs, its ``precision`` whether it runs ``fast`` (``wanted``
    where the engine has a faster mode). ``preprocessing`` is what a model given by path
    expects (fast-neural-style's VGG by default). ``streams`` > 1 loads it for that many
    forwards at once (:mod:`.streams`), each slower, together faster.
    """
    if not isinstance(model, Model):
        model = open_model(model, preprocessing or VGG)
    return load_variant(model, engine, device, WHOLE, lambda: model.graph, preprocessing, wanted, streams=streams)


_dependent_caches: list[Callable[[], None]] = []


def on_clear(forget: Callable[[], None]) -> None:
    """Have :func:`clear_network_cache` call ``forget`` too: for caches built from
    loaded networks elsewhere (tiling's staged networks), which engines cannot import."""
    _dependent_caches.append(forget)


def clear_network_cache() -> None:
    """Forget every loaded model and network (they are loaded again on next use)."""
    with _cache_lock:
        _cache.clear()
    for forget in _dependent_caches:
        forget()
    clear_model_cache()
