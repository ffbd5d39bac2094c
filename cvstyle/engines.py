"""Which inference engine runs a model: OpenCV's DNN module or ONNX Runtime.

Both engines take the same blob and give the same output, so they share the runner's
pre- and post-processing (:class:`~cvstyle.runner.StyleRunner`) and differ only in
``infer``. `.t7` checkpoints go to OpenCV 4's Torch importer directly; wherever an
ONNX graph is needed (ONNX Runtime, or OpenCV 5, which dropped the Torch importer)
they are converted once and the graph is kept next to the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import platformdirs

from . import onnx_export
from .errors import CvstyleError, ModelError
from .modelinfo import load_network
from .runner import DEVICES, VGG, Preprocessing, StyleNet, StyleRunner, cuda_available

ENGINES = ("auto", "opencv", "onnxruntime")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ORT_MISSING = (
    "the onnxruntime engine needs onnxruntime: pip install 'cvstyle[onnx]' "
    "(or 'cvstyle[gpu]' for CUDA)"
)
# On the CPU, ONNX Runtime ran 25-40 % faster than OpenCV 4.14 for both families at
# 640x480 and 1024x768 (benchmarks/engines.py, 2 cores), so `auto` prefers it there too.
AUTO_CPU_ENGINE = "onnxruntime"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise CvstyleError(ORT_MISSING) from None
    return onnxruntime


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's available execution providers; empty if it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _provider_list(device: str, available: list[str]) -> list[tuple[str, dict]]:
    """Execution providers and their options for ``device``, best first (ONNX Runtime
    falls back along the list)."""
    if device not in DEVICES:
        raise CvstyleError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
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
            "pip install 'cvstyle[gpu]' (this onnxruntime has "
            f"{', '.join(available)})"
        )
    # TensorRT builds an engine for every new input size (seconds each), which photos of
    # assorted sizes would pay again and again: plain CUDA is the GPU default.
    if device in ("cuda", "auto") and CUDA in available:
        return [(CUDA, {}), (CPU, {})]
    return [(CPU, {})]


class OnnxRuntimeNet(StyleRunner):
    """An ONNX style network run by ONNX Runtime, called like :class:`~cvstyle.runner.StyleNet`.

    ``model`` is the path of an ONNX file taking and returning an NCHW float32 blob in
    ``preprocessing``. ``providers`` lists the execution providers in use, best first.
    """

    engine = "onnxruntime"

    def __init__(
        self, model: str | os.PathLike, device: str = "auto", preprocessing: Preprocessing = VGG
    ):
        ort = _onnxruntime()
        wanted = _provider_list(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no per-node placement chatter
        # The memory pattern plans buffers for one input shape: with the shapes of photos
        # and tiles changing it cost ~450 MB more at peak (eccv16 tiles) and was no faster
        # at fixed sizes (benchmarks/bench.py, docs/benchmarks.md).
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(_any_size(Path(model)), options, providers=wanted)
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            detail = str(error).strip().splitlines()[0] if str(error).strip() else "unknown error"
            raise ModelError(f"{model}: onnxruntime cannot load this model ({detail})") from None
        self.providers = self.session.get_providers()
        # A GPU provider whose libraries (CUDA, cuDNN, TensorRT) fail to load is dropped
        # silently by ONNX Runtime: an explicit request for the GPU must not run elsewhere.
        on_gpu = self.providers[0] in (CUDA, TENSORRT)
        if device.startswith("cuda") and self.providers[0] != wanted[0][0]:
            raise CvstyleError(
                f"onnxruntime could not start its {wanted[0][0]} (are the CUDA, cuDNN or "
                "TensorRT libraries it needs installed?)"
            )
        super().__init__(("cuda" if on_gpu else "cpu") if device == "auto" else device, preprocessing)
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, blob: np.ndarray, outputs: list[str] | None = None):
        """The network's output for ``blob``, or the named graph ``outputs``."""
        results = self.session.run(outputs, {self.input_name: blob})
        return results if outputs else results[0]


