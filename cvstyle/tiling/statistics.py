"""Whole-image statistics of a network's instance normalisations, measured tile by tile.

instance_norm networks normalise with the mean and variance of the whole image, which a
tile does not see. These are summed over tiles in float64 from the normalisations'
inputs, read as intermediate outputs of a pruned graph (:func:`cvstyle.surgery.with_outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..runner import StyleRunner
from ..surgery import Statistics
from .geometry import PaddedImage, Span, Tile


@dataclass(frozen=True)
class MapGeometry:
    """Where an activation map lies relative to the padded image: map index ``m`` is
    padded-image pixel ``(m + offset) / scale``."""

    scale: Fraction
    offset: Fraction

    def length(self, padded: int) -> int:
        """The map's length for ``padded`` padded-image pixels."""
        return math.floor(self.scale * padded - 2 * self.offset)

    def over_core(self, span: Span, border: int, inner: int) -> slice:
        """The whole-map entries over a tile's core along one axis, up to the map's ends
        for the tiles at the image's edges (``inner``: the image's length)."""
        start = 0 if span.first else math.floor(self.scale * (span.core[0] + border) - self.offset)
        stop = self.length(inner + 2 * border) if span.last else math.floor(self.scale * (span.core[1] + border) - self.offset)
        return slice(start, stop)


def activations(runner: StyleRunner, outputs: Sequence[str], bgr: np.ndarray) -> list[np.ndarray]:
    """The named intermediate tensors of ``runner``'s network for ``bgr``."""
    with runner.lock:
        return list(runner.infer(runner.preprocess(bgr), list(outputs)))


def map_geometry(runner: StyleRunner, outputs: Sequence[str]) -> list[MapGeometry]:
    """The geometry of each named map, from probes at two input sizes (map sizes are
    affine in the input size: strides and unpadded convolutions)."""
    sizes = (96, 128)
    probes = [activations(runner, outputs, np.zeros((size, size, 3), np.uint8)) for size in sizes]
    geometry = []
    for small, large in zip(*probes):
        scale = Fraction(large.shape[2] - small.shape[2], sizes[1] - sizes[0])
        geometry.append(MapGeometry(scale, (scale * sizes[0] - small.shape[2]) / 2))
    return geometry


def owned(span: Span, geometry: MapGeometry, border: int, length: int) -> slice:
    """The map entries a tile contributes along one axis, in its window's map."""
    whole = geometry.over_core(span, border, length)
    shift = math.floor(geometry.scale * span.window[0])
    return slice(whole.start - shift, whole.stop - shift)


class StatisticsSum:
    """Per-channel sums and sums of squares of one map, accumulated in float64."""

    def __init__(self) -> None:
        self.total: np.ndarray | float = 0.0
        self.squares: np.ndarray | float = 0.0
        self.count = 0

    @staticmethod
    def sums(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel sums and sums of squares of a (channels, rows, cols) block: each
        row summed in float32 (a few hundred values: exact to about 1e-8), the rows in
        float64, without a float64 copy of the block."""
        return (np.einsum("chw->ch", planes).sum(axis=1, dtype=np.float64),
                np.einsum("chw,chw->ch", planes, planes).sum(axis=1, dtype=np.float64))

    def add(self, planes: np.ndarray) -> None:
        """Add a (channels, rows, cols) block."""
        count = planes.shape[1] * planes.shape[2]
        if count:
            self.add_sums(*self.sums(planes), count)

    def add_sums(self, total: np.ndarray, squares: np.ndarray, count: int) -> None:
        """Add a block of ``count`` pixels per channel by its :meth:`sums`."""
        self.total = self.total + total
        self.squares = self.squares + squares
        self.count += count

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.count
        return mean, np.maximum(self.squares / self.count - mean**2, 0.0)


def measure(
    runner: StyleRunner, outputs: Sequence[str], geometry: Sequence[MapGeometry],
    padded: PaddedImage, tiles: Sequence[Tile],
) -> Statistics:
    """Mean and variance over the whole image of each named map of ``runner``."""
    border = padded.border
    height, width = padded.inner
    sums = [StatisticsSum() for _ in geometry]
    for tile in tiles:
        maps = activations(runner, outputs, padded.window(tile))
        for total, activation, where in zip(sums, maps, geometry):
            rows = owned(tile.rows, where, border, height)
            cols = owned(tile.cols, where, border, width)
            total.add(activation[0][:, rows, cols])
    return [total.result() for total in sums]
