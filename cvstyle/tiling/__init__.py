"""Stylize images of any size in overlapping tiles, with bounded memory.

One forward pass over a large photo takes gigabytes (and crashes OpenCV's transposed
convolution on some sizes), so large images are cut into tiles whose windows carry a
margin of real context; only each tile's core is kept, so no blending is needed and no
seam can form. Windows start on the network's stride grid (:mod:`.geometry`).

fast-neural-style networks open with a reflection padding that their unpadded
residual blocks shave off again. The image is padded once, as that first layer would
pad it, and tiles run through the network without that layer: a margin then only has
to cover the zero padding of the "same" convolutions.

instance_norm networks normalise with statistics of the whole image. By default they
run stage by stage over all tiles (:mod:`.staged`), which gives the untiled result; the
``estimate`` mode freezes statistics measured on a small copy into every tile
(:mod:`.statistics`).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import surgery
from ..engines import build_network, load_runner, load_variant, ranking
from ..errors import CvstyleError
from ..memory import default_budget, resident_memory
from ..model import Model, open_model
from ..runner import SIZE_MULTIPLE, StyleRunner
from ..surgery import Statistics
from .geometry import PaddedImage, Span, Tile, ceil_to, plan_spans, plan_tiles, stylize_tiled
from .staged import map_layout, staged_network, stylize_staged
from .statistics import map_geometry, measure

__all__ = [
    "TileSettings", "DEFAULT_SETTINGS", "tile_settings", "needs_tiling", "stylize_large", "stylize_tiled",
    "plan_spans", "plan_tiles", "PaddedImage", "Span", "Tile", "image_statistics", "fits_one_pass",
    "staged_runner", "time_staged_probe",
]
Progress = Callable[[int, int], None]
# The staged run that ranks engines for staged runs (ranking.STAGED_METHOD says it in words).
PROBE_SHAPE = (480, 640, 3)
PROBE_TILE = 128
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileSettings:
    """How large photos are cut (README, Large photos)."""

    auto_pixels: int = 1920 * 1088  # tile="auto" tiles above this many pixels
    max_tile: int = 1024  # largest core side
    huge_pixels: int = 64_000_000  # above this many pixels cores shrink to huge_image_tile,
    huge_image_tile: int = 768  # leaving room for the photo and its result
    margin: int = 32  # context beyond the core: the reach of the convolutions' zero padding
    # Networks that do not open with a reflection padding run whole on each window,
    # which then also needs room for the padding the network adds itself.
    whole_network_margin: int = 64
    statistics_pixels: int = 512 * 512  # the size of the copy statistics are estimated on

    def tile_size(self, height: int, width: int) -> int:
        """The largest tile core side for an image of this size."""
        return self.huge_image_tile if height * width > self.huge_pixels else self.max_tile


DEFAULT_SETTINGS = TileSettings()


def tile_settings(tile_size: int | None) -> TileSettings:
    """The default settings, with tiles of at most ``tile_size`` (a multiple of 4) if given."""
    if tile_size is None:
        return DEFAULT_SETTINGS
    if tile_size % SIZE_MULTIPLE or tile_size < 64:
        raise CvstyleError(f"tile size must be a multiple of {SIZE_MULTIPLE} and at least 64, not {tile_size}")
    return TileSettings(max_tile=tile_size, huge_image_tile=min(tile_size, DEFAULT_SETTINGS.huge_image_tile))
STATISTICS_MODES = ("exact", "estimate")


def needs_tiling(bgr: np.ndarray, mode: str, settings: TileSettings = DEFAULT_SETTINGS) -> bool:
    """``mode`` is ``auto`` (tile above ``settings.auto_pixels``), ``on`` or ``off``."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"tiling mode must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and bgr.shape[0] * bgr.shape[1] > settings.auto_pixels)


def _unpadded(model: Model):
    return surgery.without_leading_pad(model.graph)


