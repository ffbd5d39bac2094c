"""How the benchmarks reach into cvstyle: the one module that knows its internals.

Sections load networks, read a model's Torch7 tree, clear the network cache and run
``cvstyle apply`` only through these functions, so that a change of the project's API
is adapted here once.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np

import cvstyle
from cvstyle import engines, tiling, torch7
from cvstyle.runner import StyleRunner, cuda_available
from cvstyle.torch7 import TorchObject

from harness import Plan


def model_root(path: Path) -> TorchObject:
    """The network module of the `.t7` checkpoint at ``path`` (the checkpoint's root, or
    its ``model`` entry)."""
    checkpoint = torch7.load(path)
    return checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint


def engine_name(engine: str, path: Path, device: str = "cpu") -> str:
    """The engine ``engine`` (auto, opencv, onnxruntime) resolves to for ``path`` on
    ``device``, as the project's Stylizer and ``cvstyle apply --engine`` choose it."""
    return engines.choose_engine(engine, device, path)


def load_runner(path: Path, engine: str, device: str = "cpu") -> StyleRunner:
    """A freshly loaded runner of ``path`` on ``engine`` and ``device`` (not the cached one)."""
    return engines.load_engine(path, engine, device)


def opencv_runner(path: Path) -> StyleRunner:
    """``path`` on OpenCV's DNN on the CPU, loaded as the opencv engine loads it (the
    Torch7 importer on OpenCV 4, the ONNX conversion on OpenCV 5)."""
    return load_runner(path, "opencv")


def opencv_net(path: Path) -> cv2.dnn.Net:
    """A fresh ``cv2.dnn.Net`` of ``path``, for trying OpenCV settings on it directly."""
    return opencv_runner(path).net


def opencv_gflop(runner: StyleRunner, blob_shape: tuple[int, ...]) -> float | None:
    """OpenCV's own count of an OpenCV runner's work (``Net.getFLOPS``), in GFLOP; None
    where this OpenCV cannot count it."""
    try:
        return runner.net.getFLOPS(list(blob_shape)) / 1e9
    except (cv2.error, TypeError):  # OpenCV 5's binding takes no shape from Python
        return None


def onnx_file(path: Path) -> Path:
    """The project's ONNX conversion of the `.t7` at ``path``."""
    return engines.cached_onnx(path)


def onnxruntime_providers() -> list[str]:
    return engines.onnxruntime_providers()


def gpu_configurations() -> list[tuple[str, str]]:
    """(engine, device) pairs on a GPU that this machine can run."""
    pairs = []
    if cuda_available():
        pairs.append(("opencv", "cuda"))
    providers = onnxruntime_providers()
    if engines.CUDA in providers:
        pairs.append(("onnxruntime", "cuda"))
    if engines.TENSORRT in providers:
        pairs.append(("onnxruntime", "cuda-fp16"))
    return pairs


def stylizer_runner(stylizer: cvstyle.Stylizer) -> StyleRunner:
    """The (cached) runner a one-model Stylizer stylizes with."""
    return stylizer.networks[0]


def planned_tiles(image: np.ndarray) -> int:
    """How many tiles ``Stylizer.stylize`` cuts ``image`` into by default (0: untiled)."""
    height, width = image.shape[:2]
    if not tiling.needs_tiling(image, "auto"):
        return 0
    return len(tiling.plan_tiles(height, width, tiling.tile_size(height, width)))


def clear_network_cache() -> None:
    """Forget loaded networks, so that the next Stylizer or ``cvstyle apply`` loads its own."""
    cvstyle.clear_network_cache()


def seed_network(path: Path) -> cv2.dnn.Net:
    """The network as tutorials load it: ``readNetFromTorch`` where OpenCV has it (4.x),
    else ``readNetFromONNX`` on the project's conversion (OpenCV 5 reads no `.t7`)."""
    if hasattr(cv2.dnn, "readNetFromTorch"):
        return cv2.dnn.readNetFromTorch(str(path))
    return cv2.dnn.readNetFromONNX(str(onnx_file(path)))


@contextlib.contextmanager
def silenced():
    """Keep the CLI's 'wrote ...' lines and progress bars out of the document."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def cli_apply(arguments: list[str]) -> None:
    """``cvstyle apply ARGUMENTS`` in this process; an exit code other than 0 raises."""
    from cvstyle.cli import main

    with silenced():
        code = main(["apply", *arguments])
    if code:
        raise RuntimeError(f"cvstyle apply {' '.join(arguments)} exited with {code}")


def engine_option(plan: Plan) -> list[str]:
    """``cvstyle apply``'s engine option, left out for auto (the project's default)."""
    return [] if plan.engine == "auto" else ["--engine", plan.engine]


def engine_argument(plan: Plan) -> dict:
    """``Stylizer``'s engine keyword, left out for auto."""
    return {} if plan.engine == "auto" else {"engine": plan.engine}


def engine_text(plan: Plan, api: bool = False) -> str:
    """How the plan's engine shows in a quoted command (``api``: a Python call)."""
    if plan.engine == "auto":
        return ""
    return f", engine={plan.engine!r}" if api else f" --engine {plan.engine}"

