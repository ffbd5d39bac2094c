"""Run a loaded style-transfer network: BGR image in, stylized BGR image out.

Knows nothing of files, catalogues or HTTP: it receives a loaded network from an engine
(:mod:`cvstyle.engines`) and the pre-processing that the network was trained with.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .errors import CvstyleError, ModelError, first_line

# fast-neural-style's "vgg" pre-processing: BGR, 0-255, ImageNet mean subtracted.
VGG_MEAN_BGR = (103.939, 116.779, 123.680)
# Two stride-2 convolutions down, two stride-2 transposed convolutions up: OpenCV's
# output is 4*ceil(H/4) x 4*ceil(W/4), so inputs are padded to a multiple of 4.
SIZE_MULTIPLE = 4
# The checkpoints open with 40-pixel reflection padding, which OpenCV cannot apply to
# a smaller input: tiny images are padded up to this side.
MIN_SIDE = 44
INPUT = "input"  # a single-input network's blob, whatever the graph calls its input


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the network's input and its output becomes pixels again."""

    mean_bgr: tuple[float, float, float] = VGG_MEAN_BGR
    scale: float = 1.0  # input = (pixel - mean) * scale; output pixel = out / scale + mean
    swap_rb: bool = False  # True for networks trained on RGB


VGG = Preprocessing()


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


class Network(Protocol):
    """What an engine provides (:mod:`cvstyle.engines`): a loaded graph on a device."""

    engine: str
    device: str
    precision: str  # "exact" (float32) or "fast" (cvstyle.precision)
    streams: int  # forwards that may run at once (cvstyle.engines.streams)

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The named ``outputs`` (default: the graph's own) for the named input blobs."""

    def release_memory(self) -> None:
        """Hand back working memory kept between forwards (those engines that keep it);
        called between a staged run's stages, while no forward runs."""


class StyleRunner:
    """A style network with its pre- and post-processing: uint8 BGR in, uint8 BGR out.

    ``name`` (the model) is what errors name. :meth:`infer` also reads intermediate
    activations by tensor name.
    """

    def __init__(self, network: Network, preprocessing: Preprocessing = VGG, name: str = "model"):
        self.network = network
        self.preprocessing = preprocessing
        self.name = name
        # As many forwards at once as the network has streams (one, unless loaded for
        # throughput): a cv2.dnn.Net needs it, and it keeps an engine's memory to one
        # activation set per stream when threads share the runner.
        self.lock = threading.BoundedSemaphore(network.streams)

    @property
    def engine(self) -> str:
        return self.network.engine

    @property
    def device(self) -> str:
        return self.network.device

    @property
    def precision(self) -> str:
        return self.network.precision

    @property
    def streams(self) -> int:
        return self.network.streams

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """NCHW float32 blob of :func:`pad_to_network` of ``bgr``."""
        bgr = pad_to_network(bgr)
        prep = self.preprocessing
        planes = cv2.split(bgr)[::-1] if prep.swap_rb else cv2.split(bgr)
        blob = np.empty((1, len(planes), *bgr.shape[:2]), np.float32)
        # What cv2.dnn.blobFromImage computes, plane by plane and without the float copy
        # of the whole image it makes first, which makes it several times slower
        # (docs/benchmarks.md, tenth session).
        for plane, mean, out in zip(planes, prep.mean_bgr[::-1] if prep.swap_rb else prep.mean_bgr, blob[0]):
            cv2.subtract(plane, mean, dst=out, dtype=cv2.CV_32F)
            if prep.scale != 1.0:  # in float32, as blobFromImage (cv2.multiply scales in double on OpenCV 4)
                np.multiply(out, np.float32(prep.scale), out=out)
        return blob

    def infer(self, blob: np.ndarray, outputs: Sequence[str] | None = None):
        """The network's output for ``blob``, or the list of the named ``outputs``
        (callers that share the runner hold :attr:`lock`)."""
        results = self.run({INPUT: blob}, outputs)
        return results if outputs else results[0]

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The network's named ``outputs`` for named inputs; an engine's failure is one
        :class:`ModelError` line."""
        try:
            return self.network.run(feeds, outputs)
        except (CvstyleError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as error:  # cv2.error, onnxruntime's and openvino's own types
            raise ModelError(
                f"{self.name}: {self.engine} failed to run the model ({first_line(error)})"
            ) from None

    def postprocess(self, output: np.ndarray, height: int, width: int) -> np.ndarray:
        """Crop the padding, undo the pre-processing, clip and round to uint8 BGR."""
        if output.ndim != 4 or output.shape[:2] != (1, 3):
            raise ModelError(
                f"{self.name}: the network gave an output of shape {tuple(output.shape)}, "
                "not an image of 3 channels"
            )
        prep = self.preprocessing
        planes = output[0, :, :height, :width]
        if prep.swap_rb:
            planes = planes[::-1]
        if prep.scale != 1.0:
            planes = planes / np.float32(prep.scale)
        # cv2.add rounds half to even and saturates into uint8 as np.rint + np.clip do,
        # plane by plane, in a fraction of the NumPy expression's time. OpenCV 5.1 takes a
        # 1x1 array beside a number for two scalars (a 4x1 result), so a one-pixel plane
        # gets its mean as an array.
        return cv2.merge([
            cv2.add(plane, mean if plane.size > 1 else np.full_like(plane, mean), dtype=cv2.CV_8U)
            for plane, mean in zip(planes, prep.mean_bgr)
        ])

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        blob = self.preprocess(bgr)
        with self.lock:
            output = self.infer(blob)
        return self.postprocess(output, height, width)
