"""Engines and precisions on this CPU: speed against exact ONNX Runtime, fidelity against
exact, live frame rate and batch throughput (issue 13's figures), as markdown.

    python benchmarks/precision_engines.py [--quick] [--parts speed,fidelity,live,batch,profile]

speed: each (engine, precision) runs both fixture families at 640x480 and 1024x768
through the whole runner (pre- and post-processing included); configurations are
interleaved frame by frame and each cell is the median of ``--repeat`` frames after a
warm-up, so that load from other processes falls on all of them alike. The ratio column
divides exact ONNX Runtime's median by the cell's; the CPU-time ratio does the same with
the process CPU time (both threads), which other processes' load disturbs less.
fidelity: grey-level difference from exact ONNX Runtime (mean, 99th percentile, max
over all pixels) on the four bundled samples at their own sizes, for both fixture
families and the built-in sketch. live: ``cvstyle live``'s loop headless on a
simulated 30 FPS camera (instance_norm, 640x480). batch: ``cvstyle apply`` on a folder
of 640x480 photos against the same number of forward passes alone. profile: time per
operator type in one 640x480 forward (ONNX Runtime's profiler, OpenVINO's performance
counters), with the converted graph as it is and after :func:`cvstyle.fast_graph.faster_graph`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cvstyle import Stylizer, engines, precision
from cvstyle.cli import main as cvstyle_main
from cvstyle.engines import ranking
from cvstyle.errors import CvstyleError
from cvstyle.testing import FAMILIES, write_fixture_model

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SAMPLE = SAMPLES / "chelsea.png"
BASELINE = ("onnxruntime", "exact")
CONFIGURATIONS = [("onnxruntime", "exact"), ("openvino", "exact"), ("openvino", "fast"), ("opencv", "exact")]
# OpenCV measured 5-6x slower than exact ONNX Runtime on this kind of CPU (eccv16,
# 640x480); timing it at every size would triple the run, so speed, live and batch skip it.
TIMED = CONFIGURATIONS[:3]


def _runners(model, configurations) -> dict:
    runners = {}
    for engine, wanted in configurations:
        try:
            runner = engines.load_runner(model, engine, "cpu", wanted=wanted)
        except CvstyleError as error:
            print(f"skipping {engine} {wanted}: {error}")
            continue
        if runner.precision == wanted:  # a fast that runs exact is not a row of its own
            runners[engine, wanted] = runner
    return runners


def _interleaved(runners: dict, frame: np.ndarray, repeat: int) -> dict:
    """(median wall ms, median CPU ms) per configuration, frames interleaved."""
    wall = {key: [] for key in runners}
    cpu = {key: [] for key in runners}
    for run in runners.values():
        run(frame)
    for _ in range(repeat):
        for key, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(frame)
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    return {key: (1000 * statistics.median(wall[key]), 1000 * statistics.median(cpu[key])) for key in runners}


def speed(models: dict, sizes, repeat: int, configurations) -> None:
    photo = cv2.imread(str(SAMPLE))
    print("| family | size | engine | precision | ms | CPU ms | x exact ORT | x exact ORT (CPU time) |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for family in models:
        runners = _runners(models[family], configurations)
        for width, height in sizes:
            frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
            results = _interleaved(runners, frame, repeat)
            base_wall, base_cpu = results[BASELINE]
            for (engine, wanted), (wall, cpu) in results.items():
                print(f"| {family} | {width}x{height} | {engine} | {wanted} | {wall:.0f} | {cpu:.0f} | "
                      f"{base_wall / wall:.2f} | {base_cpu / cpu:.2f} |")


def _differences(runner, reference, photos) -> np.ndarray:
    return np.concatenate([np.abs(runner(p).astype(np.int16) - reference(p)).ravel() for p in photos])


def fidelity(models: dict, configurations) -> None:
    photos = [cv2.imread(str(path)) for path in sorted(SAMPLES.glob("*.*g"))]
    print("| model | engine | precision | mean | p99 | max |")
    print("|---|---|---|---:|---:|---:|")
    for label, model in {**models, "sketch": "sketch"}.items():
        stylizers = {}
        for engine, wanted in configurations:
            try:
                stylizer = Stylizer(model, device="cpu", engine=engine, precision=wanted)
            except CvstyleError as error:
                print(f"skipping {engine} {wanted}: {error}")
                continue
            if stylizer.precision == wanted:
                stylizers[engine, wanted] = stylizer
        reference = stylizers[BASELINE].runners[0]
        for (engine, wanted), stylizer in stylizers.items():
            diff = _differences(stylizer.runners[0], reference, photos)
            print(f"| {label} | {engine} | {wanted} | {diff.mean():.2f} | {np.percentile(diff, 99):.0f} | {diff.max()} |")


def live_fps(models: dict, frames: int, configurations) -> None:
    from live_fps import simulated_camera

    from cvstyle import live

    photo = cv2.imread(str(SAMPLE))
    print("| model | engine | precision | FPS | latency (ms) |")
    print("|---|---|---|---:|---:|")
    for engine, wanted in configurations:
        stylizer = Stylizer(models["instance_norm"], device="cpu", engine=engine, precision=wanted)
        if stylizer.precision != wanted:
            continue
        painter = live.Painter([stylizer])
        with simulated_camera(photo, (640, 480)) as camera:
            report = live.run(camera, painter, max_frames=frames)
        print(f"| instance_norm 640x480 | {engine} | {wanted} | {report.fps:.1f} | {report.mean_latency * 1000:.0f} |")


def batch(models: dict, count: int, engine: str, wanted: str) -> None:
    """Forward-only and ``cvstyle apply`` on the folder in A-B-B-A order (the network
    loaded beforehand, as in a long batch); photos per second of each over both runs."""
    photo = cv2.resize(cv2.imread(str(SAMPLE)), (640, 480), interpolation=cv2.INTER_AREA)
    runner = engines.load_runner(models["instance_norm"], engine, "cpu", wanted=wanted)
    runner(photo)
    with tempfile.TemporaryDirectory(prefix="cvstyle-batch-") as folder:
        inputs, outputs = Path(folder) / "in", Path(folder) / "out"
        inputs.mkdir()
        for index in range(count):
            cv2.imwrite(str(inputs / f"photo{index:03d}.png"), photo)
        args = ["apply", str(inputs), "-m", str(models["instance_norm"]), "-o", str(outputs),
                "--engine", engine, "--precision", wanted, "--device", "cpu"]

        def forward_only() -> float:
            start = time.perf_counter()
            for _ in range(count):
                runner(photo)
            return time.perf_counter() - start

        def apply() -> float:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # its "wrote ..." lines
                code = cvstyle_main(args)
            assert code == 0, f"cvstyle apply exited {code}"
            return time.perf_counter() - start

        forward = forward_only()
        applied = apply() + apply()
        forward += forward_only()
    print(f"| instance_norm 640x480 x{count} | {engine} | {wanted} | {2 * count / forward:.2f} | "
          f"{2 * count / applied:.2f} | {forward / applied:.0%} |")


def _onnxruntime_profile(graph, blob: np.ndarray) -> dict[str, float]:
    import json

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "cvstyle-ort-profile")
    session = onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"input": blob})  # warm-up
    runs = 2
    for _ in range(runs):
        session.run(None, {"input": blob})
    path = session.end_profiling()
    events = [e for e in json.loads(Path(path).read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    Path(path).unlink()
    totals: dict[str, float] = {}
    for event in events[len(events) // (runs + 1):]:  # the warm-up's events come first
        totals[event["args"]["op_name"]] = totals.get(event["args"]["op_name"], 0.0) + event["dur"] / 1000 / runs
    return totals


def _openvino_profile(graph, blob: np.ndarray, hint: str) -> dict[str, float]:
    """Per operator type, as the openvino engine compiles the graph (free height and
    width, explicit precision, latency hint) with OpenVINO's performance counters on."""
    import openvino

    core = openvino.Core()
    model = core.read_model(graph.SerializeToString(), b"")
    model.reshape({model.inputs[0].any_name: openvino.PartialShape([1, 3, -1, -1])})
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
    request = core.compile_model(model, "CPU", config).create_infer_request()
    request.infer({0: blob})  # warm-up: kernels for this shape
    request.infer({0: blob})
    totals: dict[str, float] = {}
    for info in request.get_profiling_info():
        totals[info.node_type] = totals.get(info.node_type, 0.0) + info.real_time.total_seconds() * 1000
    return totals


