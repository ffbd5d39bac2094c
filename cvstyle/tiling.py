"""Stylize images of any size in overlapping tiles, with bounded memory.

OpenCV's DNN crashes the process (SIGSEGV in the transposed convolution) on large
inputs such as 2560x1440 landscape frames, and one eccv16 forward at 1920x1080 already
takes about 1.5 GiB. So large images are cut into tiles that each carry a margin of
real context; only each tile's core is kept, so no blending is needed and no seam can
form. Tile windows start at multiples of 4, the network's stride, so every tile sees
the same pixel grid as one untiled pass would.

instance_norm models normalise with statistics of the whole image, which a tile does
not see. They are tiled with those statistics frozen: one pass over the image records
each normalisation layer's mean and variance, and a copy of the network with those
fixed statistics runs on the tiles, so every tile is normalised alike and no tile
changes colour. That pass keeps every normalised activation in memory, so images over
``STATISTICS_PIXELS`` are measured on a scaled-down copy: seamless, but no longer equal
to an untiled pass (docs/benchmarks.md gives the measured difference).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import t7nn, torch7
from .modelinfo import inspect_model, load_network
from .runner import MIN_SIDE, SIZE_MULTIPLE, StyleNet, StyleRunner
from .torch7 import TorchObject

# Above this many pixels a single forward risks OpenCV's crash or more than ~1.5 GiB.
AUTO_TILE_PIXELS = 1920 * 1088
TILE = 768  # core side of a tile, a multiple of SIZE_MULTIPLE
MARGIN = 64  # real context on each side of a core: beyond the network's reach
STATISTICS_PIXELS = 512 * 512  # that pass keeps every normalised activation: ~0.5 GiB here
NORM_LAYER_TYPE = "MVN"  # what OpenCV turns InstanceNormalization into


@dataclass(frozen=True)
class Tile:
    core: tuple[slice, slice]  # where the result goes, in image coordinates
    window: tuple[int, int, int, int]  # top, left, height, width of the input window
    crop: tuple[slice, slice]  # the core, in window coordinates


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _spans(length: int, core: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """(core start, core end, window start, window size) along one axis."""
    padded = max(_ceil(length, SIZE_MULTIPLE), MIN_SIDE)
    size = min(core + 2 * margin, padded)
    for start in range(0, length, core):
        window = min(max(start - margin, 0), padded - size)
        yield start, min(start + core, length), window, size


def plan_tiles(height: int, width: int, core: int = TILE, margin: int = MARGIN) -> list[Tile]:
    if core % SIZE_MULTIPLE or margin % SIZE_MULTIPLE:
        raise ValueError(f"tile and margin must be multiples of {SIZE_MULTIPLE}")
    tiles = []
    for y0, y1, top, tile_h in _spans(height, core, margin):
        for x0, x1, left, tile_w in _spans(width, core, margin):
            tiles.append(
                Tile(
                    core=(slice(y0, y1), slice(x0, x1)),
                    window=(top, left, tile_h, tile_w),
                    crop=(slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)),
                )
            )
    return tiles


def _window(bgr: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The window, reflected past the image's bottom and right edges as the runner pads."""
    patch = bgr[top : top + height, left : left + width]
    short_h, short_w = height - patch.shape[0], width - patch.shape[1]
    if short_h or short_w:
        border = cv2.BORDER_REFLECT_101 if min(bgr.shape[:2]) > 1 else cv2.BORDER_REPLICATE
        patch = cv2.copyMakeBorder(patch, 0, short_h, 0, short_w, border)
    return patch


def stylize_tiled(
    run: Callable[[np.ndarray], np.ndarray], bgr: np.ndarray, core: int = TILE, margin: int = MARGIN
) -> np.ndarray:
    """Apply ``run`` (BGR -> BGR of the same size) tile by tile."""
    out = np.empty_like(bgr)
    for tile in plan_tiles(bgr.shape[0], bgr.shape[1], core, margin):
        out[tile.core] = run(_window(bgr, *tile.window))[tile.crop]
    return out


def needs_tiling(bgr: np.ndarray, mode: str) -> bool:
    """``mode`` is ``auto`` (tile above ``AUTO_TILE_PIXELS``), ``on`` or ``off``."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"tiling mode must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and bgr.shape[0] * bgr.shape[1] > AUTO_TILE_PIXELS)


# ---------------------------------------------------------------- instance_norm


def _normalised_layers(net: cv2.dnn.Net) -> list[str]:
    """Names of the layers that feed each instance normalisation, in order."""
    names = net.getLayerNames()
    return [names[i - 1] for i, name in enumerate(names) if net.getLayer(name).type == NORM_LAYER_TYPE]


def normalisation_statistics(
    model_path: str | os.PathLike, bgr: np.ndarray, device: str = "cpu"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-channel mean and variance entering each instance normalisation, in order,
    measured on ``bgr`` scaled down to at most ``STATISTICS_PIXELS``."""
    scale = min(1.0, (STATISTICS_PIXELS / (bgr.shape[0] * bgr.shape[1])) ** 0.5)
    if scale < 1.0:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # A network of its own, dropped afterwards: it holds every normalised activation.
    network = StyleNet(load_network(model_path), device)
    outputs = network.infer(network.preprocess(bgr), _normalised_layers(network.net))
    return [(out.mean(axis=(0, 2, 3)), out.var(axis=(0, 2, 3))) for out in outputs]


def _freeze(module: TorchObject, statistics: Iterator[tuple[np.ndarray, np.ndarray]]) -> TorchObject:
    if module.class_name == "nn.InstanceNormalization":
        mean, var = next(statistics)
        fields = module.fields
        return t7nn.batch_norm(mean, var, fields["weight"], fields["bias"], fields["eps"])
    children = module.children
    if not children:
        return module
    frozen = [_freeze(child, statistics) for child in children]
    return TorchObject(module.class_name, {**module.fields, "modules": frozen}, module.version)


def frozen_network(
    model_path: str | os.PathLike, statistics: list[tuple[np.ndarray, np.ndarray]], device: str
) -> StyleNet:
    """The model with each instance normalisation fixed to the given statistics."""
    checkpoint = torch7.load(model_path)
    root = checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint
    buffer = io.BytesIO()
    torch7.dump(_freeze(root, iter(statistics)), buffer)
    # OpenCV's Torch importer reads only from a path.
    with tempfile.TemporaryDirectory(prefix="cvstyle-") as folder:
        path = Path(folder) / "frozen.t7"
        path.write_bytes(buffer.getvalue())
        return StyleNet(load_network(path), device)


def stylize_large(
    network: StyleRunner, model_path: str | os.PathLike, bgr: np.ndarray,
    core: int = TILE, margin: int = MARGIN,
) -> np.ndarray:
    """Tile ``bgr`` through ``network``, freezing whole-image statistics where it needs them."""
    if Path(model_path).suffix == ".t7" and inspect_model(model_path).family == "instance_norm":
        # The frozen copy runs on OpenCV, whatever engine ran the untiled network.
        device = network.device if network.engine == "opencv" else "cpu"
        statistics = normalisation_statistics(model_path, bgr, device)
        network = frozen_network(model_path, statistics, device)
    return stylize_tiled(network, bgr, core, margin)
