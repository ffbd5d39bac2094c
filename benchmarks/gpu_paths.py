"""Every GPU path this machine offers: forward ms, live FPS and the difference from the
CPU in float32, as markdown (run through benchmarks/gpu.sh, which installs the paths).

    python benchmarks/gpu_paths.py [--quick] [--repeat 10]

Paths: ONNX Runtime's CUDA provider (float32, cvstyle's ``--device cuda``), its TensorRT
provider in float16 (``--device cuda-fp16``) and in float32, OpenVINO's GPU plugin
(Intel GPUs, ``--engine openvino --device opencl``, exact and fast) and OpenCV's CUDA
backend where the OpenCV build has one. A path that does not start is listed with the
reason. For both fixture families at 1200x630 and 1920x1080: forward ms (the network
alone, median of ``--repeat`` after two warm-up runs; the first run's time, which
includes TensorRT's engine build for the size, is shown apart), frame ms (pre- and
post-processing included) and the grey-level difference from ONNX Runtime on the CPU
in float32 (mean, 99th percentile, max). Live: ``cvstyle live``'s loop headless on a
simulated 120 FPS camera at 1280x720, FPS and capture-to-view latency.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cvstyle import Stylizer, engines, live
from cvstyle.errors import CvstyleError
from cvstyle.model import open_model
from cvstyle.runner import StyleRunner
from cvstyle.testing import FAMILIES, write_fixture_model

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"
SIZES = [(1200, 630), (1920, 1080)]
LIVE_SIZE = (1280, 720)
CAMERA_FPS = 120.0
# (label, engine, device, precision) of the paths cvstyle offers; TensorRT in float32 is
# built here directly (cvstyle's cuda device takes plain CUDA, which needs no per-size build).
PATHS = [
    ("onnxruntime CUDA f32", "onnxruntime", "cuda", "exact"),
    ("onnxruntime TensorRT f16", "onnxruntime", "cuda-fp16", "exact"),
    ("openvino GPU f32", "openvino", "opencl", "exact"),
    ("openvino GPU f16", "openvino", "opencl", "fast"),
    ("opencv CUDA f32", "opencv", "cuda", "exact"),
]
TENSORRT_F32 = "onnxruntime TensorRT f32"


class _TensorRtNetwork:
    """ONNX Runtime with TensorRT in float32 (falling back to CUDA for what it cannot take)."""

    engine, device, precision, streams = "onnxruntime", "cuda", "exact", 1

    def __init__(self, graph):
        import onnxruntime

        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            raise CvstyleError("this onnxruntime has no TensorRT provider")
        providers = [("TensorrtExecutionProvider", {}), "CUDAExecutionProvider"]
        self.session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=providers)
        if self.session.get_providers()[0] != "TensorrtExecutionProvider":
            raise CvstyleError("TensorRT did not start (libnvinfer not found?)")

    def run(self, feeds, outputs=None):
        name = self.session.get_inputs()[0].name
        return self.session.run(list(outputs) if outputs else None, {name: next(iter(feeds.values()))})


def _loaders(model: Path) -> dict[str, Callable[[], StyleRunner]]:
    loaders = {
        label: (lambda e=engine, d=device, p=wanted: engines.load_runner(model, e, d, wanted=p))
        for label, engine, device, wanted in PATHS
    }
    opened = open_model(model)
    loaders[TENSORRT_F32] = lambda: StyleRunner(_TensorRtNetwork(opened.graph), opened.preprocessing, opened.name)
    return loaders


def _start(loaders: dict) -> dict[str, StyleRunner]:
    runners = {}
    for label, load in loaders.items():
        try:
            runners[label] = load()
        except (CvstyleError, ImportError, RuntimeError) as error:
            print(f"- {label}: not available ({str(error).splitlines()[0] if str(error) else error})")
    return runners


def _forward(runner: StyleRunner, frame: np.ndarray, repeat: int) -> tuple[float, float, float, np.ndarray]:
    """(first-run s, median forward ms, median frame ms, output)."""
    blob = runner.preprocess(frame)
    start = time.perf_counter()
    output = runner(frame)
    first = time.perf_counter() - start
    runner.infer(blob)
    forwards, frames = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        runner.infer(blob)
        forwards.append(time.perf_counter() - start)
        start = time.perf_counter()
        runner(frame)
        frames.append(time.perf_counter() - start)
    return first, 1000 * statistics.median(forwards), 1000 * statistics.median(frames), output


def forward_table(models: dict, repeat: int) -> None:
    photo = cv2.imread(str(SAMPLE))
    rows = []
    for family in FAMILIES:
        cpu = engines.load_runner(models[family], "onnxruntime", "cpu")
        runners = _start(_loaders(models[family]))
        for width, height in SIZES:
            frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
            reference = cpu(frame).astype(np.int16)
            for label, runner in runners.items():
                first, forward, whole, output = _forward(runner, frame, repeat)
                diff = np.abs(output.astype(np.int16) - reference)
                rows.append(f"| {family} | {width}x{height} | {label} | {forward:.1f} | {whole:.1f} | {first:.2f} | "
                            f"{diff.mean():.2f} | {np.percentile(diff, 99):.0f} | {diff.max()} |")
    print("\n| family | size | path | forward ms | frame ms | first run s | diff mean | p99 | max |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def _camera(photo: np.ndarray) -> live.LatestFrameSource:
    frame = cv2.resize(photo, LIVE_SIZE, interpolation=cv2.INTER_AREA)

    def grab() -> np.ndarray:
        time.sleep(1.0 / CAMERA_FPS)
        return frame.copy()

    return live.LatestFrameSource(grab, "simulated camera", fps=CAMERA_FPS)


def live_table(models: dict, frames: int) -> None:
    photo = cv2.imread(str(SAMPLE))
    print(f"\n| model | path | live FPS at {LIVE_SIZE[0]}x{LIVE_SIZE[1]} | latency ms |")
    print("|---|---|---:|---:|")
    for family in FAMILIES:
        for label, engine, device, wanted in PATHS:
            try:
                stylizer = Stylizer(models[family], device=device, engine=engine, precision=wanted)
            except CvstyleError:
                continue  # listed as not available above
            painter = live.Painter([stylizer])
            with _camera(photo) as camera:
                report = live.run(camera, painter, max_frames=frames)
            print(f"| {family} | {label} | {report.fps:.1f} | {report.mean_latency * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per cell, 10 live frames")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    import onnxruntime

    print(f"cv2 {cv2.__version__}, onnxruntime {onnxruntime.__version__} "
          f"({', '.join(onnxruntime.get_available_providers())})")
    if hasattr(onnxruntime, "preload_dlls"):  # CUDA and cuDNN from their pip wheels
        onnxruntime.preload_dlls()
    with tempfile.TemporaryDirectory(prefix="cvstyle-gpu-") as folder:
        models = {family: write_fixture_model(Path(folder) / f"{family}.t7", family, seed=1) for family in FAMILIES}
        forward_table(models, 3 if args.quick else args.repeat)
        live_table(models, 10 if args.quick else 40)
    print("\nThe anchor: the original Lua implementation ran 1200x630 in 50 ms on a 2016 Titan X.")


if __name__ == "__main__":
    main()
