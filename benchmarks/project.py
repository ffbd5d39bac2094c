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

import cvstyle
from cvstyle import engines
from cvstyle.engines import onnxruntime as ort_engine
from cvstyle.engines.opencv import OpenCvNetwork, cuda_available, has_torch_importer, read_onnx_file, read_torch
from cvstyle.model import cached_onnx, open_model
from cvstyle.runner import StyleRunner
from cvstyle.torch7 import TorchObject

from harness import Plan


def model_root(path: Path) -> TorchObject:
    """The network module (Torch7 tree) of the `.t7` model at ``path``."""
    return open_model(path).tree


def engine_name(engine: str, path: Path, device: str = "cpu") -> str:
    """The engine ``engine`` (auto, opencv, onnxruntime) resolves to for ``path`` on
    ``device``, as the project's Stylizer and ``cvstyle apply --engine`` choose it."""
    return engines.choose_engine(engine, device, path)


def load_runner(path: Path, engine: str, device: str = "cpu") -> StyleRunner:
    """A freshly loaded runner of ``path`` on ``engine`` and ``device``, not the project's
    cached one: benchmarks that load or reconfigure a network need their own."""
    model = open_model(path)
    if engines.choose_engine(engine, device, model) == "opencv":
        return StyleRunner(OpenCvNetwork(opencv_net(path), device), model.preprocessing, model.name)
    return StyleRunner(engines.build_network(model.graph, "onnxruntime", device, model.name),
                       model.preprocessing, model.name)


def opencv_runner(path: Path) -> StyleRunner:
    """A fresh runner of ``path`` on OpenCV's DNN on the CPU."""
    return load_runner(path, "opencv")


def opencv_net(path: Path) -> cv2.dnn.Net:
    """A fresh ``cv2.dnn.Net`` of ``path``, read as the opencv engine reads the model
    itself (the Torch importer on OpenCV 4, the ONNX conversion on OpenCV 5)."""
    return read_torch(path) if has_torch_importer() else read_onnx_file(onnx_file(path))


def opencv_gflop(runner: StyleRunner, blob_shape: tuple[int, ...]) -> float | None:
    """OpenCV's own count of an OpenCV runner's work (``Net.getFLOPS``), in GFLOP; None
    where this OpenCV cannot count it."""
    try:
        return runner.network.net.getFLOPS(list(blob_shape)) / 1e9
    except (cv2.error, TypeError):  # OpenCV 5's binding takes no shape from Python
        return None


def onnx_file(path: Path) -> Path:
    """The project's ONNX conversion of the `.t7` at ``path``."""
    return cached_onnx(path, open_model(path).tree)


def onnxruntime_providers() -> list[str]:
    return ort_engine.available_providers()


def gpu_configurations() -> list[tuple[str, str]]:
    """(engine, device) pairs on a GPU that this machine can run."""
    pairs = []
    if cuda_available():
        pairs.append(("opencv", "cuda"))
    providers = onnxruntime_providers()
    if ort_engine.CUDA in providers:
        pairs.append(("onnxruntime", "cuda"))
    if ort_engine.TENSORRT in providers:
        pairs.append(("onnxruntime", "cuda-fp16"))
    return pairs


def stylizer_runner(stylizer: cvstyle.Stylizer) -> StyleRunner:
    """The (cached) runner a one-model Stylizer stylizes with."""
    return stylizer.runners[0]


def clear_network_cache() -> None:
    """Forget loaded networks, so that the next Stylizer or ``cvstyle apply`` loads its own."""
    cvstyle.clear_network_cache()


def seed_network(path: Path) -> cv2.dnn.Net:
    """The network as tutorials load it: ``readNetFromTorch`` where OpenCV has it (4.x),
    else ``readNetFromONNX`` on the project's conversion (OpenCV 5 reads no `.t7`)."""
    if has_torch_importer():
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

