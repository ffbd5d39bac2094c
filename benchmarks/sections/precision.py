"""Section: engines and precisions on the CPU (issue 13): speed against exact ONNX
Runtime, fidelity against exact, live frame rate, batch throughput, time per operator.

    python benchmarks/bench.py --only precision [--quick]

speed: each (engine, precision) runs both fixture families at 640x480 and 1024x768
(``--quick``: 640x480) through the whole runner (pre- and post-processing included);
configurations are interleaved frame by frame, each cell the median of the plan's engine
repeats after a warm-up, so that load from other processes falls on all of them alike.
The ratio columns divide exact ONNX Runtime's median by the cell's, by wall time and by
process CPU time (both threads), which other processes' load disturbs less. fidelity:
grey-level difference from exact ONNX Runtime (mean, 99th percentile, max over all
pixels) on the four bundled samples at their own sizes, each painted twice (the second
time on OpenVINO's model compiled for the size), for the fixture families and the
built-in sketch. live: ``cvstyle live``'s loop headless on a simulated 30 FPS camera
(instance_norm, 640x480). batch: ``cvstyle apply`` on a folder of 640x480 photos against
the same number of forward passes alone, A-B-B-A. profile: time per operator type in
one 640x480 forward (ONNX Runtime's profiler, OpenVINO's performance counters), with the
converted graph as it is, after :func:`cvstyle.fast_graph.faster_graph`, and (eccv16) after
:func:`cvstyle.fast_graph.winograd_residuals` as well, which the openvino engine runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cvstyle import Stylizer, engines, live, precision
from cvstyle.cli import main as cvstyle_main
from cvstyle.engines import ranking
from cvstyle.errors import CvstyleError
from cvstyle.fast_graph import faster_graph, winograd_residuals
from cvstyle.model import open_model

from harness import Context, bullets, log, table
from sections.live import simulated_camera

TITLE = "Engines and precision (issue 13)"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE = SAMPLES / "chelsea.png"
BASELINE = ("onnxruntime", "exact")
CONFIGURATIONS = [("onnxruntime", "exact"), ("openvino", "exact"), ("openvino", "fast"), ("opencv", "exact")]
# OpenCV measured 5-6x slower than exact ONNX Runtime on this kind of CPU (eccv16,
# 640x480); timing it at every size would triple the run, so speed, live and batch skip it.
TIMED = CONFIGURATIONS[:3]


def _runners(model: Path, configurations, notes: list[str]) -> dict:
    runners = {}
    for engine, wanted in configurations:
        try:
            runner = engines.load_runner(model, engine, "cpu", wanted=wanted)
        except CvstyleError as error:
            notes.append(f"{engine} {wanted} skipped: {error}")
            continue
        if runner.precision == wanted:  # a fast that runs exact is not a row of its own
            runners[engine, wanted] = runner
    return runners


def _interleaved(runners: dict, frame: np.ndarray, repeat: int) -> dict:
    """(median wall ms, median CPU ms) per configuration, configurations interleaved.

    Each timed frame follows an untimed one on the same configuration, as frames follow
    each other in live mode and in a batch: right after another engine's forward, that
    engine's threads still spin for a while in this process and take a core from the
    next one, which no single-engine process sees (docs/benchmarks.md).
    """
    wall = {key: [] for key in runners}
    cpu = {key: [] for key in runners}
    for _ in range(engines.WARM_UP_FORWARDS):
        for run in runners.values():
            run(frame)
    for _ in range(repeat):
        for key, run in runners.items():
            run(frame)
            start, start_cpu = time.perf_counter(), time.process_time()
            run(frame)
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
    return {key: (1000 * statistics.median(wall[key]), 1000 * statistics.median(cpu[key])) for key in runners}


def speed(context: Context, notes: list[str]) -> str:
    photo = cv2.imread(str(SAMPLE))
    rows = []
    for family, model in context.models.items():
        runners = _runners(model, TIMED, notes)
        for width, height in context.plan.engine_sizes:
            log(f"precision speed {family} {width}x{height}")
            frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
            results = _interleaved(runners, frame, context.plan.engine_repeat)
            base_wall, base_cpu = results[BASELINE]
            for (engine, wanted), (wall, cpu) in results.items():
                rows.append([family, f"{width}x{height}", engine, wanted, f"{wall:.0f}", f"{cpu:.0f}",
                             f"{base_wall / wall:.2f}", f"{base_cpu / cpu:.2f}"])
    return table(["family", "size", "engine", "precision", "ms", "CPU ms", "x exact ORT", "x exact ORT (CPU time)"], rows)


def fidelity(context: Context, notes: list[str]) -> str:
    photos = [cv2.imread(str(path)) for path in sorted(SAMPLES.glob("*.*g"))]
    rows = []
    for label, model in {**context.models, "sketch": "sketch"}.items():
        log(f"precision fidelity {label}")
        runners = _runners_for(model, notes)
        reference = runners[BASELINE]
        for (engine, wanted), runner in runners.items():
            # Twice each: OpenVINO paints a size's second forward on a model compiled for it.
            diff = np.concatenate([np.abs(runner(p).astype(np.int16) - expected).ravel()
                                   for p in photos for expected in [reference(p)] for _ in range(2)])
            rows.append([label, engine, wanted, f"{diff.mean():.2f}", f"{np.percentile(diff, 99):.0f}", str(diff.max())])
    return table(["model", "engine", "precision", "mean", "p99", "max"], rows)


def _runners_for(model, notes: list[str]) -> dict:
    """Runners of a model path or a catalogue name (the built-in sketch)."""
    stylizers = {}
    for engine, wanted in CONFIGURATIONS:
        try:
            stylizer = Stylizer(model, device="cpu", engine=engine, precision=wanted)
        except CvstyleError as error:
            notes.append(f"{engine} {wanted} skipped: {error}")
            continue
        if stylizer.precision == wanted:
            stylizers[engine, wanted] = stylizer.runners[0]
    return stylizers


def live_fps(context: Context) -> str:
    frame = cv2.resize(cv2.imread(str(SAMPLE)), (640, 480), interpolation=cv2.INTER_AREA)
    rows = []
    for engine, wanted in TIMED:
        stylizer = Stylizer(context.models["instance_norm"], device="cpu", engine=engine, precision=wanted)
        if stylizer.precision != wanted:
            continue
        log(f"precision live {engine} {wanted}")
        painter = live.Painter([stylizer])
        painter.warm_up((640, 480))
        with simulated_camera(frame) as camera:
            report = live.run(camera, painter, max_frames=max(8, 2 * context.plan.live_frames), notify=lambda _: None)
        rows.append(["instance_norm 640x480", engine, wanted, f"{report.fps:.1f}", f"{report.mean_latency * 1000:.0f}"])
    return table(["model", "engine", "precision", "FPS", "latency (ms)"], rows)


def batch(context: Context, engine: str, wanted: str) -> list:
    """Forward-only and ``cvstyle apply`` on a folder in A-B-B-A order (both networks
    loaded beforehand, as in a long batch): photos per second of each over both runs."""
    count = context.plan.batch_images
    model = context.models["instance_norm"]
    photo = cv2.resize(cv2.imread(str(SAMPLE)), (640, 480), interpolation=cv2.INTER_AREA)
    runner = engines.load_runner(model, engine, "cpu", wanted=wanted)
    runner(photo)
    with tempfile.TemporaryDirectory(prefix="cvstyle-batch-", dir=context.folder) as folder:
        inputs, outputs = Path(folder) / "in", Path(folder) / "out"
        inputs.mkdir()
        for index in range(count):
            cv2.imwrite(str(inputs / f"photo{index:03d}.png"), photo)
        args = ["apply", str(inputs), "-m", str(model), "-o", str(outputs),
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

        log(f"precision batch {engine} {wanted}")
        apply()  # untimed: loads the folder's own network (two streams) and prepares its size
        forward = forward_only()
        applied = apply() + apply()
        forward += forward_only()
    return [f"instance_norm 640x480 x{count}", engine, wanted, f"{2 * count / forward:.2f}",
            f"{2 * count / applied:.2f}", f"{forward / applied:.0%}"]


def _onnxruntime_profile(graph, blob: np.ndarray) -> dict[str, float]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "cvstyle-ort-profile")
    session = onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    runs = 2
    for _ in range(runs + 1):  # the first is a warm-up
        session.run(None, {"input": blob})
    path = Path(session.end_profiling())
    events = [e for e in json.loads(path.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    path.unlink()
    totals: dict[str, float] = {}
    for event in events[len(events) // (runs + 1):]:  # the warm-up's events come first
        totals[event["args"]["op_name"]] = totals.get(event["args"]["op_name"], 0.0) + event["dur"] / 1000 / runs
    return totals


def _openvino_profile(graph, blob: np.ndarray, hint: str) -> dict[str, float]:
    """Per operator type, compiled as the openvino engine compiles (free height and
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


def profile(context: Context) -> str:
    blob = np.random.default_rng(0).normal(0.0, 60.0, (1, 3, 480, 640)).astype(np.float32)
    rows = []
    for family, path in context.models.items():
        graph = open_model(path).graph
        faster = faster_graph(graph)
        variants = [("as converted", graph), ("faster_graph", faster)]
        winograd = winograd_residuals(faster)
        if winograd is not faster:
            variants.append(("+ winograd_residuals", winograd))
        for label, variant in variants:
            log(f"precision profile {family} {label}")
            measured = {"onnxruntime": _onnxruntime_profile(variant, blob)}
            for hint in ("f32", "bf16") if precision.cpu_has_bf16() else ("f32",):
                measured[f"openvino {hint}"] = _openvino_profile(variant, blob, hint)
            for engine, totals in measured.items():
                top = ", ".join(f"{op} {ms:.0f}" for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])[:5])
                rows.append([family, engine, label, f"{sum(totals.values()):.0f}", top])
    return table(["family", "engine", "graph", "total ms", "largest operator types (ms)"], rows)


def run(context: Context) -> str:
    notes: list[str] = []
    parts = [
        f"CPU: {precision.cpu_model()}, {os.cpu_count()} cores, bfloat16 {'yes' if precision.cpu_has_bf16() else 'no'}; "
        f"{ranking.cache_key().split('; ')[1]}. Speed against exact ONNX Runtime "
        "(whole runner call, interleaved, median; wall time and process CPU time):",
        speed(context, notes),
        "Grey-level difference from exact ONNX Runtime on the bundled samples (mean, p99, max):",
        fidelity(context, notes),
    ]
    if "instance_norm" in context.models:
        parts += ["Live, instance_norm 640x480, simulated 30 FPS camera:", live_fps(context),
                  "Batch (`cvstyle apply` on a folder, network loaded) against forward-only, A-B-B-A:",
                  table(["batch", "engine", "precision", "forward-only photos/s", "apply photos/s", "ratio"],
                        [batch(context, engine, wanted) for engine, wanted in TIMED])]
    parts += ["Time per operator type in one 640x480 forward (where the time goes; each row is one "
              "run, so compare the two graphs in the speed table's way, interleaved, not here):", profile(context)]
    return "\n\n".join(parts) + bullets(sorted(set(notes)))
