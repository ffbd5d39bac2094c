"""The public Python API: ``Stylizer(model).stylize(image)``."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import CvstyleError
from .modelinfo import load_network
from .runner import StyleNet

DEFAULT_MODEL = "sketch"  # the built-in model: works offline with nothing downloaded


def _model_path(model: str | os.PathLike, manifest: str | os.PathLike | None) -> Path:
    from .store import resolve_model  # the store pulls in the catalogue only when needed

    return resolve_model(os.fspath(model), manifest)


class Stylizer:
    """A style-transfer model loaded once, applied to any number of images.

    ``model`` is a catalogue name (``"candy"``, ``"eccv16/starry_night"``), the built-in
    ``"sketch"``, or a path to a `.t7` file. ``device`` is ``auto``, ``cpu``, ``opencl``,
    ``cuda`` or ``cuda-fp16``.

    >>> import cv2
    >>> from cvstyle import Stylizer
    >>> painted = Stylizer("sketch").stylize(cv2.imread("samples/chelsea.png"))
    """

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_MODEL,
        device: str = "auto",
        manifest: str | os.PathLike | None = None,
    ):
        self.path = _model_path(model, manifest)
        self.name = self.path.stem
        self.network = StyleNet(load_network(self.path), device)

    @property
    def device(self) -> str:
        return self.network.device

    def stylize(
        self, image: np.ndarray, size: int | None = None, median_filter: int = 0
    ) -> np.ndarray:
        """Paint ``image`` (uint8 BGR; grayscale and BGRA are accepted too).

        With the defaults the result is the network's own output at the input's size.
        ``size`` processes (and returns) the image resized so its longer side is ``size``;
        ``median_filter`` applies the reference runner's median filter of that odd size.
        Transparency of a BGRA input is kept as it is.
        """
        bgr, alpha = _split_channels(image)
        if size:
            bgr = _fit_longer_side(bgr, size)
        painted = self.network(bgr)
        if median_filter:
            if median_filter < 0 or median_filter % 2 == 0:
                raise CvstyleError(f"median filter size must be odd and positive, not {median_filter}")
            painted = cv2.medianBlur(painted, median_filter)
        if alpha is None:
            return painted
        if alpha.shape != painted.shape[:2]:
            alpha = cv2.resize(alpha, painted.shape[1::-1], interpolation=cv2.INTER_AREA)
        return np.dstack([painted, alpha])


def _split_channels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise CvstyleError("expected a uint8 NumPy image (as cv2.imread returns)")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.ndim == 3 and image.shape[2] == 3:
        return image, None
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3]), image[:, :, 3]
    raise CvstyleError(f"expected an image of shape HxW, HxWx3 or HxWx4, not {image.shape}")


def _fit_longer_side(bgr: np.ndarray, size: int) -> np.ndarray:
    if size < 1:
        raise CvstyleError(f"size must be positive, not {size}")
    height, width = bgr.shape[:2]
    scale = size / max(height, width)
    if scale == 1:
        return bgr
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(bgr, new_size, interpolation=interpolation)
