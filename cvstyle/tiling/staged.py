"""Exact tiled runs of networks with instance normalisation: every layer runs once.

The graph is cut at its normalisations (:func:`cvstyle.surgery.split_stages`). Each
stage runs over all tiles, writing the tensors later stages need into whole-image maps
(:class:`.activations.ActivationStore`) and summing the statistics of the tensors that
feed a normalisation; the next stage reads its windows (with their margins) from those
maps and normalises them with the now complete whole-image statistics. The result is
the network's own, as one untiled pass would give it.

A stage whose outputs are larger than its inputs and feed only the next stage's
normalisations (the full-resolution maps after the first convolution and the last
transposed one) is not stored: it runs for its statistics alone, and the next stage
recomputes it from its smaller inputs with those statistics frozen in. Writing and
reading a large map costs more than the convolution that makes it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .. import surgery
from ..engines import build_network, on_clear
from ..engines.streams import throughput_streams
from ..memory import resident_memory
from ..model import Model
from ..runner import SIZE_MULTIPLE, StyleRunner
from .activations import ActivationStore, Layout, Lifetime
from .geometry import PaddedImage, Span, Tile, plan_tiles
from .statistics import MapGeometry, StatisticsSum, map_geometry

if TYPE_CHECKING:
    import onnx

Progress = Callable[[int, int], None]
# Peak memory per pixel, in units of the largest activation map per pixel: one untiled
# pass, and one window of a staged run (its inputs, outputs, normalised copies, the
# engine's own buffers and the mapped rows of spilled maps); see docs/benchmarks.md.
SINGLE_PASS_MAPS = 6
# Per window, by engine and streams (two windows run at once on two streams), for a
# window of the core plus the stages' context; OpenVINO's compiled stages hold more per
# window than the others. Two streams measured at 12 MP, with room to spare; OpenVINO on
# one stream scaled from its two-stream figure as before, not measured (docs/benchmarks.md).
STAGED_WINDOW_MAPS = {("openvino", 1): 44, ("openvino", 2): 28, ("onnxruntime", 2): 9}
STAGED_WINDOW_MAPS_DEFAULT = 16


@dataclass
class StagedNetwork:
    """A model cut into stages, loaded on one engine, with each kept tensor's geometry."""

    border: int
    stages: list[surgery.Stage]
    build: Callable[[], list[StyleRunner]]  # the stage networks (:attr:`runners`)
    geometry: dict[str, MapGeometry]
    channels: dict[str, int]
    last_use: dict[str, int]  # the last stage reading each kept tensor
    normalisations: dict[str, surgery.Normalisation]  # by the tensor each one gives
    final: str  # the network's output
    graph: "onnx.ModelProto"  # the network the stages were cut from
    recomputed: frozenset[int]  # stages whose outputs the next stage recomputes
    # Resident memory the engines kept after earlier photos (buffers for their shapes),
    # which the next photo's stages reuse rather than add to.
    held: int = 0
    # The context beyond a tile's core each stage reads as it runs (merged with the one
    # before where that one is recomputed), in padded-image pixels (:meth:`margin`).
    margins: list[int] = field(default_factory=list)
    # The widest of them on the stride grid: how much larger than its core a window is.
    context: int = 0

    @functools.cached_property
    def runners(self) -> list[StyleRunner]:
        """One network per stage, built at the first staged run: deciding whether a
        photo fits one pass needs only the maps' sizes."""
        return self.build()

    @property
    def streams(self) -> int:
        """Tiles run at once, one per stream of the stage networks (one where the
        engine cannot split the cores)."""
        return self.runners[0].streams

    def merged(self, index: int, statistics: dict[str, tuple[np.ndarray, np.ndarray]],
               runner: StyleRunner, model: Model) -> tuple[surgery.Stage, StyleRunner]:
        """Stages ``index - 1`` and ``index`` as one, with the normalisations between
        them frozen to ``statistics``, on ``runner``'s engine."""
        stage = _merged_stage(self.graph, self.stages, index, statistics)
        return stage, _stage_runner(model, stage.graph, runner.engine, runner.device, runner.precision, self.streams)

    def margin(self, stage: surgery.Stage) -> int:
        """The context beyond a tile's core that ``stage`` needs, in padded-image pixels:
        its convolutions' reach (:func:`cvstyle.surgery.spatial_reach`), counted at the
        lowest resolution among its inputs and outputs. More context would change
        nothing in an exact map and only cost time."""
        def scale(name: str) -> Fraction:
            norm = self.normalisations.get(name)
            where = self.geometry.get(norm.source if norm else name)
            return where.scale if where else Fraction(1)  # the image itself

        lowest = min(scale(name) for name in (*stage.inputs, *stage.outputs))
        return math.ceil(surgery.spatial_reach(stage.graph) / lowest)

    def reach(self, stage: surgery.Stage) -> Fraction:
        """How far (in padded-image pixels) the stage's outputs lie inside its inputs'
        extent: the unpadded convolutions' shrinking up to this stage."""
        return max(self.geometry[name].offset / self.geometry[name].scale for name in stage.outputs)

    def largest_map(self) -> float:
        """Bytes per image pixel of the largest activation map."""
        return 4 * max(self.channels[name] * float(self.geometry[name].scale) ** 2 for name in self.channels)


    def single_pass_bytes(self, height: int, width: int) -> int:
        """About how much memory one untiled pass takes at this size."""
        return int(SINGLE_PASS_MAPS * self.largest_map() * height * width)

    def window_bytes(self, core: int, engine: str) -> int:
        """About how much memory a staged run on ``engine`` takes for its windows, one
        per stream, around square tile cores of side ``core``."""
        maps = STAGED_WINDOW_MAPS.get((engine, self.streams), STAGED_WINDOW_MAPS_DEFAULT)
        side = core + 2 * self.context
        return int(self.streams * maps * self.largest_map() * side * side)


