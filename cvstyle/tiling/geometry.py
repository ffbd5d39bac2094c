"""Where tiles lie: equal cores on the network's stride grid, windows with margins of
real context, and windows gathered from a photo as the network's first padding would
see it (without making a padded copy of a large photo)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..runner import SIZE_MULTIPLE, network_size


def ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Span:
    """One tile's extent along one axis, in image pixels."""

    core: tuple[int, int]  # the part of the result this tile provides
    window: tuple[int, int]  # the part it computes: the core and its margins
    first: bool
    last: bool


def plan_spans(length: int, max_core: int, margin: int) -> list[Span]:
    """Split ``length`` into equal cores of at most ``max_core``, aligned to the stride,
    each with at least ``margin`` of context where the image goes on. Windows are all
    of one length (those at the edges reach further inwards: more context never changes
    a core), so that an engine sees one input shape for the whole photo."""
    if max_core % SIZE_MULTIPLE or margin % SIZE_MULTIPLE:
        raise ValueError(f"tile and margin must be multiples of {SIZE_MULTIPLE}")
    padded = ceil_to(length, SIZE_MULTIPLE)
    core = ceil_to(math.ceil(padded / math.ceil(padded / max_core)), SIZE_MULTIPLE)
    window = min(core + 2 * margin, padded)
    spans = []
    for start in range(0, padded, core):
        window_start = min(max(start - margin, 0), padded - window)
        spans.append(Span(
            (start, min(start + core, padded)),
            (window_start, window_start + window),
            first=start == 0,
            last=start + core >= padded,
        ))
    return spans


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span

    @property
    def core(self) -> tuple[slice, slice]:
        return slice(*self.rows.core), slice(*self.cols.core)

    @property
    def crop(self) -> tuple[slice, slice]:
        """The core, in window coordinates."""
        return tuple(  # type: ignore[return-value]
            slice(span.core[0] - span.window[0], span.core[1] - span.window[0])
            for span in (self.rows, self.cols)
        )


def plan_tiles(height: int, width: int, max_core: int, margin: int) -> list[Tile]:
    return [
        Tile(rows, cols)
        for rows in plan_spans(height, max_core, margin)
        for cols in plan_spans(width, max_core, margin)
    ]


def reflect_101(index: np.ndarray, length: int) -> np.ndarray:
    """Indices folded into ``range(length)`` as cv2.BORDER_REFLECT_101 folds them."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.abs(index) % period
    return np.where(index >= length, period - index, index)


class PaddedImage:
    """``bgr`` as the network's first layer sees it: padded to :func:`network_size`
    (:func:`~cvstyle.runner.pad_to_network`), then by ``border`` pixels of reflection all
    round. Windows are gathered from ``bgr`` when asked for, so no padded copy is made."""

    def __init__(self, bgr: np.ndarray, border: int):
        self.bgr = bgr
        self.border = border
        self.inner = network_size(*bgr.shape[:2])  # the picture's size within the border

    def indices(self, start: int, stop: int, axis: int) -> np.ndarray:
        """Source rows (``axis`` 0) or columns of padded-image positions ``start:stop``."""
        length = self.bgr.shape[axis]
        inner = reflect_101(np.arange(start, stop) - self.border, self.inner[axis])
        if min(self.bgr.shape[:2]) > 1:
            return reflect_101(inner, length)
        return np.minimum(inner, length - 1)  # pad_to_network replicates such images

    def region(self, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Padded-image rows and columns ``start:stop``: a view of ``bgr`` where they lie
        within it, else gathered (a copy)."""
        indices = [self.indices(*span, axis) for axis, span in enumerate((rows, cols))]
        if all(len(index) and np.all(np.diff(index) == 1) for index in indices):
            return self.bgr[indices[0][0]: indices[0][-1] + 1, indices[1][0]: indices[1][-1] + 1]
        return self.bgr[np.ix_(*indices)]

    def window(self, tile: Tile) -> np.ndarray:
        """The tile's window with ``border`` pixels of context on every side."""
        (top, bottom), (left, right) = tile.rows.window, tile.cols.window
        return self.region((top, bottom + 2 * self.border), (left, right + 2 * self.border))


def stylize_tiled(
    run: Callable[[np.ndarray], np.ndarray], bgr: np.ndarray, max_core: int, margin: int,
    border: int = 0, progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Apply ``run`` window by window: a whole network (BGR -> BGR of the same size), or,
    with ``border``, a network without its first padding, whose output is ``border``
    pixels smaller on every side. ``progress(done, total)`` is told after each tile."""
    padded = PaddedImage(bgr, border)
    out = np.empty((*padded.inner, 3), np.uint8)
    tiles = plan_tiles(*padded.inner, max_core, margin)
    for done, tile in enumerate(tiles, 1):
        out[tile.core] = run(padded.window(tile))[tile.crop]
        if progress:
            progress(done, len(tiles))
    return out[: bgr.shape[0], : bgr.shape[1]]