def _any_size(path: Path) -> str | bytes:
    """The ONNX file's path; or, where the graph's input has a fixed height or width (as
    ``torch.onnx.export`` writes it unless given dynamic axes), the graph with both made
    free, so that ONNX Runtime takes any image size as OpenCV does."""
    try:
        import onnx

        proto = onnx.load(os.fspath(path))
    except Exception:  # no onnx package, or not a graph: onnxruntime reports on the file
        return os.fspath(path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
    if len(dims) != 4 or not any(dim.HasField("dim_value") for dim in dims[2:]):
        return os.fspath(path)
    for value, suffix in [(proto.graph.input[0], ""), *((out, "_out") for out in proto.graph.output)]:
        for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("height", "width")):
            dim.dim_param = name + suffix  # replaces the fixed dim_value
    del proto.graph.value_info[:]  # intermediate shapes worked out for the fixed size
    return proto.SerializeToString()


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def _cache_folders(model: Path) -> list[Path]:
    """Where converted graphs are kept: next to the model, else the user's cache folder."""
    return [model.parent, Path(platformdirs.user_cache_dir("cvstyle")) / "onnx"]


def cached_onnx(t7_path: str | os.PathLike) -> Path:
    """The ONNX conversion of the `.t7` model at ``t7_path``, converting it on first use.

    It is saved as ``<model stem>.<sha256[:16]>.onnx`` next to the model (or in the user
    cache folder if that one is read-only): keyed by the file's digest, an edited or
    replaced model is never run from a stale conversion.
    """
    path = Path(t7_path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
    name = f"{path.stem}.{digest}.onnx"
    for folder in _cache_folders(path):
        if (folder / name).is_file():
            return folder / name
    data = onnx_export.model_proto(path).SerializeToString()
    problems = []
    for folder in _cache_folders(path):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            onnx_export.write_atomically(data, folder / name)
            return folder / name
        except OSError as error:
            problems.append(f"{folder}: {error.strerror or error}")
    raise CvstyleError(f"cannot save the ONNX conversion of {path} ({'; '.join(problems)})")


def _onnx_file(path: Path) -> Path:
    if _is_onnx(path):
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        return path
    return cached_onnx(path)


def _opencv_network(path: Path) -> cv2.dnn.Net:
    if not _is_onnx(path) and hasattr(cv2.dnn, "readNetFromTorch"):
        return load_network(path)
    onnx_path = _onnx_file(path)
    # OpenCV 5's new graph engine (its default) runs on the CPU only, and StyleNet's
    # enableFusion(False) leaves its nets empty: the classic engine keeps every device.
    classic = (cv2.dnn.ENGINE_CLASSIC,) if hasattr(cv2.dnn, "ENGINE_CLASSIC") else ()
    try:
        return cv2.dnn.readNetFromONNX(os.fspath(onnx_path), *classic)
    except cv2.error as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise ModelError(f"{onnx_path}: OpenCV cannot load this model ({detail})") from None


def choose_engine(engine: str, device: str, model_path: str | os.PathLike) -> str:
    """``opencv`` or ``onnxruntime``: ``auto`` takes ONNX Runtime when it has a GPU provider
    for ``device``, OpenCV for OpenCL, and otherwise the faster engine on the CPU."""
    if engine not in ENGINES:
        raise CvstyleError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    providers = onnxruntime_providers()
    # A `.t7` reaches ONNX Runtime only through the converter, which needs `onnx`.
    convertible = _is_onnx(Path(model_path)) or importlib.util.find_spec("onnx") is not None
    if not providers or not convertible or device == "opencl":
        return "opencv"
    gpu = TENSORRT in providers if device == "cuda-fp16" else CUDA in providers
    if device != "cpu" and gpu:
        return "onnxruntime"
    if device.startswith("cuda") or (device == "auto" and cuda_available()):
        return "opencv"  # OpenCV's own CUDA backend, or its clear error when it has none
    return AUTO_CPU_ENGINE


def load_engine(
    model_path: str | os.PathLike,
    engine: str = "auto",
    device: str = "auto",
    preprocessing: Preprocessing = VGG,
) -> StyleRunner:
    """Load the `.t7` or `.onnx` model at ``model_path`` on ``engine`` and ``device``.

    The result is called on uint8 BGR images and returns uint8 BGR images; its
    ``engine``, ``device`` (and, for ONNX Runtime, ``providers``) say where it runs.
    ``preprocessing`` is what the model expects (fast-neural-style's VGG by default).
    """
    path = Path(model_path)
    if choose_engine(engine, device, path) == "onnxruntime":
        return OnnxRuntimeNet(_onnx_file(path), device, preprocessing)
    return StyleNet(_opencv_network(path), device, preprocessing)