def _graph(model: Model, border: int) -> "onnx.ModelProto":
    return surgery.without_leading_pad(model.graph) if border else model.graph


def staged_network(model: Model, runner: StyleRunner) -> StagedNetwork:
    """``model`` cut into stages for ``runner``'s engine, device and precision, kept for
    the model's next photo: cutting runs shape inference and probes the network twice,
    and each stage's network (built at the first staged run) takes a while to build."""
    return _staged_network(model, runner.engine, runner.device, runner.precision)


def _stage_runner(model: Model, graph: "onnx.ModelProto", engine: str, device: str, wanted: str,
                  streams: int = 1) -> StyleRunner:
    # Built here, not taken from the engines' cache of runners: a staged network holds
    # more networks than that cache keeps, so there each photo would evict the last
    # photo's stages (and the model's own runner) and build them all again.
    network = build_network(graph, engine, device, model.name, wanted, pooled=False, streams=streams)
    return StyleRunner(network, model.preprocessing, model.name)


@functools.lru_cache(maxsize=4)
def _staged_network(model: Model, engine: str, device: str, wanted: str) -> StagedNetwork:
    border = surgery.leading_border(model.graph) or 0
    graph = _graph(model, border)
    stages = surgery.split_stages(graph)
    final = graph.graph.output[0].name
    kept = sorted({name for stage in stages for name in stage.outputs} - {final})
    probe = _stage_runner(model, surgery.with_outputs(graph, kept, replace=True), engine, device, wanted)
    geometry = dict(zip(kept, map_geometry(probe, kept)))
    # The picture: the padded image less the border the padding added.
    geometry[final] = MapGeometry(Fraction(1), Fraction(border))
    with probe.lock:
        shapes = probe.infer(probe.preprocess(np.zeros((96, 96, 3), np.uint8)), kept)
    del probe
    channels = {name: shape.shape[1] for name, shape in zip(kept, shapes)}
    # Tiles run on two streams (cvstyle.engines.streams): while one tile's window is
    # copied in or out of the maps, on one core, the other's runs on the other core.
    def build() -> list[StyleRunner]:
        return [_stage_runner(model, stage.graph, engine, device, wanted, throughput_streams()) for stage in stages]

    sources = {norm.target: norm.source for stage in stages for norm in stage.normalisations}
    last_use: dict[str, int] = {}
    for index, stage in enumerate(stages):
        for name in stage.inputs:
            last_use[sources.get(name, name)] = index
    norms = {norm.target: norm for stage in stages for norm in stage.normalisations}
    recomputed = _recomputed(graph, stages, channels, geometry, last_use, sources)
    for index in recomputed:  # the next stage reads this one's inputs again
        for name in stages[index].inputs:
            last_use[sources.get(name, name)] = index + 1
    network = StagedNetwork(border, stages, build, geometry, channels, last_use, norms, final, graph, recomputed)
    run = [
        _merged_stage(graph, stages, index, _dummy_statistics(stage, channels)) if index - 1 in recomputed else stage
        for index, stage in enumerate(stages)
    ]
    network.margins = [network.margin(stage) for stage in run]
    network.context = max(network.margins) + SIZE_MULTIPLE
    return network


on_clear(_staged_network.cache_clear)


def _merged_stage(graph: "onnx.ModelProto", stages: list[surgery.Stage], index: int, statistics) -> surgery.Stage:
    """Stages ``index - 1`` and ``index`` of ``graph`` as one: freezing the normalisations
    that start stage ``index`` puts its nodes on the level of the stage before."""
    frozen = {norm.source: statistics[norm.source] for norm in stages[index].normalisations}
    return surgery.split_stages(surgery.freeze_instance_norms(graph, frozen))[index - 1]


