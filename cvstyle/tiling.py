"""Stylize images of any size in overlapping tiles, with bounded memory.

OpenCV's DNN crashes the process (SIGSEGV in the transposed convolution) on large
inputs such as 2560x1440 landscape frames, and one eccv16 forward at 1920x1080 already
takes about 1.5 GiB. So large images are cut into tiles whose windows carry a margin of
real context; only each tile's core is kept, so no blending is needed and no seam can
form. Windows start at multiples of 4, the network's stride, so every tile sees the
same pixel grid as one untiled pass would.

fast-neural-style networks open with a 40-pixel reflection padding that their
unpadded residual blocks shave off again. A tile run through the whole network would
reflect its own window's edge, so the margin would have to cover those 40 pixels as
well. Instead the whole image is padded once, as the first layer would pad it, and the
tiles run through the network without that layer: a margin then only has to cover the
zero padding of the "same" convolutions (``MARGIN``), and tiles are as large as memory
allows (``MAX_TILE``), which keeps the extra work small (see docs/benchmarks.md).

instance_norm networks normalise with statistics of the whole image, which a tile does
not see. They are tiled with those statistics frozen into batch normalisations, so
every tile is normalised alike and no tile changes colour. The statistics are measured
first on a copy scaled down to ``STATISTICS_PIXELS``, then refined by passes over the
full-resolution tiles (``STATISTICS_PASSES``): each pass sums each normalisation's
input over the tiles with the previous estimate frozen in, which makes one more layer
exact and brings the others close to their untiled values.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import onnx_export, torch7_modules, torch7
from .engines import load_engine
from .modelinfo import inspect_model
from .runner import SIZE_MULTIPLE, VGG, Preprocessing, StyleRunner, network_size
from .torch7 import TorchObject

if TYPE_CHECKING:
    import onnx

# Above this many pixels a single forward risks OpenCV's crash or more than ~1.5 GiB.
AUTO_TILE_PIXELS = 1920 * 1088
MAX_TILE = 1024  # largest core side: one eccv16 window on ONNX Runtime then takes ~0.9 GiB
# Above this many pixels the photo and its result take another 400 MB or more, so tiles
# shrink to keep the peak under 1.5 GiB (docs/benchmarks.md), at ~8 % more work: a 912 px
# window per 768 px core against 1168 px per 1024 px.
HUGE_PIXELS = 64_000_000
HUGE_IMAGE_TILE = 768
MARGIN = 32  # context beyond the core: the reach of the convolutions' zero padding
# Networks whose first layer is not a reflection padding run whole on each window,
# which then also needs room for the padding the network adds itself.
WHOLE_NETWORK_MARGIN = 64
STATISTICS_PIXELS = 512 * 512  # the first estimate keeps every activation: ~0.5 GiB here
Statistics = list[tuple[np.ndarray, np.ndarray]]  # per normalisation: channel means, variances


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Span:
    """One tile's extent along one axis, in image pixels."""

    core: tuple[int, int]  # the part of the result this tile provides
    window: tuple[int, int]  # the part it computes: the core and its margins
    first: bool
    last: bool


def plan_spans(length: int, max_core: int = MAX_TILE, margin: int = MARGIN) -> list[Span]:
    """Split ``length`` into equal cores of at most ``max_core``, aligned to the stride."""
    if max_core % SIZE_MULTIPLE or margin % SIZE_MULTIPLE:
        raise ValueError(f"tile and margin must be multiples of {SIZE_MULTIPLE}")
    padded = _ceil(length, SIZE_MULTIPLE)
    core = _ceil(math.ceil(padded / math.ceil(padded / max_core)), SIZE_MULTIPLE)
    starts = range(0, padded, core)
    return [
        Span(
            (start, min(start + core, padded)),
            (max(start - margin, 0), min(start + core + margin, padded)),
            first=start == 0,
            last=start + core >= padded,
        )
        for start in starts
    ]


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


