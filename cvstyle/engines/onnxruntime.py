"""ONNX Runtime as an engine: CPU, CUDA or TensorRT execution providers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CvstyleError, ModelError, first_line, unknown_choice
from ..fast_graph import faster_graph
from .opencv import DEVICES
from .streams import Idle, threads_per_stream

if TYPE_CHECKING:
    import onnx

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ORT_MISSING = (
    "the onnxruntime engine needs onnxruntime: pip install -e '.[onnx]' "
    "(or '.[gpu]' for CUDA)"
)


def require_onnxruntime():
    """The onnxruntime module, or one line naming the pip command that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise CvstyleError(ORT_MISSING) from None
    return onnxruntime


@functools.lru_cache(maxsize=1)
def _shared_cpu_arena() -> None:
    """Register the process's one CPU memory arena that unpooled sessions share; it
    grows by what is asked, not by doubling, so it holds the largest run's working set."""
    ort = require_onnxruntime()
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 1}))  # kSameAsRequested


def available_providers() -> list[str]:
    """ONNX Runtime's available execution providers; empty if it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def provider_list(device: str, available: list[str]) -> list[tuple[str, dict]]:
    """Execution providers and their options for ``device``, best first (ONNX Runtime
    falls back along the list)."""
    if device not in DEVICES:
        raise unknown_choice("device", device, DEVICES)
    if device == "opencl":
        raise CvstyleError("the onnxruntime engine has no OpenCL device: use --engine opencv")
    if device == "cuda-fp16":
        # ONNX Runtime runs an FP32 graph in half precision only through TensorRT.
        if TENSORRT not in available:
            raise CvstyleError(
                "device 'cuda-fp16' with onnxruntime needs its TensorRT execution provider, "
                f"which this onnxruntime lacks (it has {', '.join(available)})"
            )
        return [(TENSORRT, {"trt_fp16_enable": True}), (CUDA, {}), (CPU, {})]
    if device == "cuda" and CUDA not in available:
        raise CvstyleError(
            "device 'cuda' with onnxruntime needs onnxruntime-gpu and a CUDA device: "
            "pip install -e '.[gpu]' (this onnxruntime has "
            f"{', '.join(available)})"
        )
    # TensorRT builds an engine for every new input size (seconds each), which photos of
    # assorted sizes would pay again and again: plain CUDA is the GPU default.
    if device in ("cuda", "auto") and CUDA in available:
        return [(CUDA, {}), (CPU, {})]
    return [(CPU, {})]


class OnnxRuntimeNetwork:
    """An ONNX graph in an ONNX Runtime session. ``providers`` lists the execution
    providers in use, best first. ``streams`` > 1 on the CPU: that many sessions, each
    on its share of the cores, so that as many forwards may run at once (:mod:`.streams`).
    ``pooled=False`` on the CPU: the session shares the process's one arena with the
    other unpooled sessions instead of keeping an arena of its own."""

    engine = "onnxruntime"
    precision = "exact"

    def __init__(self, graph: "onnx.ModelProto", device: str = "auto", name: str = "model", pooled: bool = True,
                 streams: int = 1):
        ort = require_onnxruntime()
        wanted = provider_list(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: cvstyle reports errors in its own one line
        # The memory pattern plans buffers for one input shape; photos and tiles change
        # shape, where it costs memory and gains no speed (docs/benchmarks.md).
        options.enable_mem_pattern = False
        on_cpu = wanted[0][0] == CPU
        if on_cpu and not pooled:
            # Networks run in turn (a staged run's stages) share one arena: an arena each
            # would keep all their working memories, and none makes every run fault in
            # fresh pages, which is slow on VMs (docs/benchmarks.md).
            _shared_cpu_arena()
            options.add_session_config_entry("session.use_env_allocators", "1")
        elif not pooled:
            options.enable_cpu_mem_arena = False
        self.streams = streams if on_cpu else 1
        if on_cpu:  # measured on CPUs only (cvstyle.fast_graph)
            graph = faster_graph(graph)
        if self.streams > 1:
            options.intra_op_num_threads = threads_per_stream(self.streams)
        try:
            serialized = graph.SerializeToString()
            sessions = [ort.InferenceSession(serialized, options, providers=wanted) for _ in range(self.streams)]
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise ModelError(f"{name}: onnxruntime cannot load this model ({first_line(error)})") from None
        self.session = sessions[0]  # what the network is: inputs, providers
        self.sessions = Idle(sessions)
        self.providers = self.session.get_providers()
        # A GPU provider whose libraries (CUDA, cuDNN, TensorRT) fail to load is dropped
        # silently by ONNX Runtime: an explicit request for the GPU must not run elsewhere.
        if device.startswith("cuda") and self.providers[0] != wanted[0][0]:
            raise CvstyleError(
                f"onnxruntime could not start its {wanted[0][0]} (are the CUDA, cuDNN or "
                "TensorRT libraries it needs installed?)"
            )
        on_gpu = self.providers[0] in (CUDA, TENSORRT)
        self.device = ("cuda" if on_gpu else "cpu") if device == "auto" else device
        self.input_names = [value.name for value in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        if len(feeds) == 1 and len(self.input_names) == 1:
            feeds = {self.input_names[0]: next(iter(feeds.values()))}
        with self.sessions.take() as session:
            return session.run(list(outputs) if outputs else None, feeds)

    def release_memory(self) -> None:
        """Nothing to hand back: unpooled sessions share one arena, which the next
        network run reuses."""
