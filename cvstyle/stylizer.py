"""The public Python API: ``Stylizer(model).stylize(image)``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from . import effects, presets, tiling
from .errors import CvstyleError
from .memory import default_budget, parse_size
from .engines import load_runner
from .model import Model, open_model
from .runner import Preprocessing, StyleRunner

DEFAULT_MODEL = "sketch"  # the built-in model: works offline with nothing downloaded
Progress = Callable[[int, int], None]
ModelSpec = str | os.PathLike | Sequence[tuple[str | os.PathLike, float]]
# Photos large enough to tile run one at a time, each with all the cores and the whole
# memory budget, even where threads paint smaller ones side by side.
_LARGE_PHOTOS = threading.Lock()


def parse_model_spec(spec: str | os.PathLike) -> list[tuple[str, float]]:
    """``"candy"`` -> ``[("candy", 1.0)]``; ``"candy:0.7+udnie:0.3"`` -> a weighted mix.

    An existing file path is always one model, whatever characters it holds.
    """
    text = os.fspath(spec)
    if Path(text).is_file():
        return [(text, 1.0)]
    return split_model_spec(text)


def split_model_spec(text: str) -> list[tuple[str, float]]:
    """The names and weights of ``"candy:0.7+udnie:0.3"``, without looking for files: what
    :func:`parse_model_spec` does with a spec that is not a file (and a server with any spec)."""
    parts = []
    for part in text.split("+"):
        name, sep, weight = part.rpartition(":")
        if sep and name:
            try:
                parts.append((name.strip(), float(weight)))
                continue
            except ValueError:
                pass  # a colon that is part of the name, not a weight
        parts.append((part.strip(), 1.0))
    if any(not name for name, _ in parts):
        raise CvstyleError(f"empty model name in {text!r}")
    return parts


def load_model(
    model: str | os.PathLike, device: str = "auto", manifest=None, engine: str = "auto",
    input_format: str | Preprocessing | None = None, precision: str = "exact", streams: int = 1,
) -> tuple[Model, StyleRunner]:
    """Resolve a catalogue name or path; return the open model and its (cached) runner
    (:func:`open_named_model`)."""
    opened = open_named_model(model, manifest, input_format)
    return opened, load_runner(opened, engine, device, wanted=precision, streams=streams)


def open_named_model(
    model: str | os.PathLike, manifest=None, input_format: str | Preprocessing | None = None
) -> Model:
    """The open model a catalogue name or path names, with the pre-processing it takes.

    A catalogue model gets the pre-processing its line declares (``input=``), the
    built-in ``sketch`` fast-neural-style's ``vgg``, and a model file given by path
    ``input_format`` (a :mod:`cvstyle.presets` name or a
    :class:`~cvstyle.runner.Preprocessing`; default ``vgg``).
    """
    from .store import BUILTIN_MODELS, locate_model  # the catalogue is read only when a model is named

    spec = os.fspath(model)
    path, entry = locate_model(spec, manifest)
    if entry is not None:
        preprocessing = presets.preset(entry.input_format, entry.source)
    elif spec in BUILTIN_MODELS or input_format is None:
        preprocessing = presets.preset(presets.DEFAULT)
    elif isinstance(input_format, Preprocessing):
        preprocessing = input_format
    else:
        preprocessing = presets.preset(input_format)
    return open_model(path, preprocessing)


class Stylizer:
    """One style (or a weighted mix of styles), loaded once, applied to any number of images.

    ``model`` is a catalogue name (``"candy"``, ``"eccv16/starry_night"``), the built-in
    ``"sketch"``, a path to a `.t7` file, a mix such as ``"candy:0.7+udnie:0.3"``, or a
    list of ``(model, weight)`` pairs; model files are `.t7` or `.onnx`. ``device`` is
    ``auto``, ``cpu``, ``opencl``, ``cuda`` or ``cuda-fp16``. ``engine`` is ``auto``,
    ``opencv``, ``onnxruntime`` or ``openvino`` (``auto``: ONNX Runtime with a GPU
    provider; on the CPU the installed engine that measured fastest on this machine).
    ``precision`` is ``exact`` (float32, the default) or ``fast`` (bfloat16 through
    OpenVINO on CPUs with AVX512-BF16 or AMX, at a measured cost: see the README).
    ``input_format`` is how model files given by path want their pixels: a preset
    (``vgg``, the default and what `.t7` models take; ``rgb255`` for the PyTorch example
    trainer's models; ``rgb01``: see :mod:`cvstyle.presets`) or a
    :class:`~cvstyle.runner.Preprocessing`; catalogue models use their line's ``input=``.
    ``streams`` (default 1) is for threads that paint several images at once, as
    ``cvstyle apply`` does for folders and videos: the engine splits the cores between
    that many forwards, each slower and together faster (OpenVINO and ONNX Runtime on
    the CPU; elsewhere one at a time). Photos large enough to tile still run one at a
    time, on all the cores.

    >>> import cv2
    >>> from cvstyle import Stylizer
    >>> painted = Stylizer("sketch").stylize(cv2.imread("samples/chelsea.png"))
    """

    def __init__(
        self,
        model: ModelSpec = DEFAULT_MODEL,
        device: str = "auto",
        manifest: str | os.PathLike | None = None,
        engine: str = "auto",
        input_format: str | Preprocessing | None = None,
        precision: str = "exact",
        streams: int = 1,
    ):
        if streams < 1:
            raise CvstyleError(f"streams must be at least 1, not {streams}")
        parts = (
            parse_model_spec(model)
            if isinstance(model, (str, os.PathLike))
            else [(name, float(weight)) for name, weight in model]
        )
        self.weights = effects.normalise_weights([weight for _, weight in parts])
        self.models, self.runners = zip(
            *(load_model(name, device, manifest, engine, input_format, precision, streams) for name, _ in parts)
        )
        self.name = mix_display_name(parts)
        self.engine_choice = engine  # auto ranks staged runs apart (tiling.staged_runner)

    # Where and how the (first) model runs; precision is exact, or fast where asked for and available.
    device = property(lambda self: self.runners[0].device)
    engine = property(lambda self: self.runners[0].engine)
    precision = property(lambda self: self.runners[0].precision)
    preprocessing = property(lambda self: self.runners[0].preprocessing)
    streams = property(lambda self: self.runners[0].streams)  # forwards that may run at once

    def stylize(
        self,
        image: np.ndarray,
        size: int | None = None,
        median_filter: int = 0,
        preserve_colors: bool = False,
        strength: float = 1.0,
        tile: str = "auto",
        statistics: str = "exact",
        exact_statistics: bool | None = None,
        tile_settings: tiling.TileSettings = tiling.DEFAULT_SETTINGS,
        progress: Progress | None = None,
        max_memory: int | str | None = None,
    ) -> np.ndarray:
        """Paint ``image`` (uint8 BGR; grayscale and BGRA are accepted too).

        With the defaults the result is the network's own output at the input's size.
        ``size`` processes (and returns) the image resized so its longer side is ``size``.
        ``median_filter`` applies the reference runner's median filter of that odd size.
        ``preserve_colors`` keeps the photo's colours, taking the painting's luminance.
        ``strength`` (0..1) blends from the photo (0) to the full style (1).
        ``tile`` is ``auto`` (overlapping tiles above about 2 megapixels, so any size works
        in bounded memory), ``on`` or ``off``; ``tile_settings`` sets tile sizes and margins.
        Tiled, instance_norm models normalise with whole-image statistics: ``statistics``
        ``exact`` (the default: equal to one untiled pass) or ``estimate`` (measured on a
        0.26-megapixel copy); ``exact_statistics=True`` is the former spelling of exact.
        ``max_memory`` (bytes, or a size such as ``"1.5G"``; default half the memory
        available) bounds a large photo's run: an instance_norm photo that fits runs in one
        pass, beyond it in stages with activations spilled to temporary files.
        ``progress(done, total)`` is told as the tiles of a large photo are painted.
        Transparency of a BGRA input is kept as it is.
        """
        check_options(median_filter, strength)
        bgr, alpha = _split_channels(image)
        if size:
            bgr = fit_longer_side(bgr, size)
        if exact_statistics is not None:
            statistics = "exact" if exact_statistics else "estimate"
        budget = parse_size(max_memory) if max_memory is not None else default_budget()
        tiled = tiling.needs_tiling(bgr, tile, tile_settings)
        used = [i for i, weight in enumerate(self.weights) if weight > 0]
        painted = effects.mix(
            [self._paint(i, bgr, tile if tiled else "off", statistics, tile_settings, progress, budget) for i in used],
            [self.weights[i] for i in used],
        )
        if median_filter:
            painted = cv2.medianBlur(painted, median_filter)
        if preserve_colors:
            painted = effects.preserve_colors(bgr, painted)
        painted = effects.blend_strength(bgr, painted, strength)
        if alpha is None:
            return painted
        if alpha.shape != painted.shape[:2]:
            alpha = cv2.resize(alpha, painted.shape[1::-1], interpolation=cv2.INTER_AREA)
        return np.dstack([painted, alpha])


    def _paint(self, index: int, bgr: np.ndarray, tile: str, statistics: str,
               settings: tiling.TileSettings, progress: Progress | None, budget: int) -> np.ndarray:
        """One model's painting: in one pass, or in tiles (``tile`` ``off``: no tiles)."""
        runner, model = self.runners[index], self.models[index]
        if tile == "off":
            return runner(bgr)
        auto = self.engine_choice == "auto"
        if runner.streams == 1:
            return _paint_large(runner, model, bgr, tile, statistics, settings, progress, budget, auto)
        with _LARGE_PHOTOS:
            whole = load_runner(model, runner.engine, runner.device, wanted=runner.precision)
            return _paint_large(whole, model, bgr, tile, statistics, settings, progress, budget, auto)


def _paint_large(runner: StyleRunner, model: Model, bgr: np.ndarray, tile: str, statistics: str,
                 settings: tiling.TileSettings, progress: Progress | None, budget: int, auto: bool) -> np.ndarray:
    """A photo above the tiling threshold: in one pass where it fits ``budget``, else in
    tiles; a staged run under ``auto`` on the engine fastest at staged runs."""
    if tile == "auto" and tiling.fits_one_pass(runner, model, bgr, budget):
        return runner(bgr)
    return tiling.stylize_large(runner, model, bgr, settings, statistics, progress, budget, auto)


def mix_display_name(parts: Sequence[tuple[str | os.PathLike, float]]) -> str:
    """A mix's name, as outputs are named: its models' display names joined by ``+``."""
    return "+".join(model_display_name(name) for name, _ in parts)


def model_display_name(model: str | os.PathLike) -> str:
    """``candy``, ``eccv16/la_muse`` -> ``la_muse``, ``dir/mine.onnx`` -> ``mine``."""
    name = Path(os.fspath(model)).name
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and suffix.lower() in ("t7", "onnx") else name


def check_options(median_filter: int = 0, strength: float = 1.0) -> None:
    """Refuse post-processing settings that cannot work, before any image is read."""
    if median_filter and (median_filter < 0 or median_filter % 2 == 0):
        raise CvstyleError(f"median filter size must be odd and positive, not {median_filter}")
    if not 0.0 <= strength <= 1.0:
        raise CvstyleError(f"strength must be between 0 and 1, not {strength}")


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


def fit_longer_side(bgr: np.ndarray, size: int) -> np.ndarray:
    if size < 1:
        raise CvstyleError(f"size must be positive, not {size}")
    height, width = bgr.shape[:2]
    scale = size / max(height, width)
    if scale == 1:
        return bgr
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(bgr, new_size, interpolation=interpolation)
