"""OpenVINO as an engine: Intel's runtime, on the CPU (or an Intel GPU via OpenCL).

The graph is compiled once with its height and width left free, so photos, frames and
tiles of every size run on the same compiled model (OpenVINO's CPU plugin prepares its
kernels per shape and keeps them). The precision is always set explicitly: OpenVINO's
own default on CPUs with AVX512-BF16 or AMX is bfloat16, which is ``fast``, never
``exact``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import fast_graph, precision
from ..errors import CvstyleError, MissingPackageError, ModelError, quote, unknown_choice
from .opencv import DEVICES
from .streams import Idle

if TYPE_CHECKING:
    import onnx

OPENVINO_MISSING = "the openvino engine needs openvino: pip install -e '.[openvino]'"
CPU, GPU = "CPU", "GPU"
# A first forward makes OpenVINO's Python binding initialise function-local statics while
# it holds the GIL; two first forwards at once (two streams) can deadlock there, so each
# network's first forward runs alone.
_FIRST_FORWARD = threading.Lock()
# OpenVINO's errors open with where in its sources they were raised; the reason follows.
_SOURCE_LINES = ("Exception from ", "Check ", "FrontEnd API failed", "Summary:", "To facilitate")


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MissingPackageError(OPENVINO_MISSING) from None
    return openvino


def available() -> bool:
    """Whether OpenVINO is installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _core():
    """One OpenVINO runtime per process: it holds the plugins and their thread pools."""
    return _openvino().Core()


def version() -> str:
    return _openvino().__version__


def _target(device: str, devices: list[str]) -> str:
    """OpenVINO's device name for cvstyle's ``device``."""
    if device not in DEVICES:
        raise unknown_choice("device", device, DEVICES)
    if device.startswith("cuda"):
        raise CvstyleError(
            "the openvino engine has no CUDA device (its GPU plugin drives Intel GPUs: "
            "--device opencl), use --engine onnxruntime or opencv for CUDA"
        )
    if device == "opencl":
        if not any(name.startswith(GPU) for name in devices):
            raise CvstyleError(f"device 'opencl' with openvino needs an Intel GPU, and OpenVINO sees only {', '.join(devices)}")
        return GPU
    return CPU


def inference_precision(wanted: str, target: str) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for cvstyle's ``wanted`` precision."""
    if wanted not in precision.PRECISIONS:
        raise unknown_choice("precision", wanted, precision.PRECISIONS)
    if wanted == precision.EXACT:
        return "f32"
    if target == GPU:
        return "f16"
    return "bf16" if precision.cpu_has_bf16() else "f32"


def reason(error: BaseException) -> str:
    """The line of an OpenVINO error that says what went wrong (such as ``No conversion
    rule found for operations: Det-18``), not where in OpenVINO it was raised."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = [line[3:] for line in lines if line.startswith("-- ")]
    plain = [line for line in lines if not line.startswith(_SOURCE_LINES)]
    return quote((summary or plain or lines or ["unknown error"])[0])


def _any_size(model, openvino) -> None:
    """Free the input's height and width; one image per forward, as the runner feeds."""
    for value in model.inputs:
        shape = value.get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() == 4:
            model.reshape({value.any_name: openvino.PartialShape([1, shape[1], -1, -1])})


class OpenVinoNetwork:
    """An ONNX graph compiled by OpenVINO. ``precision`` is what it runs: ``exact``
    (float32) or ``fast`` (bfloat16 on the CPU, float16 on a GPU). ``streams`` > 1 on
    the CPU: that many forwards may run at once, each on its share of the cores
    (:mod:`.streams`)."""

    engine = "openvino"

    def __init__(self, graph: "onnx.ModelProto", device: str = "auto", name: str = "model",
                 wanted: str = precision.EXACT, streams: int = 1):
        openvino = _openvino()
        core = _core()
        target = _target(device, core.available_devices)
        hint = inference_precision(wanted, target)
        self.device = "cpu" if target == CPU else "opencl"
        self.precision = precision.FAST if hint != "f32" else precision.EXACT
        self.streams = streams if target == CPU else 1
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.streams > 1:
            config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=self.streams)
        try:
            if target == CPU:  # measured on CPUs only (cvstyle.fast_graph)
                graph = fast_graph.faster_graph(graph)
            model = core.read_model(graph.SerializeToString(), b"")
            _any_size(model, openvino)
            self.compiled = core.compile_model(model, target, config)
        except (RuntimeError, ValueError, TypeError) as error:  # OpenVINO's untyped failures
            raise ModelError(f"{name}: openvino cannot compile this model ({reason(error)})") from None
        self.requests = Idle([self.compiled.create_infer_request() for _ in range(self.streams)])
        self.warm = False  # whether a forward has run
        self.input_names = [value.any_name for value in self.compiled.inputs]

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        if len(feeds) == 1 and len(self.input_names) == 1:
            feeds = {self.input_names[0]: next(iter(feeds.values()))}
        with self.requests.take() as request:
            if self.warm:
                results = request.infer(feeds)  # copies out of the request's own buffers
            else:
                with _FIRST_FORWARD:
                    results = request.infer(feeds)
                    self.warm = True
        if not outputs:
            return [results[value] for value in self.compiled.outputs]
        return [results[self.compiled.output(name)] for name in outputs]
