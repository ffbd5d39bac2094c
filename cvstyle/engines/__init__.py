"""Which inference engine runs a model, and the one cache of loaded networks.

Every engine takes the same blob and gives the same output, so they share the runner's
pre- and post-processing (:class:`~cvstyle.runner.StyleRunner`) and differ only in the
network object each module here builds: :mod:`.opencv` (OpenCV's DNN module) and
:mod:`.onnxruntime`. `.t7` checkpoints go to OpenCV 4's Torch importer directly; every
other case runs the model's ONNX graph (:attr:`cvstyle.model.Model.graph`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import unknown_choice
from ..model import Model, cached_onnx, clear_model_cache, open_model
from ..runner import VGG, Network, Preprocessing, StyleRunner
from . import onnxruntime as ort_engine
from .opencv import (
    DEVICES, OpenCvNetwork, cuda_available, has_new_engine, has_torch_importer, read_graph,
    read_onnx_file, read_torch,
)

if TYPE_CHECKING:
    import onnx

ENGINES = ("auto", "opencv", "onnxruntime")
# On the CPU ONNX Runtime measured faster than OpenCV for both families
# (docs/benchmarks.md), so `auto` prefers it there.
AUTO_CPU_ENGINE = "onnxruntime"
CACHE_SIZE = 16  # loaded networks kept per process (each model, variant, engine, device)
WHOLE = "whole"  # the variant that is the model as it is

__all__ = ["DEVICES", "ENGINES", "choose_engine", "load_runner", "load_variant", "clear_network_cache"]


def choose_engine(engine: str, device: str, model: Model | str | os.PathLike) -> str:
    """``opencv`` or ``onnxruntime``: ``auto`` takes ONNX Runtime when it has a GPU provider
    for ``device``, OpenCV for OpenCL, and otherwise the faster engine on the CPU."""
    if engine not in ENGINES:
        raise unknown_choice("engine", engine, ENGINES)
    if engine != "auto":
        return engine
    providers = ort_engine.available_providers()
    is_onnx = model.is_onnx if isinstance(model, Model) else os.fspath(model).lower().endswith(".onnx")
    # A `.t7` reaches ONNX Runtime only through the converter, which needs `onnx`.
    convertible = is_onnx or importlib.util.find_spec("onnx") is not None
    if not providers or not convertible or device == "opencl":
        return "opencv"
    gpu = ort_engine.TENSORRT in providers if device == "cuda-fp16" else ort_engine.CUDA in providers
    if device != "cpu" and gpu:
        return "onnxruntime"
    if device.startswith("cuda") or (device == "auto" and cuda_available()):
        return "opencv"  # OpenCV's own CUDA backend, or its clear error when it has none
    return AUTO_CPU_ENGINE


def build_network(graph: "onnx.ModelProto", engine: str, device: str, name: str) -> Network:
    """An in-memory graph loaded on ``engine`` (``opencv`` or ``onnxruntime``), uncached."""
    if engine == "onnxruntime":
        return ort_engine.OnnxRuntimeNetwork(graph, device, name)
    return OpenCvNetwork(read_graph(graph, name), device, classic=not has_new_engine())


def _whole_opencv_network(model: Model, device: str) -> Network:
    """The model itself on OpenCV, read from its file (a `.t7` by the Torch importer
    where there is one, else the `.onnx` or the `.t7`'s kept conversion)."""
    if model.is_onnx:
        return OpenCvNetwork(read_onnx_file(model.path), device)
    if has_torch_importer():
        return OpenCvNetwork(read_torch(model.path), device)
    return OpenCvNetwork(read_onnx_file(cached_onnx(model.path, model.tree)), device)


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
) -> StyleRunner:
    """The runner of a variant of ``model`` (named ``variant``, its graph made by
    ``make_graph`` on first use), cached with the model's own networks."""
    engine = choose_engine(engine, device, model)
    prep = preprocessing or model.preprocessing
    key = (model.key, variant, engine, device, prep)

    def load() -> StyleRunner:
        if variant == WHOLE and engine == "opencv":
            network = _whole_opencv_network(model, device)
        else:
            network = build_network(make_graph(), engine, device, model.name)
        return StyleRunner(network, prep, model.name)

    return _cached(key, load)


def load_runner(
    model: Model | str | os.PathLike, engine: str = "auto", device: str = "auto",
    preprocessing: Preprocessing | None = None,
) -> StyleRunner:
    """The (cached) runner of the `.t7` or `.onnx` model at ``model`` (a path or an open
    :class:`~cvstyle.model.Model`) on ``engine`` and ``device``.

    It is called on uint8 BGR images and returns uint8 BGR images; its ``engine`` and
    ``device`` say where it runs. ``preprocessing`` is what a model given by path expects
    (fast-neural-style's VGG by default).
    """
    if not isinstance(model, Model):
        model = open_model(model, preprocessing or VGG)
    return load_variant(model, engine, device, WHOLE, lambda: model.graph, preprocessing)


def clear_network_cache() -> None:
    """Forget every loaded model and network (they are loaded again on next use)."""
    with _cache_lock:
        _cache.clear()
    clear_model_cache()