def _measuring(model: Model, runner: StyleRunner, border: int | None) -> StyleRunner:
    """The network (without its padding where it has one) pruned to the inputs of its
    instance normalisations, kept for the next photo."""
    def graph():
        base = _unpadded(model) if border else model.graph
        return surgery.with_outputs(base, surgery.normalisation_inputs(base), replace=True)

    return load_variant(
        model, runner.engine, runner.device, "normalisation-inputs", graph, wanted=runner.precision
    )


def _frozen(model: Model, runner: StyleRunner, border: int | None, statistics: Statistics) -> StyleRunner:
    base = _unpadded(model) if border else model.graph
    graph = surgery.freeze_instance_norms(base, statistics)
    network = build_network(graph, runner.engine, runner.device, model.name, runner.precision)
    return StyleRunner(network, model.preprocessing, model.name)


def image_statistics(
    model: Model, runner: StyleRunner, bgr: np.ndarray, settings: TileSettings = DEFAULT_SETTINGS,
) -> Statistics:
    """Each instance normalisation's input statistics for ``bgr``, measured on a copy
    scaled down to ``settings.statistics_pixels`` (exact for smaller images)."""
    border = surgery.leading_border(model.graph) or 0
    measuring = _measuring(model, runner, border)
    outputs = surgery.normalisation_inputs(_unpadded(model) if border else model.graph)
    geometry = map_geometry(measuring, outputs)
    scale = min(1.0, (settings.statistics_pixels / (bgr.shape[0] * bgr.shape[1])) ** 0.5)
    small = bgr
    if scale < 1.0:
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    # One window over the whole (small) image with the network's own normalisations:
    # exactly the untiled statistics of that image.
    padded = PaddedImage(small, border)
    whole = plan_tiles(*padded.inner, ceil_to(max(padded.inner), SIZE_MULTIPLE), settings.margin)
    return measure(measuring, outputs, geometry, padded, whole)


def fits_one_pass(runner: StyleRunner, model: Model, bgr: np.ndarray, budget: int) -> bool:
    """Whether ``model`` (with instance normalisation) paints ``bgr`` in one pass within
    ``budget`` bytes on ``runner``'s engine (OpenCV's transposed convolution crashes on
    large inputs, so OpenCV always tiles)."""
    if not model.normalisations or runner.engine == "opencv" or importlib.util.find_spec("onnx") is None:
        return False
    height, width = bgr.shape[:2]
    return staged_network(model, runner).single_pass_bytes(height, width) <= budget


MIN_STAGED_TILE = 128
# Maps spilled to files cost more time than the extra tiles of windows down to this core
# side, so the plan keeps every map in RAM where windows this large still fit beside them.
MIN_UNSPILLED_CORE = 384