def plan_tiles(height: int, width: int, max_core: int = MAX_TILE, margin: int = MARGIN) -> list[Tile]:
    return [
        Tile(rows, cols)
        for rows in plan_spans(height, max_core, margin)
        for cols in plan_spans(width, max_core, margin)
    ]


def tile_size(height: int, width: int) -> int:
    """The largest tile core side for an image of this size."""
    # The constants are read when called, so that they can be tuned.
    return HUGE_IMAGE_TILE if height * width > HUGE_PIXELS else MAX_TILE


def needs_tiling(bgr: np.ndarray, mode: str) -> bool:
    """``mode`` is ``auto`` (tile above ``AUTO_TILE_PIXELS``), ``on`` or ``off``."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"tiling mode must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and bgr.shape[0] * bgr.shape[1] > AUTO_TILE_PIXELS)


def _reflect_101(index: np.ndarray, length: int) -> np.ndarray:
    """Indices folded into ``range(length)`` as cv2.BORDER_REFLECT_101 folds them."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.abs(index) % period
    return np.where(index >= length, period - index, index)


class _PaddedImage:
    """``bgr`` as the network's first layer sees it: padded to :func:`network_size`
    (:func:`pad_to_network`), then by ``border`` pixels of reflection all round. Windows
    are gathered from ``bgr`` when asked for, so no padded copy of a large photo is made."""

    def __init__(self, bgr: np.ndarray, border: int):
        self.bgr = bgr
        self.border = border
        self.inner = network_size(*bgr.shape[:2])  # the picture's size within the border

    def _indices(self, start: int, stop: int, axis: int) -> np.ndarray:
        length = self.bgr.shape[axis]
        inner = _reflect_101(np.arange(start, stop) - self.border, self.inner[axis])
        if min(self.bgr.shape[:2]) > 1:
            return _reflect_101(inner, length)
        return np.minimum(inner, length - 1)  # pad_to_network replicates such images

    def window(self, tile: Tile) -> np.ndarray:
        """The tile's window with ``border`` pixels of context on every side."""
        (top, bottom), (left, right) = tile.rows.window, tile.cols.window
        rows = self._indices(top, bottom + 2 * self.border, 0)
        cols = self._indices(left, right + 2 * self.border, 1)
        return self.bgr[np.ix_(rows, cols)]


def stylize_tiled(
    run: Callable[[np.ndarray], np.ndarray], bgr: np.ndarray,
    max_core: int = MAX_TILE, margin: int = WHOLE_NETWORK_MARGIN, border: int = 0,
) -> np.ndarray:
    """Apply ``run`` window by window: a whole network (BGR -> BGR of the same size), or,
    with ``border``, a network without its first padding, whose output is ``border``
    pixels smaller on every side."""
    padded = _PaddedImage(bgr, border)
    out = np.empty((*padded.inner, 3), np.uint8)
    for tile in plan_tiles(*padded.inner, max_core, margin):
        out[tile.core] = run(padded.window(tile))[tile.crop]
    return out[: bgr.shape[0], : bgr.shape[1]]


# ------------------------------------------------------------ networks for tiles


def _root(model_path: str | os.PathLike) -> TorchObject:
    """The network of a `.t7` file that :func:`inspect_model` has accepted."""
    checkpoint = torch7.load(model_path)
    return checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint


def _leading_border(root: TorchObject) -> int | None:
    """The padding of the network's first layer, if it is an even reflection padding."""
    first = root.children[0] if root.class_name == "nn.Sequential" and root.children else None
    if first is None or first.class_name != "nn.SpatialReflectionPadding":
        return None
    pads = {first.fields.get(key) for key in ("pad_t", "pad_b", "pad_l", "pad_r")}
    border = pads.pop() if len(pads) == 1 else None
    return border if isinstance(border, int) and border > 0 else None