def _dummy_statistics(stage: surgery.Stage, channels: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Statistics of the right shape for the normalisations ``stage`` starts from, to
    build its merged form before the real ones are known."""
    return {norm.source: (np.zeros(channels.get(norm.source, 1)), np.ones(channels.get(norm.source, 1)))
            for norm in stage.normalisations}


def _recomputed(graph: "onnx.ModelProto", stages: list[surgery.Stage], channels: dict[str, int],
                geometry: dict[str, MapGeometry], last_use: dict[str, int],
                sources: dict[str, str]) -> frozenset[int]:
    """The stages worth recomputing in the next one rather than storing: their outputs
    take more bytes per pixel than their inputs and feed only the next stage's
    normalisations. Never two in a row (a recomputed stage's inputs are stored), chosen
    from the end, where the larger maps of a style network lie."""
    def size(names) -> float:
        return max((channels[name] * float(geometry[name].scale) ** 2 for name in names if name in channels), default=3.0)

    chosen: set[int] = set()
    for index in range(len(stages) - 2, -1, -1):
        stage, following = stages[index], stages[index + 1]
        normalised = {norm.source for norm in following.normalisations}
        inputs = [sources.get(name, name) for name in stage.inputs]
        if (
            index + 1 in chosen
            or not stage.outputs
            or not set(stage.outputs) <= normalised
            or any(last_use.get(name) != index + 1 for name in stage.outputs)
            or any(name in following.inputs for name in stage.outputs)
            or size(stage.outputs) <= size(inputs)
        ):
            continue
        if _merged_stage(graph, stages, index + 1, _dummy_statistics(following, channels)).outputs == following.outputs:
            chosen.add(index)
    return frozenset(chosen)


def _regions(spans: list[Span], reach: Fraction, border: int, inner: int, margin: int) -> dict[Span, tuple[int, int]]:
    """The part of the padded image (start, length) whose maps a stage reads for each
    tile span along one axis: its core, what the stage's own shrinking needs and
    ``margin``, on the stride grid. All of one length (more context never changes an
    exact map), so that an engine sees one input shape per stage and prepares it once."""
    whole = inner + 2 * border
    need = reach + margin
    bounds = {
        span: (SIZE_MULTIPLE * math.floor((span.core[0] + border - need) / SIZE_MULTIPLE),
               SIZE_MULTIPLE * math.ceil((span.core[1] + border + need) / SIZE_MULTIPLE))
        for span in spans
    }
    bounds = {span: (0 if span.first else max(0, start), whole if span.last else min(whole, stop))
              for span, (start, stop) in bounds.items()}
    length = max(stop - start for start, stop in bounds.values())
    return {span: (min(start, whole - length), length) for span, (start, _) in bounds.items()}


def _extent(geometry: MapGeometry, region: tuple[int, int]) -> slice:
    """The whole-map entries a run over ``region`` of the padded image sees."""
    start = math.floor(geometry.scale * region[0])
    return slice(start, start + geometry.length(region[1]))


def _affine(norm: surgery.Normalisation, statistics: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel gain and offset that apply ``norm`` with these whole-image statistics."""
    mean, var = statistics
    gain = norm.scale / np.sqrt(var + norm.epsilon)
    return gain.astype(np.float32), (norm.bias - mean * gain).astype(np.float32)


class _Run:
    """One photo through a :class:`StagedNetwork`."""

    def __init__(self, network: StagedNetwork, model: Model, runner: StyleRunner, bgr: np.ndarray,
                 tiles: list[Tile], store: ActivationStore):
        self.network, self.model, self.runner, self.store, self.tiles = network, model, runner, store, tiles
        self.padded = PaddedImage(bgr, network.border)
        self.statistics: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.result = np.empty((*self.padded.inner, 3), np.uint8)

    def feed(self, name: str, regions: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        norm = self.network.normalisations.get(name)
        if norm is not None:
            return self.read(norm.source, regions, _affine(norm, self.statistics[norm.source]))[None]
        if name in self.network.geometry:
            return self.read(name, regions)[None]
        (top, height), (left, width) = regions  # the image itself
        return self.runner.preprocess(self.padded.region((top, top + height), (left, left + width)))

    def read(self, name: str, regions: tuple[tuple[int, int], tuple[int, int]],
             affine: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        where = self.network.geometry[name]
        return self.store.read(name, _extent(where, regions[0]), _extent(where, regions[1]), affine)

    def keep(self, name: str, tile: Tile, regions, output: np.ndarray, summed: bool,
             stored: bool) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Store the tile's core of ``output`` (or paint it, for the picture); its
        per-channel sums and sums of squares and its pixel count where ``summed``."""
        where, border = self.network.geometry[name], self.network.border
        (height, width), starts = self.padded.inner, [_extent(where, region).start for region in regions]
        rows, cols = (where.over_core(span, border, size) for span, size in zip((tile.rows, tile.cols), (height, width)))
        block = output[0][:, rows.start - starts[0]: rows.stop - starts[0], cols.start - starts[1]: cols.stop - starts[1]]
        if name == self.network.final:
            picture = self.runner.postprocess(block[None], block.shape[1], block.shape[2])
            self.result[rows, cols] = picture
            return None
        if stored:
            self.store.write(name, rows, cols, block)
        count = block.shape[1] * block.shape[2]
        return (*StatisticsSum.sums(block), count) if summed and count else None

    def stage(self, index: int, progress: Callable[[], None]) -> None:
        stage, runner = self.network.stages[index], self.network.runners[index]
        if index - 1 in self.network.recomputed:
            stage, runner = self.network.merged(index, self.statistics, self.runner, self.model)
        margin = self.network.margins[index]
        stored = index not in self.network.recomputed
        height, width = self.padded.inner
        border = self.network.border
        normalised = {norm.source for norm in self.network.normalisations.values()}
        for name in stage.outputs:
            if name != self.network.final and stored:
                self.store.allocate(name)
        sums = {name: StatisticsSum() for name in stage.outputs if name in normalised}
        reach = self.network.reach(stage)
        rows, cols = (
            _regions(list(dict.fromkeys(spans)), reach, border, size, margin)
            for spans, size in (([tile.rows for tile in self.tiles], height), ([tile.cols for tile in self.tiles], width))
        )

        def run_tile(tile: Tile) -> list[tuple[list, int] | None]:
            regions = (rows[tile.rows], cols[tile.cols])
            feeds = {name: self.feed(name, regions) for name in stage.inputs}
            with runner.lock:
                outputs = runner.run(feeds, stage.outputs)
            return [self.keep(name, tile, regions, output, name in sums, stored) for name, output in zip(stage.outputs, outputs)]

        # Tiles run side by side on the engine's streams, each reading, running and
        # writing its own window; the statistics are summed in tile order.
        tiles = ThreadPoolExecutor(max_workers=runner.streams, thread_name_prefix="cvstyle-stage")
        try:
            for kept in tiles.map(run_tile, self.tiles):
                for name, summed in zip(stage.outputs, kept):
                    if summed is not None:
                        sums[name].add_sums(*summed)
                progress()
        finally:  # after an error or an interrupt, the tiles not started are dropped
            tiles.shutdown(wait=True, cancel_futures=True)
            # The stages run in turn: each hands back its forwards' working memory as it
            # ends, from here, where none of its forwards can still be running.
            runner.network.release_memory()
        self.statistics.update((name, total.result()) for name, total in sums.items())
        for name, last in self.network.last_use.items():
            if last == index:
                self.store.free(name)


def map_layout(network: StagedNetwork, height: int, width: int, ram_budget: int | None = None) -> Layout:
    """Where a run's stored maps go (:meth:`.activations.Layout.plan`): RAM within
    ``ram_budget`` bytes, files beyond it."""
    border, maps = network.border, []
    for index, stage in enumerate(network.stages):
        for name in stage.outputs:
            if name != network.final and index not in network.recomputed:
                where = network.geometry[name]
                shape = (network.channels[name], where.length(height + 2 * border), where.length(width + 2 * border))
                maps.append(Lifetime(name, shape, index, network.last_use.get(name, len(network.stages))))
    return Layout.plan(maps, ram_budget)


def stylize_staged(
    runner: StyleRunner, model: Model, bgr: np.ndarray, max_core: int, margin: int,
    ram_budget: int, progress: Progress | None = None,
) -> np.ndarray:
    """``bgr`` through ``model`` tile by tile and stage by stage, equal to one untiled
    pass; activations beyond ``ram_budget`` bytes go to temporary files."""
    network = staged_network(model, runner)
    inner = PaddedImage(bgr, network.border).inner
    tiles = plan_tiles(*inner, max_core, margin)
    total = len(tiles) * len(network.stages)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress(done[0], total)

    layout = map_layout(network, *inner, ram_budget)
    unheld = resident_memory() - network.held  # the process without the engines' kept memory
    with ActivationStore(layout) as store:
        run = _Run(network, model, runner, bgr, tiles, store)
        for index in range(len(network.stages)):
            run.stage(index, step)
    network.held = max(0, resident_memory() - unheld - run.result.nbytes)
    return run.result[: bgr.shape[0], : bgr.shape[1]]