def profile(models: dict) -> None:
    from cvstyle.fast_graph import faster_graph
    from cvstyle.model import open_model

    blob = np.random.default_rng(0).normal(0.0, 60.0, (1, 3, 480, 640)).astype(np.float32)
    print("| family | engine | graph | total ms | largest operator types (ms) |")
    print("|---|---|---|---:|---|")
    for family in FAMILIES:
        graph = open_model(models[family]).graph
        for label, variant in [("as converted", graph), ("faster_graph", faster_graph(graph))]:
            measured = {"onnxruntime": _onnxruntime_profile(variant, blob)}
            for hint in ("f32", "bf16") if precision.cpu_has_bf16() else ("f32",):
                measured[f"openvino {hint}"] = _openvino_profile(variant, blob, hint)
            for engine, totals in measured.items():
                top = ", ".join(f"{op} {ms:.0f}" for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:5])
                print(f"| {family} | {engine} | {label} | {sum(totals.values()):.0f} | {top} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 frames, 640x480 only, smaller batch")
    parser.add_argument("--parts", default="speed,fidelity,live,batch")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    parts = args.parts.split(",")
    repeat = 3 if args.quick else args.repeat
    sizes = [(640, 480)] if args.quick else [(640, 480), (1024, 768)]
    with tempfile.TemporaryDirectory(prefix="cvstyle-bench-") as folder:
        models = {family: write_fixture_model(Path(folder) / f"{family}.t7", family, seed=1)
                  for family in args.families.split(",")}
        if "speed" in parts:
            speed(models, sizes, repeat, TIMED)
        if "fidelity" in parts:
            print()
            fidelity(models, CONFIGURATIONS)
        if "live" in parts:
            print()
            live_fps(models, 8 if args.quick else 20, TIMED)
        if "profile" in parts:
            print()
            profile(models)
        if "batch" in parts:
            print("\n| batch | engine | precision | forward-only photos/s | apply photos/s | ratio |")
            print("|---|---|---|---:|---:|---:|")
            for engine, wanted in TIMED:
                batch(models, 4 if args.quick else 12, engine, wanted)
    print(f"\nCPU: {precision.cpu_model()}, {os.cpu_count()} cores; "
          f"bfloat16: {'yes' if precision.cpu_has_bf16() else 'no'}; {ranking.cache_key().split('; ')[1]}")


if __name__ == "__main__":
    main()
