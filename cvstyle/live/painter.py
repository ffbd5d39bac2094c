"""The stylizing step of the live loop: one or more stylizers applied to each frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..engines import WARM_UP_FORWARDS
from ..errors import CvstyleError
from ..stylizer import fit_longer_side
from ..video.stabilize import Stabilizer


class StylizerLike(Protocol):
    name: str

    def stylize(
        self, image: np.ndarray, *, preserve_colors: bool = False, strength: float = 1.0
    ) -> np.ndarray: ...


class Painter:
    """One or more stylizers applied to each frame at the processing size.

    ``size`` is the processing size's longer side (None: the frame's own size); the
    frame is resized once here so that the original shown beside the styles matches.
    ``stabilize`` blends each painting with the previous frame's along the motion
    (:mod:`cvstyle.video.stabilize`); a change of styles or controls starts afresh.
    """

    def __init__(self, stylizers: Sequence[StylizerLike], size: int | None = None, stabilize: bool = False):
        if not stylizers:
            raise CvstyleError("live mode needs at least one model")
        self.stylizers = list(stylizers)
        self.size = size
        self.stabilizer = Stabilizer() if stabilize else None
        self._look: tuple | None = None  # what the stabilised paintings were made with

    @property
    def names(self) -> list[str]:
        return [stylizer.name for stylizer in self.stylizers]

    @property
    def labels(self) -> list[str]:
        """Each style's name with the engine and precision running it, for the overlay
        (just the name for stylizer-like objects that do not say)."""
        return [
            f"{s.name} ({s.engine}, {s.precision})" if hasattr(s, "engine") and hasattr(s, "precision") else s.name
            for s in self.stylizers
        ]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_longer_side(image, self.size) if self.size else image

    def paint(
        self,
        image: np.ndarray,
        styles: Sequence[int] | None = None,
        preserve_colors: bool = False,
        strength: float = 1.0,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The frame at the processing size, and its stylized versions (``styles``:
        indexes of the stylizers to run, default all)."""
        original = self.prepare(image)
        chosen = range(len(self.stylizers)) if styles is None else styles
        painted = [
            self.stylizers[i].stylize(original, preserve_colors=preserve_colors, strength=strength)
            for i in chosen
        ]
        if self.stabilizer is not None:
            look = (tuple(chosen), preserve_colors, strength)
            if look != self._look:
                self.stabilizer.reset()
                self._look = look
            painted = self.stabilizer.all(original, painted)
        return original, painted

    def warm_up(self, frame_size: tuple[int, int]) -> None:
        """:data:`~cvstyle.engines.WARM_UP_FORWARDS` forward passes per style at the
        stream's size, so that loading, allocating and preparing for that size are not
        counted in the first frames' latency."""
        width, height = frame_size
        blank = np.zeros((height, width, 3), np.uint8)
        for _ in range(WARM_UP_FORWARDS):
            self.paint(blank)
        if self.stabilizer is not None:
            self.stabilizer.reset()  # the blank frame is no scene to carry on from
