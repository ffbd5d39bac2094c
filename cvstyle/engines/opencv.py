"""OpenCV's DNN module as an engine: a `.t7` through OpenCV 4's Torch importer, any
other graph through its ONNX importer (OpenCV 5 has no Torch importer)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import CvstyleError, ModelError, first_line, unknown_choice
from ..quiet import quiet_opencv

if TYPE_CHECKING:
    import onnx

DEVICES = ("auto", "cpu", "opencl", "cuda", "cuda-fp16")

_BACKEND_TARGET = {
    "cpu": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU),
    "opencl": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_OPENCL),
    "cuda": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA),
    "cuda-fp16": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA_FP16),
}


def has_torch_importer() -> bool:
    """Whether this OpenCV reads `.t7` files itself (OpenCV 4 does, 5 does not)."""
    return hasattr(cv2.dnn, "readNetFromTorch")


def cuda_available() -> bool:
    """Whether this OpenCV build has the CUDA DNN backend and sees a CUDA device."""
    try:
        targets = cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_CUDA)
        return bool(targets) and cv2.cuda.getCudaEnabledDeviceCount() > 0
    except (cv2.error, AttributeError):
        return False


def resolve_device(device: str) -> str:
    """Turn ``auto`` into a concrete device and refuse devices this build cannot use.

    OpenCV silently falls back to the CPU when asked for a missing backend, so an
    explicit request is checked here instead.
    """
    if device not in DEVICES:
        raise unknown_choice("device", device, DEVICES)
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise CvstyleError(
            f"device {device!r} asked for, but this OpenCV build has no CUDA DNN backend or "
            "no CUDA device (the pip wheels never do): use --device cpu, or see the README"
        )
    if device == "opencl" and not cv2.ocl.haveOpenCL():
        raise CvstyleError("device 'opencl' asked for, but OpenCV finds no OpenCL platform")
    return device


def read_torch(path: str | os.PathLike) -> cv2.dnn.Net:
    """A `.t7` file (already checked by cvstyle's own reader) through the Torch importer."""
    try:
        with quiet_opencv():
            # evaluate=True: batch normalisation uses the stored running statistics.
            return cv2.dnn.readNetFromTorch(os.fspath(path), True, True)
    except cv2.error as error:
        raise ModelError(f"{path}: OpenCV cannot load this model ({first_line(error, last=True)})") from None


def has_new_engine() -> bool:
    """Whether this is OpenCV 5, whose in-memory ONNX graphs run on its new engine."""
    return int(cv2.__version__.split(".")[0]) >= 5


def has_classic_engine() -> bool:
    """Whether ONNX files can run on OpenCV's classic engine, which runs on every device:
    OpenCV 4 has no other, 5.0 takes it when asked by name, 5.1 has the new engine only
    (CPU only)."""
    return not has_new_engine() or hasattr(cv2.dnn, "ENGINE_CLASSIC")


def read_onnx_file(path: str | os.PathLike) -> cv2.dnn.Net:
    """An ONNX file through the ONNX importer, on the classic engine where this OpenCV
    has one and needs asking (:func:`has_classic_engine`)."""
    classic = (cv2.dnn.ENGINE_CLASSIC,) if hasattr(cv2.dnn, "ENGINE_CLASSIC") else ()
    try:
        with quiet_opencv():
            return cv2.dnn.readNetFromONNX(os.fspath(path), *classic)
    except cv2.error as error:
        raise ModelError(f"{path}: OpenCV cannot load this model ({first_line(error, last=True)})") from None


def read_graph(graph: "onnx.ModelProto", name: str) -> cv2.dnn.Net:
    """An in-memory ONNX graph through the ONNX importer (OpenCV 5 ignores the engine
    asked for with a buffer and takes its new engine)."""
    # A NumPy view: OpenCV 5.0's binding crashes on a bytes object here.
    buffer = np.frombuffer(graph.SerializeToString(), np.uint8)
    try:
        with quiet_opencv():
            return cv2.dnn.readNetFromONNX(buffer)
    except cv2.error as error:
        raise ModelError(f"{name}: OpenCV cannot load this model ({first_line(error, last=True)})") from None


class OpenCvNetwork:
    """A ``cv2.dnn.Net`` on one device. ``run`` takes named input blobs and returns the
    named outputs (a Torch-imported net has one input and answers to layer names)."""

    engine = "opencv"
    precision = "exact"
    streams = 1  # a cv2.dnn.Net runs one forward at a time

    def __init__(self, net: cv2.dnn.Net, device: str = "auto", classic: bool = True):
        self.device = resolve_device(device)
        self.net = net
        if classic:
            # The classic engine's layer fusion gives wrong results once a net has run at
            # another input size, for a gain of a few per cent (the new engine has no
            # such switch: turning it off empties the net).
            net.enableFusion(False)
            backend, target = _BACKEND_TARGET[self.device]
            net.setPreferableBackend(backend)
            net.setPreferableTarget(target)
        elif self.device != "cpu":
            raise CvstyleError(
                f"OpenCV {cv2.__version__} runs this on the CPU only (its new DNN engine has no "
                "other device yet): use --device cpu or --engine onnxruntime"
            )

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        for name, blob in feeds.items():
            self.net.setInput(blob, name if len(feeds) > 1 else "")
        with quiet_opencv():
            if outputs:
                return list(self.net.forward(list(outputs)))
            return [self.net.forward()]

    def release_memory(self) -> None:
        """Nothing to hand back: a ``cv2.dnn.Net`` has no call for it."""
