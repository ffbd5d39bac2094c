"""OpenVINO as an engine: Intel's runtime, on the CPU (or an Intel GPU via OpenCL).

The graph is compiled once with its height and width left free, so photos, frames and
tiles of every size run on the same compiled model. A shape that comes back (the frames
of a live stream or a clip, a folder of same-sized photos, the tiles of a large photo)
gets a model compiled for that shape alone, which OpenVINO runs faster than the free one
(docs/benchmarks.md), on the CPU with eccv16's residual trunk in Winograd's form
(:func:`cvstyle.fast_graph.winograd_residuals`); the free one keeps serving every other
shape. The precision is always set explicitly: OpenVINO's own default on CPUs with
AVX512-BF16 or AMX is bfloat16, which is ``fast``, never ``exact``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import fast_graph, precision
from ..errors import CvstyleError, MissingPackageError, ModelError, quote, unknown_choice
from .opencv import DEVICES
from .streams import Idle

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)
OPENVINO_MISSING = "the openvino engine needs openvino: pip install -e '.[openvino]'"
CPU, GPU = "CPU", "GPU"
# A first forward makes OpenVINO's Python binding initialise function-local statics while
# it holds the GIL; two first forwards at once (two streams) can deadlock there, so each
# network's first forward runs alone.
_FIRST_FORWARD = threading.Lock()
# A shape gets its own compiled model at its second forward; the most recently used
# few are kept (each holds its own working memory).
SHAPE_REPEATS = 2
SHAPE_MODELS = 2
SHAPES_COUNTED = 16  # shapes remembered while counting their forwards
# OpenVINO's errors open with where in its sources they were raised; the reason follows.
_SOURCE_LINES = ("Exception from ", "Check ", "FrontEnd API failed", "Summary:", "To facilitate")


def require_openvino():
    """The openvino module, or one line naming the pip command that installs it."""
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
    return require_openvino().Core()


def version() -> str:
    return require_openvino().__version__


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


class _Compiled:
    """A compiled model and its infer requests, one per stream; it keeps its working
    memory between forwards until :meth:`release_memory`."""

    def __init__(self, compiled, streams: int):
        self.compiled = compiled
        self.requests = Idle([compiled.create_infer_request() for _ in range(streams)])
        self.warm = False  # whether a forward has run
        self.running = 0  # forwards in flight
        self.lock = threading.Lock()  # a forward never starts while the memory is handed back

    def infer(self, feeds: dict[str, np.ndarray]):
        with self.requests.take() as request:
            with self.lock:
                self.running += 1
            try:
                # Inputs and outputs are copied into and out of the request's buffers:
                # inputs read in place (share_inputs) corrupted the heap when two
                # streams ran a model of free size (docs/benchmarks.md).
                if self.warm:
                    return request.infer(feeds)
                with _FIRST_FORWARD:
                    results = request.infer(feeds)
                    self.warm = True
                return results
            finally:
                with self.lock:
                    self.running -= 1

    def release_memory(self) -> None:
        """Hand back the working memory of forwards past, if none is running."""
        with self.lock:
            if self.running:
                return
            try:
                self.compiled.release_memory()
            except RuntimeError as error:  # OpenVINO found a request busy: the memory stays
                log.info("openvino keeps a model's working memory (%s)", reason(error))


class OpenVinoNetwork:
    """An ONNX graph compiled by OpenVINO. ``precision`` is what it runs: ``exact``
    (float32) or ``fast`` (bfloat16 on the CPU, float16 on a GPU). ``streams`` > 1 on
    the CPU: that many forwards may run at once, each on its share of the cores
    (:mod:`.streams`). ``pooled``: shapes that come back get a compiled model of their
    own (each with its own working memory); staged runs, which run many networks in
    turn, keep one model and hand its memory back when a stage ends
    (:meth:`release_memory`)."""

    engine = "openvino"

    def __init__(self, graph: "onnx.ModelProto", device: str = "auto", name: str = "model",
                 wanted: str = precision.EXACT, streams: int = 1, pooled: bool = True):
        openvino = require_openvino()
        core = _core()
        target = _target(device, core.available_devices)
        hint = inference_precision(wanted, target)
        self.device = "cpu" if target == CPU else "opencl"
        self.precision = precision.FAST if hint != "f32" else precision.EXACT
        self.streams = streams if target == CPU else 1
        self.config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.streams > 1:
            self.config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=self.streams)
        self.target, self.name = target, name
        try:
            if target == CPU:  # measured on CPUs only (cvstyle.fast_graph)
                graph = fast_graph.faster_graph(graph)
            self.model = core.read_model(graph.SerializeToString(), b"")
            _any_size(self.model, openvino)
            self.any_size = _Compiled(core.compile_model(self.model, target, self.config), self.streams)
        except (RuntimeError, ValueError, TypeError) as error:  # OpenVINO's untyped failures
            raise ModelError(f"{name}: openvino cannot compile this model ({reason(error)})") from None
        self.compiled = self.any_size.compiled
        self.input_names = [value.any_name for value in self.compiled.inputs]
        self.pooled = pooled
        self.graph = graph if pooled else None
        self.shape_source = None  # what models compiled per shape are made from (_shape_source)
        self.forwards: OrderedDict[tuple, int] = OrderedDict()  # per input shape
        self.shape_models: OrderedDict[tuple, _Compiled] = OrderedDict()
        self.shape_lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        if len(feeds) == 1 and len(self.input_names) == 1:
            feeds = {self.input_names[0]: next(iter(feeds.values()))}
        chosen = self._for_shape(feeds) if self.pooled else self.any_size
        results = chosen.infer(feeds)
        if not outputs:
            return [results[i] for i in range(len(self.compiled.outputs))]
        return [results[chosen.compiled.output(name)] for name in outputs]

    def release_memory(self) -> None:
        """Hand back the working memory the compiled models keep between forwards."""
        with self.shape_lock:
            for compiled in (self.any_size, *self.shape_models.values()):
                compiled.release_memory()

    def _shape_source(self):
        """The model that shapes which come back are compiled from: on the CPU with the
        residual trunk in Winograd's form (cvstyle.fast_graph), which runs faster but
        compiles slower, more than one forward wins back; made at the first such shape."""
        if self.shape_source is None:
            winograd = fast_graph.winograd_residuals(self.graph) if self.target == CPU else self.graph
            self.shape_source = self.model if winograd is self.graph else _core().read_model(winograd.SerializeToString(), b"")
            self.graph = None  # not needed any more
        return self.shape_source

    def _for_shape(self, feeds: dict[str, np.ndarray]) -> _Compiled:
        """The compiled model for these inputs' shape: its own once it has come back,
        the any-size one before (and if compiling it for the shape fails)."""
        shape = tuple((name, value.shape) for name, value in sorted(feeds.items()))
        with self.shape_lock:
            if shape in self.shape_models:
                self.shape_models.move_to_end(shape)
                return self.shape_models[shape]
            self.forwards[shape] = self.forwards.pop(shape, 0) + 1
            if len(self.forwards) > SHAPES_COUNTED:
                self.forwards.popitem(last=False)
            if self.forwards[shape] < SHAPE_REPEATS:
                return self.any_size
            del self.forwards[shape]
            try:
                fixed = self._shape_source().clone()
                fixed.reshape({name: list(dims) for name, dims in shape})
                compiled = _Compiled(_core().compile_model(fixed, self.target, self.config), self.streams)
            except (RuntimeError, ValueError, TypeError) as error:
                log.info("%s: openvino keeps its any-size model for %s (%s)", self.name, shape, reason(error))
                compiled = self.any_size  # not tried again while the shape is kept
            self.shape_models[shape] = compiled
            if len(self.shape_models) > SHAPE_MODELS:
                self.shape_models.popitem(last=False)
            if compiled is not self.any_size:
                # The memory the any-size model kept for this shape is the new model's now.
                self.any_size.release_memory()
            return compiled