def _freeze(module: TorchObject, statistics: Iterator[tuple[np.ndarray, np.ndarray]]) -> TorchObject:
    if module.class_name == "nn.InstanceNormalization":
        mean, var = next(statistics)
        fields = module.fields
        return torch7_modules.batch_norm(mean, var, fields.get("weight"), fields.get("bias"), fields["eps"])
    if not module.children:
        return module
    frozen = [_freeze(child, statistics) for child in module.children]
    return TorchObject(module.class_name, {**module.fields, "modules": frozen}, module.version)


def _without_padding(root: TorchObject, statistics: Statistics | None) -> TorchObject:
    body = TorchObject(root.class_name, {**root.fields, "modules": root.children[1:]}, root.version)
    return _freeze(body, iter(statistics)) if statistics is not None else body


@dataclass
class _TileNetwork:
    """A network without its first padding; or, to measure statistics, the part of it
    that computes the inputs of some of its normalisations (``norm_inputs``)."""

    runner: StyleRunner
    norm_inputs: list[str]

    def norm_activations(self, bgr: np.ndarray) -> list[np.ndarray]:
        with self.runner.lock:
            return list(self.runner.infer(self.runner.preprocess(bgr), self.norm_inputs))


def _opencv_norm_inputs(runner: StyleRunner) -> list[str]:
    """Layers feeding each normalisation of an OpenCV net read from Torch7: an
    InstanceNormalization becomes MVN + BatchNorm, a frozen one a BatchNorm alone."""
    net = runner.net  # type: ignore[attr-defined]
    names = net.getLayerNames()
    types = [net.getLayer(name).type for name in names]
    return [
        names[i - 1] for i, kind in enumerate(types)
        if kind == "MVN" or (kind == "BatchNorm" and types[i - 1] != "MVN")
    ]


def _load_graph(
    model: "onnx.ModelProto", engine: str, device: str, preprocessing: Preprocessing,
    norm_inputs: list[str] | None = None,
) -> _TileNetwork:
    """An ONNX ``model`` on ``engine``; with ``norm_inputs``, its outputs replaced by
    those tensors so that the rest of the graph is pruned."""
    if norm_inputs:
        model = onnx_export.with_outputs(model, norm_inputs, replace=True)
    with tempfile.TemporaryDirectory(prefix="cvstyle-") as folder:
        path = Path(folder) / "tiles.onnx"
        path.write_bytes(model.SerializeToString())
        return _TileNetwork(load_engine(path, engine, device, preprocessing), norm_inputs or [])


def _load_tree(
    tree: TorchObject, engine: str, device: str, measure: slice | None = None
) -> _TileNetwork:
    """``tree`` loaded on ``engine``; with ``measure``, for the inputs of those
    normalisations (the engines then run only the layers up to the last of them)."""
    if engine == "opencv" and hasattr(cv2.dnn, "readNetFromTorch"):
        with tempfile.TemporaryDirectory(prefix="cvstyle-") as folder:
            path = Path(folder) / "tiles.t7"
            buffer = io.BytesIO()
            torch7.dump(tree, buffer)
            path.write_bytes(buffer.getvalue())
            runner = load_engine(path, engine, device)
        return _TileNetwork(runner, _opencv_norm_inputs(runner)[measure] if measure else [])
    # ONNX Runtime, or OpenCV 5 (no Torch importer), run the tree's ONNX conversion.
    model = onnx_export.to_onnx(tree, name="tiles")
    norm_inputs = _graph_norm_inputs(model, ("InstanceNormalization", "BatchNormalization"))
    return _load_graph(model, engine, device, VGG, norm_inputs[measure] if measure else None)


def _graph_norm_inputs(model: "onnx.ModelProto", kinds: tuple[str, ...]) -> list[str]:
    return [node.input[0] for node in model.graph.node if node.op_type in kinds]


