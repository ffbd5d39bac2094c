"""Run a loaded style-transfer network: BGR image in, stylized BGR image out.

Knows nothing of files, catalogues or HTTP: it receives a ``cv2.dnn.Net`` and the
pre-processing that the network was trained with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import CvstyleError

# fast-neural-style's "vgg" pre-processing: BGR, 0-255, ImageNet mean subtracted.
VGG_MEAN_BGR = (103.939, 116.779, 123.680)
# Two stride-2 convolutions down, two stride-2 transposed convolutions up: OpenCV's
# output is 4*ceil(H/4) x 4*ceil(W/4), so inputs are padded to a multiple of 4.
SIZE_MULTIPLE = 4
# The checkpoints open with 40-pixel reflection padding, which OpenCV cannot apply to
# a smaller input: tiny images are padded up to this side.
MIN_SIDE = 44
DEVICES = ("auto", "cpu", "opencl", "cuda", "cuda-fp16")


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the network's input and its output becomes pixels again."""

    mean_bgr: tuple[float, float, float] = VGG_MEAN_BGR
    scale: float = 1.0  # input = (pixel - mean) * scale; output pixel = out / scale + mean
    swap_rb: bool = False  # True for networks trained on RGB


VGG = Preprocessing()


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
        raise CvstyleError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
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


_BACKEND_TARGET = {
    "cpu": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU),
    "opencl": (cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_OPENCL),
    "cuda": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA),
    "cuda-fp16": (cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA_FP16),
}


def network_size(height: int, width: int) -> tuple[int, int]:
    """The input size the network gets for an image of this size: a multiple of
    ``SIZE_MULTIPLE`` and at least ``MIN_SIDE``."""
    return (
        max(-(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE, MIN_SIDE),
        max(-(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE, MIN_SIDE),
    )


def pad_to_network(bgr: np.ndarray) -> np.ndarray:
    """``bgr`` padded at the bottom and right to :func:`network_size`, by reflection
    (by replication for images one pixel high or wide)."""
    height, width = bgr.shape[:2]
    padded_height, padded_width = network_size(height, width)
    if (padded_height, padded_width) == (height, width):
        return bgr
    border = cv2.BORDER_REFLECT_101 if min(height, width) > 1 else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(bgr, 0, padded_height - height, 0, padded_width - width, border)


class StyleRunner:
    """Pre- and post-processing shared by every engine; subclasses run the network in
    :meth:`infer` (OpenCV here, ONNX Runtime in :mod:`cvstyle.engines`)."""

    engine: str  # "opencv" or "onnxruntime"

    def __init__(self, device: str, preprocessing: Preprocessing):
        self.device = device
        self.preprocessing = preprocessing
        # One forward at a time per network: a cv2.dnn.Net needs it, and it keeps
        # ONNX Runtime's memory to one activation set per model when threads share it.
        self.lock = threading.Lock()

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """NCHW float32 blob of :func:`pad_to_network` of ``bgr``."""
        bgr = pad_to_network(bgr)
        prep = self.preprocessing
        # blobFromImage subtracts the mean after swapping channels.
        mean = prep.mean_bgr[::-1] if prep.swap_rb else prep.mean_bgr
        return cv2.dnn.blobFromImage(bgr, prep.scale, None, mean, swapRB=prep.swap_rb, crop=False)

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """The network's output for ``blob``."""
        raise NotImplementedError

    def postprocess(self, output: np.ndarray, height: int, width: int) -> np.ndarray:
        """Crop the padding, undo the pre-processing, clip and round to uint8 BGR."""
        prep = self.preprocessing
        planes = output[0, :, :height, :width]
        if prep.swap_rb:
            planes = planes[::-1]
        if prep.scale != 1.0:
            planes = planes / np.float32(prep.scale)
        # cv2.add rounds half to even and saturates into uint8 as np.rint + np.clip do,
        # plane by plane: about 4x faster than the NumPy expression at 1024x768.
        return cv2.merge(
            [cv2.add(plane, mean, dtype=cv2.CV_8U) for plane, mean in zip(planes, prep.mean_bgr)]
        )

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        blob = self.preprocess(bgr)
        with self.lock:
            output = self.infer(blob)
        return self.postprocess(output, height, width)


class StyleNet(StyleRunner):
    """One loaded network on one device; call it on as many images as you like."""

    engine = "opencv"

    def __init__(self, net: cv2.dnn.Net, device: str = "auto", preprocessing: Preprocessing = VGG):
        super().__init__(resolve_device(device), preprocessing)
        self.net = net
        # OpenCV 4's layer fusion gives wrong results once a net has run at another
        # input size (measured: up to 230 grey levels off); it only bought 2-4 %.
        net.enableFusion(False)
        backend, target = _BACKEND_TARGET[self.device]
        net.setPreferableBackend(backend)
        net.setPreferableTarget(target)

    def infer(self, blob: np.ndarray, layers: list[str] | None = None):
        """The network's output for ``blob``, or the outputs of the named ``layers``
        (callers that share the network hold :attr:`lock`)."""
        self.net.setInput(blob)
        return self.net.forward(layers) if layers else self.net.forward()