def _staged_plan(runner: StyleRunner, model: Model, bgr: np.ndarray, largest_core: int,
                 budget: int) -> tuple[int, int]:
    """Tile core side and the RAM for whole-image activation maps within ``budget``
    bytes: what the process already holds, the photo and its result come first; then
    all the maps and the largest tile's work that fits beside them, or where that tile
    would be small, a tile's work of up to half the rest and the maps in what is left."""
    network = staged_network(model, runner)
    network.runners  # the stage networks: built before the process's memory is read, which then counts them
    free = max(0, budget - (resident_memory() - network.held) - 2 * bgr.nbytes)
    maps = map_layout(network, *PaddedImage(bgr, network.border).inner).ram

    def work(core: int) -> int:
        return network.window_bytes(core, runner.engine)

    def fitting(room: int) -> int:
        core = largest_core
        while core > MIN_STAGED_TILE and work(core) > room:
            core -= 64
        return core

    core = fitting(free - maps)
    if core < min(MIN_UNSPILLED_CORE, largest_core) or work(core) > free - maps:
        core = fitting(max(free // 2, free - maps))
    return core, max(0, free - work(core))


def time_staged_probe(engine: str, wanted: str) -> float:
    """Seconds of the second of two staged runs of the instance_norm fixture network on
    ``engine`` (the first loads the stages): how ``auto`` ranks engines for staged runs."""
    from ..testing import write_fixture_model

    bgr = np.random.default_rng(0).integers(0, 256, PROBE_SHAPE, np.uint8)
    with tempfile.TemporaryDirectory(prefix="cvstyle-staged-timing-") as folder:
        model = open_model(write_fixture_model(Path(folder) / "staged-timing.t7", "instance_norm"))
        runner = load_runner(model, engine, "cpu", wanted=wanted)
        for _ in range(2):
            start = time.perf_counter()
            stylize_staged(runner, model, bgr, PROBE_TILE, DEFAULT_SETTINGS.margin, ram_budget=2**40)
        return round(time.perf_counter() - start, 3)


def staged_runner(runner: StyleRunner, model: Model) -> StyleRunner:
    """For ``engine="auto"``: ``model`` on the engine that ran staged runs fastest on this
    CPU (:func:`cvstyle.engines.ranking.staged_ranked`), in ``runner``'s precision; or
    ``runner`` itself, where it is that engine or not on the CPU."""
    if runner.device != "cpu":
        return runner
    fastest = ranking.staged_ranked(time_staged_probe, runner.precision)
    if not fastest or fastest[0] == runner.engine:
        return runner
    try:
        chosen = load_runner(model, fastest[0], "cpu", wanted=runner.precision)
    except CvstyleError as error:
        log.info("%s; engine auto: its staged run stays on %s", error, runner.engine)
        return runner
    log.info("%s: engine auto: the staged run goes to %s, the fastest at staged runs on this CPU "
             "(measured once: %s)", model.name, fastest[0], ranking.STAGED_METHOD)
    return chosen


def stylize_large(
    runner: StyleRunner, model: Model, bgr: np.ndarray, settings: TileSettings = DEFAULT_SETTINGS,
    statistics: str = "exact", progress: Progress | None = None, max_memory: int | None = None,
    auto_engine: bool = False,
) -> np.ndarray:
    """Stylize ``bgr`` tile by tile on the engine and device of ``runner``, which runs
    ``model``, with whole-image normalisation statistics where the model needs them:
    ``exact`` runs each stage of the network once over all tiles
    (:mod:`.staged`, activations beyond ``max_memory`` bytes spilled to temporary files),
    ``estimate`` freezes statistics measured on a small copy. ``auto_engine``: ``runner``
    came from ``engine="auto"``, so a staged run goes to :func:`staged_runner`'s engine."""
    if statistics not in STATISTICS_MODES:
        raise ValueError(f"statistics must be one of {', '.join(STATISTICS_MODES)}, not {statistics!r}")
    max_core = settings.tile_size(*bgr.shape[:2])
    if importlib.util.find_spec("onnx") is None:  # no graph surgery: whole network per window
        return stylize_tiled(runner, bgr, max_core, settings.whole_network_margin, progress=progress)
    border = surgery.leading_border(model.graph)
    margin = settings.margin if border else settings.whole_network_margin
    if model.normalisations and statistics == "exact":
        if auto_engine:
            runner = staged_runner(runner, model)
        budget = max_memory or default_budget()
        core, ram = _staged_plan(runner, model, bgr, max_core, budget)
        return stylize_staged(runner, model, bgr, core, margin, ram, progress)
    if model.normalisations:
        frozen = image_statistics(model, runner, bgr, settings)
        tile_runner = _frozen(model, runner, border, frozen)
    elif border:
        tile_runner = load_variant(
            model, runner.engine, runner.device, "unpadded", lambda: _unpadded(model), wanted=runner.precision
        )
    else:
        tile_runner = runner
    return stylize_tiled(tile_runner, bgr, max_core, margin, border or 0, progress)