def _freeze_graph(model: "onnx.ModelProto", statistics: Statistics) -> "onnx.ModelProto":
    """``model`` with each InstanceNormalization (in graph order) turned into a batch
    normalisation with the given statistics."""
    onnx = onnx_export.require_onnx()
    frozen = type(model)()
    frozen.CopyFrom(model)
    values = iter(statistics)
    for node in frozen.graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        mean, var = next(values)
        names = [f"{node.input[0]}_frozen_mean", f"{node.input[0]}_frozen_var"]
        frozen.graph.initializer.extend(
            onnx.numpy_helper.from_array(np.asarray(array, np.float32), name)
            for array, name in zip((mean, var), names)
        )
        node.op_type = "BatchNormalization"
        node.input.extend(names)
    return frozen


@dataclass(frozen=True)
class _Rebuildable:
    """How to run a model on tiles: ``build(statistics, measure)`` loads it with its
    instance normalisations frozen to ``statistics`` (None: as they are), or, with
    ``measure``, for the inputs of those normalisations. Windows get ``border`` pixels
    of the padded image on each side besides ``margin``."""

    build: Callable[[Statistics | None, slice | None], _TileNetwork]
    normalisations: int
    border: int
    margin: int


def _rebuildable(network: StyleRunner, path: Path, margin: int) -> _Rebuildable | None:
    """``network``'s model taken apart for tiles, or None if cvstyle cannot do so (an
    ONNX model without the onnx package, or a `.t7` that does not start with a padding)."""
    engine, device = network.engine, network.device
    if path.suffix == ".t7":
        modules = inspect_model(path).modules  # one-line errors for unusable files
        root = _root(path)
        border = _leading_border(root)
        if border is None:
            return None
        count = modules.count("nn.InstanceNormalization")
        return _Rebuildable(
            lambda statistics, measure: _load_tree(
                _without_padding(root, statistics), engine, device, measure
            ),
            count, border, margin,
        )
    if importlib.util.find_spec("onnx") is None:
        return None
    model = onnx_export.require_onnx().load(os.fspath(path))
    norm_inputs = _graph_norm_inputs(model, ("InstanceNormalization",))
    prep = network.preprocessing
    return _Rebuildable(
        lambda statistics, measure: _load_graph(
            _freeze_graph(model, statistics) if statistics else model, engine, device, prep,
            norm_inputs[measure] if measure else None,
        ),
        len(norm_inputs), 0, WHOLE_NETWORK_MARGIN,
    )


@functools.lru_cache(maxsize=4)
def _unfrozen_tile_network(path: Path, stamp: tuple[int, int], engine: str, device: str) -> _TileNetwork:
    """The padding-less network of a `.t7` model without per-image statistics, kept for
    the next large photo."""
    return _load_tree(_without_padding(_root(path), None), engine, device)


# ------------------------------------------------------- whole-image statistics


@dataclass(frozen=True)
class _MapGeometry:
    """Where a normalisation's activation map lies relative to the padded image: map
    index ``m`` is padded-image pixel ``(m + offset) / scale``."""

    scale: Fraction
    offset: Fraction


def _map_geometry(network: _TileNetwork) -> list[_MapGeometry]:
    # Map sizes are affine in the input size (strides and unpadded convolutions);
    # two probe sizes give the scale and the offset of each map.
    sizes = (96, 128)
    probes = [network.norm_activations(np.zeros((size, size, 3), np.uint8)) for size in sizes]
    geometry = []
    for small, large in zip(*probes):
        scale = Fraction(large.shape[2] - small.shape[2], sizes[1] - sizes[0])
        geometry.append(_MapGeometry(scale, (scale * sizes[0] - small.shape[2]) / 2))
    return geometry


def _owned(span: Span, geometry: _MapGeometry, border: int, length: int) -> slice:
    """The map entries a tile contributes along one axis, in its window's map: those
    over its core, and up to the map's ends for the tiles at the image's edges."""
    scale, offset = geometry.scale, geometry.offset
    whole = math.floor(scale * (length + 2 * border) - 2 * offset)
    start = 0 if span.first else math.floor(scale * (span.core[0] + border) - offset)
    stop = whole if span.last else math.floor(scale * (span.core[1] + border) - offset)
    shift = math.floor(scale * span.window[0])
    return slice(start - shift, stop - shift)


def _measure(
    network: _TileNetwork, geometry: Sequence[_MapGeometry],
    padded: _PaddedImage, tiles: Sequence[Tile],
) -> Statistics:
    """Mean and variance over the whole image of each normalisation input ``network``
    gives, accumulated tile by tile in float64."""
    border = padded.border
    height, width = padded.inner
    sums: list[np.ndarray | float] = [0.0] * len(geometry)
    squares: list[np.ndarray | float] = [0.0] * len(geometry)
    counts = [0] * len(geometry)
    for tile in tiles:
        maps = network.norm_activations(padded.window(tile))
        for index, (activation, where) in enumerate(zip(maps, geometry)):
            rows = _owned(tile.rows, where, border, height)
            cols = _owned(tile.cols, where, border, width)
            # cv2.meanStdDev sums in double precision, ten times faster than NumPy here.
            planes = [cv2.meanStdDev(plane[rows, cols]) for plane in activation[0]]
            mean, std = (np.array([plane[k].item() for plane in planes]) for k in (0, 1))
            count = activation[0, 0, rows, cols].size
            sums[index] = sums[index] + mean * count
            squares[index] = squares[index] + (std**2 + mean**2) * count
            counts[index] += count
    statistics = []
    for total, square, count in zip(sums, squares, counts):
        mean = total / count
        statistics.append((mean, np.maximum(square / count - mean**2, 0.0)))
    return statistics


def image_statistics(
    model: _Rebuildable, bgr: np.ndarray, exact: bool = False, max_core: int = MAX_TILE
) -> Statistics:
    """Each instance normalisation's input statistics for ``bgr``: measured on a copy
    scaled down to ``STATISTICS_PIXELS``, or with ``exact`` at full resolution."""
    scale = min(1.0, (STATISTICS_PIXELS / (bgr.shape[0] * bgr.shape[1])) ** 0.5)
    small = bgr
    if scale < 1.0:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # One window over the whole (small) image with the network's own normalisations:
    # exactly the untiled statistics of that image.
    unfrozen = model.build(None, slice(None))
    geometry = _map_geometry(unfrozen)
    padded = _PaddedImage(small, model.border)
    whole = plan_tiles(*padded.inner, max_core=_ceil(max(padded.inner), SIZE_MULTIPLE))
    statistics = _measure(unfrozen, geometry, padded, whole)
    if scale == 1.0 or not exact:
        return statistics
    # A normalisation's input depends on the statistics of every earlier one, so they
    # are measured in order, each pass running the network only up to the next one.
    del unfrozen
    padded = _PaddedImage(bgr, model.border)
    tiles = plan_tiles(*padded.inner, max_core=max_core, margin=model.margin)
    for index in range(len(statistics)):
        layer = slice(index, index + 1)
        network = model.build(statistics, layer)
        statistics[layer] = _measure(network, geometry[layer], padded, tiles)
    return statistics


def stylize_large(
    network: StyleRunner, model_path: str | os.PathLike, bgr: np.ndarray,
    max_core: int | None = None, margin: int = MARGIN, exact_statistics: bool = False,
) -> np.ndarray:
    """Stylize ``bgr`` tile by tile on the engine and device of ``network``, which runs
    the model at ``model_path``, freezing whole-image statistics where it needs them
    (``exact_statistics``: see :func:`image_statistics`)."""
    max_core = max_core or tile_size(*bgr.shape[:2])
    path = Path(model_path)
    model = _rebuildable(network, path, margin)
    if model is None or (model.border == 0 and model.normalisations == 0):
        return stylize_tiled(network, bgr, max_core, WHOLE_NETWORK_MARGIN)
    if model.normalisations:
        statistics = image_statistics(model, bgr, exact_statistics, max_core)
        runner = model.build(statistics, None).runner
    else:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        runner = _unfrozen_tile_network(path.resolve(), stamp, network.engine, network.device).runner
    return stylize_tiled(runner, bgr, max_core, model.margin, model.border)
