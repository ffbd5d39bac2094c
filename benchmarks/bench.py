"""cvstyle benchmark: one markdown document with every figure issue 4 asks for.

    python benchmarks/bench.py            # full run (about 10 minutes on 2 cores)
    python benchmarks/bench.py --quick    # fewer sizes and repeats, no 48 or 100 MP (about 2.5 minutes)
    python benchmarks/bench.py --only 1,7 # some sections only
    python benchmarks/bench.py -o docs/benchmarks-run.md   # also write the document to a file

The document goes to stdout (progress to stderr). It runs on the architecture-faithful
fixture networks of :mod:`cvstyle.testing` (the published checkpoints' layers and
shapes, so the same work per frame), written to a temporary folder.

Sections:
 1. forward ms per frame, GMAC, achieved GFLOP/s and its ratio to numpy's float32 matmul;
 2. end-to-end ``cvstyle apply`` on a 1024x768 JPEG versus the forward (overhead %);
 3. a folder of 640x480 JPEGs: the project's batch versus forward-only and the seed recipe;
 4. 12, 48 and 100 MP through ``Stylizer.stylize`` (auto tiling; instance_norm at 12 MP also with exact statistics), each in a subprocess: peak RSS;
 5. live FPS (``cvstyle.live.run`` on in-memory frames, no window);
 6. OpenCV DNN beside ONNX Runtime and PyTorch where they are installed;
 7. OpenCV DNN settings: speed and output difference of each against the project's default.

Not part of the test suite. Timings are medians after a warm-up; configurations compared
with each other are interleaved run by run, so that load from other processes hits them
alike. Run it on a quiet machine: the load average at start and end is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cvstyle import torch7
from cvstyle.testing import FAMILIES, write_fixture_model
from cvstyle.modelinfo import load_network
from cvstyle.runner import StyleNet
from cvstyle.torch7 import TorchObject

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SIZES = ((320, 240), (640, 480), (1024, 768), (1920, 1080))
LARGE = ((4000, 3000), (8000, 6000), (12000, 8400))  # 12, 48 and 100.8 MP
REFERENCE = (1024, 768)  # the size the end-to-end and per-megapixel figures refer to
GREY_LIMIT = 1  # an output-preserving change moves no pixel by more than this


@dataclass(frozen=True)
class Plan:
    quick: bool
    forward_sizes: tuple
    forward_repeat: int
    apply_repeat: int
    batch_images: int
    batch_trials: int
    large_sizes: tuple
    live_sizes: tuple
    live_frames: int
    engine_sizes: tuple
    engine_repeat: int
    settings_size: tuple
    settings_repeat: int
    engine: str = "auto"  # the engine sections 2-5 run the project on, as --engine


FULL = Plan(
    quick=False, forward_sizes=SIZES, forward_repeat=5, apply_repeat=5, batch_images=20, batch_trials=2,
    large_sizes=LARGE, live_sizes=((320, 240), (640, 480)), live_frames=12,
    engine_sizes=((640, 480), (1024, 768)), engine_repeat=5,
    settings_size=(640, 480), settings_repeat=5,
)
QUICK = Plan(
    quick=True, forward_sizes=SIZES[:3], forward_repeat=3, apply_repeat=2, batch_images=6, batch_trials=1,
    large_sizes=LARGE[:1], live_sizes=((320, 240), (640, 480)), live_frames=4,
    engine_sizes=((640, 480),), engine_repeat=3,
    settings_size=(320, 240), settings_repeat=3,
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def timed(function: Callable, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def interleaved(runs: dict[str, Callable[[], object]], repeat: int, warm_up: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, round-robin so that load affects all alike."""
    for _ in range(warm_up):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(timed(run)[0])
    return times


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def photo(size: tuple[int, int], variant: int = 0) -> np.ndarray:
    """A photo of ``size`` made from the bundled samples (different crops per variant)."""
    names = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    image = cv2.imread(str(names[variant % len(names)]), cv2.IMREAD_COLOR)
    if variant >= len(names):  # vary crop and orientation for more distinct inputs
        shift = (variant // len(names)) * 17
        image = np.roll(image, shift, axis=1)
        if (variant // len(names)) % 2:
            image = image[:, ::-1]
    width, height = size
    interpolation = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def grey_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# ---------------------------------------------------------------- work in MAC


def count_macs(module: TorchObject, shape: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """Multiply-accumulates of the convolutions and transposed convolutions of a Torch7
    module tree on an input of ``shape`` (channels, height, width), and the output shape.
    Padding layers (the 40-pixel reflection border) enlarge what the following layers see."""
    name, f = module.class_name, module.fields
    channels, height, width = shape
    if name == "nn.Sequential":
        total = 0
        for child in module.children:
            work, shape = count_macs(child, shape)
            total += work
        return total, shape
    if name == "nn.ConcatTable":
        results = [count_macs(child, shape) for child in module.children]
        return sum(work for work, _ in results), results[0][1]
    if name in ("nn.SpatialReflectionPadding", "nn.SpatialZeroPadding"):
        return 0, (channels, height + f["pad_t"] + f["pad_b"], width + f["pad_l"] + f["pad_r"])
    if name == "nn.ShaveImage":
        return 0, (channels, height - 2 * f["size"], width - 2 * f["size"])
    if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM"):
        out_h = (height + 2 * f["padH"] - f["kH"]) // f["dH"] + 1
        out_w = (width + 2 * f["padW"] - f["kW"]) // f["dW"] + 1
        work = out_h * out_w * f["nOutputPlane"] * f["nInputPlane"] * f["kH"] * f["kW"]
        return work, (f["nOutputPlane"], out_h, out_w)
    if name == "nn.SpatialFullConvolution":
        out_h = (height - 1) * f["dH"] - 2 * f["padH"] + f["kH"] + f.get("adjH", 0)
        out_w = (width - 1) * f["dW"] - 2 * f["padW"] + f["kW"] + f.get("adjW", 0)
        # Each input pixel scatters a kH x kW x out kernel: the work of the forward conv.
        work = height * width * f["nOutputPlane"] * f["nInputPlane"] * f["kH"] * f["kW"]
        return work, (f["nOutputPlane"], out_h, out_w)
    return 0, shape  # normalisation, activations, CAddTable, TotalVariation: no MACs counted


def model_root(path: Path) -> TorchObject:
    checkpoint = torch7.load(path)
    return checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint


def gmac(root: TorchObject, blob_shape: tuple[int, ...]) -> float:
    return count_macs(root, tuple(blob_shape[1:]))[0] / 1e9


def matmul_gflops(repeat: int = 7, n: int = 2048) -> float:
    """numpy float32 matrix multiply, best of ``repeat``: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(timed(np.matmul, a, b)[0] for _ in range(repeat))
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------- machine


def machine_description(plan: Plan) -> str:
    cpu = "unknown"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 2**20:.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    build = cv2.getBuildInformation()
    parallel = next(
        (line.split(":", 1)[1].strip() for line in build.splitlines() if "Parallel framework" in line),
        "?",
    )
    simd = ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags)
    versions = [f"opencv-python {cv2.__version__}", f"numpy {np.__version__}"]
    for package in ("onnxruntime", "torch"):
        try:
            versions.append(f"{package} {__import__(package).__version__}")
        except ImportError:
            versions.append(f"{package} not installed")
    commit = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip() or "?"
    rows = [
        ["CPU", f"{cpu} ({simd or 'no AVX2'})"],
        ["cores", f"{os.cpu_count()} logical, {usable} usable by this process"],
        ["memory", memory],
        ["Python", f"{platform.python_version()} on {platform.platform(terse=True)}"],
        ["versions", ", ".join(versions)],
        ["OpenCV threads", f"cv2.getNumThreads() = {cv2.getNumThreads()} ({parallel}); OpenCL: "
         f"{'available' if cv2.ocl.haveOpenCL() else 'not available'}"],
        ["project", f"cvstyle at {commit}"],
        ["mode", "QUICK (fewer sizes and repeats, no 48 or 100 MP): indicative only" if plan.quick else "full"],
        ["load average at start", " / ".join(f"{v:.2f}" for v in os.getloadavg())],
    ]
    return table(["", ""], rows)


# ---------------------------------------------------------------- 1. forward


def section_forward(plan: Plan, models: dict[str, Path], peak: float, results: dict) -> str:
    rows = []
    for family, path in models.items():
        root = model_root(path)
        network = load_runner(path, "opencv", "cpu")
        for size in plan.forward_sizes:
            log(f"forward {family} {fmt_size(size)}")
            blob = network.preprocess(photo(size))
            times = interleaved({"forward": lambda: network.infer(blob)}, plan.forward_repeat)["forward"]
            median = statistics.median(times)
            work = gmac(root, blob.shape)
            rate = 2 * work / median
            opencv_count = network.net.getFLOPS(tuple(blob.shape)) / 1e9
            results["forward", "opencv", family, size] = median
            rows.append([
                family, fmt_size(size), ms(median), ms(min(times)),
                f"{median / (size[0] * size[1] / 1e6) * 1000:.0f}",
                f"{work:.1f}", f"{opencv_count:.1f}", f"{rate:.1f}", f"{rate / peak:.2f}",
            ])
    header = ["family", "size", "forward ms (median)", "min ms", "ms/MP", "GMAC",
              "GFLOP by cv2 getFLOPS", "GFLOP/s (2 MAC/s)", "ratio to matmul"]
    return (
        f"OpenCV DNN: StyleNet.infer on a prepared blob, median of {plan.forward_repeat} after one warm-up. "
        "GMAC counts convolutions and transposed convolutions from the Torch7 tree, on the "
        "input plus its 40-px reflection border; OpenCV's own getFLOPS (which also counts "
        "normalisation and activations) is shown beside it as a check.\n\n"
        + table(header, rows)
    )


def engine_name(engine: str, path: Path) -> str:
    """The engine ``engine`` (auto, opencv, onnxruntime) resolves to for ``path`` on the CPU,
    as the project's Stylizer and ``cvstyle apply --engine`` choose it."""
    try:
        from cvstyle.engines import choose_engine
    except ImportError:  # a project without the engine module: OpenCV only
        return "opencv"
    return choose_engine(engine, "cpu", path)


def load_runner(path: Path, engine: str):
    """A freshly loaded network (StyleRunner) of ``path`` on ``engine``, on the CPU."""
    if engine_name(engine, path) == "opencv":
        return load_runner(path, "opencv", "cpu")
    from cvstyle.engines import load_runner

    return load_runner(path, engine, "cpu")


def forward_seconds(results: dict, engine: str, family: str, path: Path, size: tuple[int, int],
                    repeat: int = 3) -> float:
    """The median forward on ``engine`` at ``size``: section 1's for OpenCV, else measured here."""
    key = ("forward", engine_name(engine, path), family, size)
    if key not in results:
        network = load_runner(path, engine)
        blob = network.preprocess(photo(size))
        results[key] = statistics.median(interleaved({"f": lambda: network.infer(blob)}, repeat)["f"])
    return results[key]


# ---------------------------------------------------------------- 2. apply end to end


@contextlib.contextmanager
def silenced():
    """Keep the CLI's 'wrote ...' lines and progress bars out of the document."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def cli_apply(arguments: list[str]) -> None:
    from cvstyle.cli import main

    with silenced():
        code = main(["apply", *arguments])
    if code:
        raise RuntimeError(f"cvstyle apply {' '.join(arguments)} exited with {code}")


def engine_option(plan: Plan) -> list[str]:
    """``cvstyle apply``'s engine option, left out for auto (so older CLIs work too)."""
    return [] if plan.engine == "auto" else ["--engine", plan.engine]


def engine_argument(plan: Plan) -> dict:
    return {} if plan.engine == "auto" else {"engine": plan.engine}


def engine_text(plan: Plan, api: bool = False) -> str:
    if plan.engine == "auto":
        return ""
    return f", engine={plan.engine!r}" if api else f" --engine {plan.engine}"


def section_apply(plan: Plan, models: dict[str, Path], folder: Path, results: dict) -> str:
    from cvstyle import stylizer as stylizer_module
    from cvstyle.imageio import read_image, write_image

    source = folder / "apply-1024x768.jpg"
    cv2.imwrite(str(source), photo(REFERENCE), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = folder / "apply-out"
    rows = []
    for family, path in models.items():
        log(f"apply {family} {fmt_size(REFERENCE)}")
        stylizer_module._cached_network.cache_clear()
        arguments = [str(source), "-m", str(path), "-o", str(out), "--device", "cpu", *engine_option(plan)]
        cold = timed(cli_apply, arguments)[0]  # loads the network, first forward at this shape
        # The network apply used: the cached one.
        network = stylizer_module.Stylizer(str(path), device="cpu", **engine_argument(plan)).runners[0]
        picture = read_image(source)
        blob = network.preprocess(picture.bgr)
        output = network.infer(blob)
        painted = network.postprocess(output, *picture.bgr.shape[:2])
        times = interleaved(
            {
                "apply": lambda: cli_apply(arguments),
                "forward": lambda: network.infer(blob),
                "read": lambda: read_image(source),
                "preprocess": lambda: network.preprocess(picture.bgr),
                "postprocess": lambda: network.postprocess(output, *picture.bgr.shape[:2]),
                "write": lambda: write_image(out / "parts.jpg", type(picture)(painted, None), 95),
            },
            plan.apply_repeat,
            warm_up=0,
        )
        median = {name: statistics.median(values) for name, values in times.items()}
        results["apply", family] = median["apply"]
        overhead = median["apply"] / median["forward"] - 1
        rows.append([
            family, network.engine, ms(cold), ms(median["apply"]), ms(median["forward"]), f"{overhead * 100:+.1f} %",
            ms(median["read"]), ms(median["preprocess"]), ms(median["postprocess"]), ms(median["write"]),
        ])
    header = ["family", "engine", "first apply ms (loads the net)", "apply ms (median)", "forward ms",
              "overhead", "read ms", "preprocess ms", "postprocess ms", "write JPEG ms"]
    return (
        f"`cvstyle apply photo.jpg -m model.t7 -o out/{engine_text(plan)}` run in-process through `cvstyle.cli.main` "
        f"on a {fmt_size(REFERENCE)} JPEG, interleaved with a forward of the same cached network "
        f"on the same photo's blob (median of {plan.apply_repeat}). Overhead = apply / forward - 1 "
        "(goal: <= 5 %). The parts (sequential in a single-image run) are timed alone.\n\n"
        + table(header, rows)
    )


# ---------------------------------------------------------------- 3. batch


def seed_recipe(paths: list[Path], model: Path, out: Path) -> None:
    """What tutorials do: load the network for every photo and run each alone."""
    mean = (103.939, 116.779, 123.680)
    for path in paths:
        net = cv2.dnn.readNetFromTorch(str(model))
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, 1.0, (width, height), mean, swapRB=False, crop=False)
        net.setInput(blob)
        output = net.forward()
        output = output.reshape((3, output.shape[2], output.shape[3]))
        output[0] += mean[0]
        output[1] += mean[1]
        output[2] += mean[2]
        output = np.clip(output.transpose(1, 2, 0), 0, 255).astype("uint8")
        cv2.imwrite(str(out / f"{path.stem}_seed.jpg"), output)


def section_batch(plan: Plan, models: dict[str, Path], folder: Path) -> str:
    from cvstyle import stylizer as stylizer_module

    images = folder / "batch-in"
    images.mkdir()
    size = (640, 480)
    paths = []
    for i in range(plan.batch_images):
        paths.append(images / f"photo{i:02d}.jpg")
        cv2.imwrite(str(paths[-1]), photo(size, i), [cv2.IMWRITE_JPEG_QUALITY, 92])
    rows = []
    for family, path in models.items():
        log(f"batch {family} {plan.batch_images} x {fmt_size(size)}")
        out = folder / f"batch-out-{family}"
        out.mkdir()

        def forward_only():
            network = load_runner(path, plan.engine)
            blobs = [network.preprocess(cv2.imread(str(p))) for p in paths]
            network.infer(blobs[0])  # a warm network, blobs already in memory
            return timed(lambda: [network.infer(blob) for blob in blobs])[0]

        def project(cold: bool):
            if cold:  # it loads its network, as one `cvstyle apply` process does
                stylizer_module._cached_network.cache_clear()
            return timed(cli_apply, [str(images), "-m", str(path), "-o", str(out), "--device", "cpu",
                                     *engine_option(plan)])[0]

        def project_cold():
            return project(cold=True)

        def project_warm():  # a long-running process (notebook, server): the network is cached
            return project(cold=False)

        def seed():
            return timed(seed_recipe, paths, path, out)[0]

        # Best of the trials, run in A-B-C C-B-A order so that a load burst favours none.
        variants = [forward_only, project_cold, project_warm, seed]
        best: dict = {}
        for trial in range(plan.batch_trials):
            for variant in variants if trial % 2 == 0 else variants[::-1]:
                best[variant] = min(best.get(variant, float("inf")), variant())
        forward_s, seed_s = best[forward_only], best[seed]
        cold_s, warm_s = best[project_cold], best[project_warm]
        n = len(paths)
        rows.append([
            family, engine_name(plan.engine, path), f"{n / forward_s:.2f}",
            f"{n / warm_s:.2f}", f"{forward_s / warm_s * 100:.1f} %",
            f"{n / cold_s:.2f}", f"{forward_s / cold_s * 100:.1f} %",
            f"{n / seed_s:.2f}", f"{seed_s / cold_s:.2f}x",
        ])
    header = ["family", "engine", "forward-only images/s", "batch images/s (network cached)",
              "batch / forward-only", "batch images/s (with network load)", "with load / forward-only",
              "seed recipe images/s", "batch (with load) speed-up over seed"]
    return (
        f"A folder of {plan.batch_images} {fmt_size(size)} JPEGs, best of {plan.batch_trials} "
        "trial(s) per variant. Forward-only: one warm network of the batch's engine "
        f"on blobs already in memory. Project batch: `cvstyle apply folder -m model.t7 -o out/{engine_text(plan)}` "
        "in-process (expand_inputs, plan_outputs, run_jobs with overlapped decode/encode), once "
        "with the network already cached (as in a notebook or a server) and once loading it "
        "first (as one `cvstyle apply` process does: conversion cache on disk, session set-up, "
        "the first, slower forward). Seed recipe: `cv2.dnn.readNetFromTorch` + imread + "
        "blobFromImage + forward + imwrite per photo, as tutorials do. Goal: batch >= 95 % of "
        "forward-only.\n\n" + table(header, rows)
    )


# ---------------------------------------------------------------- 4. large photos


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the current address space,
    which exec replaces; ru_maxrss also keeps the peak of the pre-exec fork of the parent
    (this whole benchmark's memory), so it is only the fallback."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_large(model: str, width: int, height: int, repeat: int, engine: str, exact: bool) -> None:
    """Runs in a subprocess: stylize one synthetic photo, print JSON with time and peak RSS."""
    from cvstyle import tiling
    from cvstyle.stylizer import Stylizer

    stylizer = Stylizer(model, device="cpu", engine=engine)
    image = photo((width, height))
    before = peak_rss_mib()
    times = [timed(stylizer.stylize, image, exact_statistics=exact)[0] for _ in range(repeat)]
    peak = peak_rss_mib()
    tiles = (len(tiling.plan_tiles(height, width, tiling.tile_size(height, width)))
             if tiling.needs_tiling(image, "auto") else 0)
    print(json.dumps({"seconds": times, "peak_mib": peak, "before_mib": before, "tiles": tiles,
                      "engine": stylizer.engine}))


def run_child(model: Path, size: tuple[int, int], engine: str, repeat: int = 1, exact: bool = False) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child-large", str(model),
               str(size[0]), str(size[1]), str(repeat), engine, str(int(exact))]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"[:200], "wall": wall}
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_large(plan: Plan, models: dict[str, Path], results: dict) -> str:
    rows = []
    for family, path in models.items():
        log(f"large {family} {fmt_size(REFERENCE)} reference")
        reference = run_child(path, REFERENCE, plan.engine, repeat=3)
        reference_rate = None
        if "error" not in reference:
            reference_rate = statistics.median(reference["seconds"]) / (REFERENCE[0] * REFERENCE[1] / 1e6)
        forward_rate = (forward_seconds(results, plan.engine, family, path, REFERENCE)
                        / (REFERENCE[0] * REFERENCE[1] / 1e6))
        cases = [(size, False) for size in (REFERENCE, *plan.large_sizes)]
        if family == "instance_norm":
            cases.insert(2, (plan.large_sizes[0], True))
        for size, exact in cases:
            megapixels = size[0] * size[1] / 1e6
            label = fmt_size(size) + (" exact statistics" if exact else "")
            if size != REFERENCE:
                log(f"large {family} {label}")
            report = reference if size == REFERENCE else run_child(path, size, plan.engine, exact=exact)
            if "error" in report:
                rows.append([family, "-", label, f"{megapixels:.1f}", "-",
                             f"FAILED ({report['error']})", "-", "-", "-", "-"])
                continue
            seconds = statistics.median(report["seconds"])
            rate = seconds / megapixels
            rows.append([
                family, report["engine"], label, f"{megapixels:.1f}", report["tiles"] or "untiled",
                f"{seconds:.1f}", f"{rate:.2f}",
                f"{rate / reference_rate:.2f}" if reference_rate else "-",
                f"{rate / forward_rate:.2f}",
                f"{report['peak_mib']:.0f} (before: {report['before_mib']:.0f})",
            ])
    header = ["family", "engine", "size", "MP", "tiles", "seconds", "s/MP", "s/MP / 1024x768 stylize",
              "s/MP / 1024x768 forward", "peak RSS MiB"]
    return (
        f"`Stylizer(model{engine_text(plan, api=True)}).stylize(photo)` with default (auto) tiling, each case in its own "
        "subprocess so that the peak resident memory (VmHWM) is that case's alone; the photo is made in memory (no "
        f"decoding). The {fmt_size(REFERENCE)} row is the median of 3 calls in one process (the "
        "first pays network set-up); large rows are one call, set-up included. \"before\" is the "
        "peak RSS after loading the network and making the photo; the last-but-one column divides by "
        "the 1024x768 forward of the same engine. Goals: both complete, peak "
        "RSS <= 1536 MiB, s/MP within 10 % of the 1024x768 figure. instance_norm is also run once with "
        "`exact_statistics=True` (full-resolution normalisation statistics, layer by layer)."
        + ("" if 8000 * 6000 in [w * h for w, h in plan.large_sizes] else " Quick run: 48 and 100 MP skipped.")
        + "\n\n" + table(header, rows)
    )


# ---------------------------------------------------------------- 5. live


class MemorySource:
    """In-memory frames for :func:`cvstyle.live.run`, as a video file would give them."""

    live = False
    fps = 1000.0  # no pacing: there is no window anyway

    def __init__(self, frames: list[np.ndarray]):
        from cvstyle.live import Frame

        self._frame = Frame
        self.frames = frames
        self.index = 0
        self.name = "memory"
        self.frame_count = len(frames)
        self.frame_size = (frames[0].shape[1], frames[0].shape[0])

    def read(self):
        if self.index >= len(self.frames):
            return None
        frame = self._frame(self.frames[self.index], self.index, time.monotonic())
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def section_live(plan: Plan, models: dict[str, Path]) -> str:
    from cvstyle.stylizer import Stylizer

    try:
        from cvstyle import live
    except ImportError:
        live = None
    rows = []
    for family, path in models.items():
        stylizer = Stylizer(str(path), device="cpu", **engine_argument(plan))
        for size in plan.live_sizes:
            log(f"live {family} {fmt_size(size)}")
            base = photo(size)
            frames = [np.roll(base, 8 * i, axis=1) for i in range(plan.live_frames)]
            network = stylizer.runners[0]
            blobs = [network.preprocess(frame) for frame in frames]
            live_seconds, latencies, forward_seconds_total = 0.0, [], 0.0
            for _ in range(2):  # two rounds of live loop / forward-only loop, interleaved
                if live is not None:
                    report = live.run(MemorySource(frames), live.Painter([stylizer]),
                                      max_frames=len(frames), notify=lambda message: None)
                    live_seconds += report.frames / report.fps
                    latencies.append(report.mean_latency)
                else:
                    stylizer.stylize(frames[0])
                    seconds = timed(lambda: [stylizer.stylize(f) for f in frames])[0]
                    live_seconds += seconds
                    latencies.append(seconds / len(frames))
                forward_seconds_total += timed(lambda: [network.infer(blob) for blob in blobs])[0]
            fps = 2 * len(frames) / live_seconds
            forward_fps = 2 * len(frames) / forward_seconds_total
            rows.append([
                family, stylizer.engine, fmt_size(size), f"{fps:.2f}", ms(statistics.mean(latencies)),
                f"{forward_fps:.2f}", f"{fps / forward_fps * 100:.0f} %",
            ])
    header = ["family", "engine", "size", "live FPS", "mean latency ms", "forward-only FPS", "live / forward-only"]
    source = ("`cvstyle.live.run` (the loop behind `cvstyle live`, its warm-up outside the timing) "
              "with no window" if live is not None else "a loop of Stylizer.stylize")
    return (f"{source}, on {plan.live_frames} in-memory frames per case, twice, each time followed "
            "by forward-only (the same network's infer on the frames' prepared blobs) for the reference "
            "FPS.\n\n" + table(header, rows))


# ---------------------------------------------------------------- 6. engines side by side


def torch_runner(root: TorchObject):
    """A PyTorch function equivalent to the Torch7 tree (as a PyTorch user would port it)."""
    import torch
    import torch.nn.functional as F

    def tensor(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def build(module: TorchObject):
        name, f = module.class_name, module.fields
        if name == "nn.Sequential":
            steps = [build(child) for child in module.children]

            def sequential(x):
                for step in steps:
                    x = step(x)
                return x

            return sequential
        if name == "nn.ConcatTable":
            branches = [build(child) for child in module.children]
            return lambda x: [branch(x) for branch in branches]
        if name == "nn.CAddTable":
            return lambda xs: sum(xs[1:], xs[0])
        if name == "nn.ShaveImage":
            s = f["size"]
            return lambda x: x[:, :, s:-s, s:-s]
        if name == "nn.SpatialReflectionPadding":
            pads = (f["pad_l"], f["pad_r"], f["pad_t"], f["pad_b"])
            return lambda x: F.pad(x, pads, mode="reflect")
        if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM"):
            weight = tensor(f["weight"]).reshape(f["nOutputPlane"], f["nInputPlane"], f["kH"], f["kW"])
            bias, stride, pad = tensor(f["bias"]), (f["dH"], f["dW"]), (f["padH"], f["padW"])
            return lambda x: F.conv2d(x, weight, bias, stride, pad)
        if name == "nn.SpatialFullConvolution":
            weight, bias = tensor(f["weight"]), tensor(f["bias"])
            stride, pad, adj = (f["dH"], f["dW"]), (f["padH"], f["padW"]), (f["adjH"], f["adjW"])
            return lambda x: F.conv_transpose2d(x, weight, bias, stride, pad, adj)
        if name == "nn.SpatialBatchNormalization":
            mean, var = tensor(f["running_mean"]), tensor(f["running_var"])
            weight, bias, eps = tensor(f["weight"]), tensor(f["bias"]), float(f["eps"])
            return lambda x: F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        if name == "nn.InstanceNormalization":
            weight, bias, eps = tensor(f["weight"]), tensor(f["bias"]), float(f["eps"])
            return lambda x: F.instance_norm(x, weight=weight, bias=bias, eps=eps)
        if name == "nn.ReLU":
            return torch.relu
        if name == "nn.Tanh":
            return torch.tanh
        if name == "nn.MulConstant":
            constant = float(f["constant_scalar"])
            return lambda x: x * constant
        if name in ("nn.TotalVariation", "nn.Identity"):
            return lambda x: x
        raise ValueError(f"no PyTorch equivalent for {name}")

    network = build(root)

    def infer(blob: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(blob)).numpy()

    return infer


def section_engines(plan: Plan, models: dict[str, Path], peak: float) -> str:
    notes = []
    try:
        from cvstyle import engines
    except ImportError as error:
        engines = None
        notes.append(f"ONNX Runtime column skipped: cvstyle.engines cannot be imported ({error}).")
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch = None
        notes.append("PyTorch column skipped: torch is not installed.")
    rows = []
    names = ["opencv"]
    for family, path in models.items():
        runners: dict[str, Callable] = {}
        network = load_runner(path, "opencv", "cpu")
        runners["opencv"] = network.infer
        if engines is not None:
            try:
                start = time.perf_counter()
                ort = engines.load_runner(path, "onnxruntime", "cpu")
                log(f"onnxruntime {family}: converted and loaded in {time.perf_counter() - start:.1f} s")
                runners["onnxruntime"] = ort.infer
            except Exception as error:  # an engine that cannot run here is a note, not a failure
                notes.append(f"onnxruntime on {family}: {error}")
        if torch is not None:
            runners["torch"] = torch_runner(model_root(path))
        for name in runners:
            if name not in names:
                names.append(name)
        for size in plan.engine_sizes:
            log(f"engines {family} {fmt_size(size)}: {', '.join(runners)}")
            image = photo(size)
            blob = network.preprocess(image)
            outputs = {name: network.postprocess(run(blob), *image.shape[:2]) for name, run in runners.items()}
            times = interleaved({name: (lambda run=run: run(blob)) for name, run in runners.items()},
                                plan.engine_repeat, warm_up=0)
            median = {name: statistics.median(values) for name, values in times.items()}
            work = gmac(model_root(path), blob.shape)
            row = [family, fmt_size(size)]
            for name in names:
                if name in median:
                    row.append(f"{ms(median[name])} ({2 * work / median[name] / peak:.2f})")
                else:
                    row.append("-")
            for name in names[1:]:
                row.append(f"{median['opencv'] / median[name]:.2f}x, {grey_diff(outputs[name], outputs['opencv'])}"
                           if name in median else "-")
            rows.append(row)
    header = ["family", "size"] + [f"{name} ms (ratio to matmul)" for name in names]
    header += [f"{name}: speed vs opencv, max grey diff" for name in names[1:]]
    threads = [f"OpenCV {cv2.getNumThreads()}"]
    if torch is not None:
        threads.append(f"PyTorch {torch_threads}")
    text = (
        f"Forward on the same prepared blob, engines interleaved frame by frame, median of "
        f"{plan.engine_repeat} after one warm-up (model conversion and loading excluded). ONNX "
        "Runtime runs the project's ONNX conversion (`cvstyle.engines.load_runner(..., "
        "'onnxruntime', 'cpu')`, default session options); PyTorch runs a direct port of the "
        "Torch7 tree (torch.nn.functional, inference_mode). Speed vs opencv > 1 means faster "
        f"than OpenCV. Threads: {', '.join(threads)}, ONNX Runtime its default.\n\n"
        + table(header, rows)
    )
    return text + ("\n\n" + "\n".join(f"- {note}" for note in notes) if notes else "")


# ---------------------------------------------------------------- 7. OpenCV DNN settings


def configured(path: Path, fusion=False, winograd=None, backend=cv2.dnn.DNN_BACKEND_OPENCV,
               target=cv2.dnn.DNN_TARGET_CPU, onnx: Path | None = None) -> cv2.dnn.Net:
    net = cv2.dnn.readNetFromONNX(str(onnx)) if onnx else load_network(path)
    net.enableFusion(fusion)
    if winograd is not None:
        net.enableWinograd(winograd)
    net.setPreferableBackend(backend)
    net.setPreferableTarget(target)
    return net


def section_settings(plan: Plan, models: dict[str, Path]) -> str:
    size = plan.settings_size
    other = (size[0] // 2, size[1] // 2)
    image = photo(size)
    rows, notes = [], []
    opencl = cv2.ocl.haveOpenCL()
    if not opencl:
        notes.append("DNN_TARGET_OPENCL and DNN_TARGET_OPENCL_FP16: not available "
                     "(cv2.ocl.haveOpenCL() is False: no OpenCL platform on this machine).")
    if platform.machine().lower() not in ("aarch64", "arm64"):
        notes.append("DNN_TARGET_CPU_FP16: OpenCV 4.14 supports it only on ARMv8 and falls back "
                     "to DNN_TARGET_CPU here (its warning says so), hence the identical output.")
    threads = cv2.getNumThreads()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # the CPU_FP16 fallback warning
    try:
        for family, path in models.items():
            log(f"settings {family} {fmt_size(size)}")
            default = load_runner(path, "opencv", "cpu")
            blob = default.preprocess(image)
            candidates: dict[str, cv2.dnn.Net] = {
                "enableFusion(True)": configured(path, fusion=True),
                "enableWinograd(False)": configured(path, winograd=False),
                "enableWinograd(True)": configured(path, winograd=True),
                "DNN_TARGET_CPU_FP16": configured(path, target=cv2.dnn.DNN_TARGET_CPU_FP16),
            }
            if opencl:
                candidates["DNN_TARGET_OPENCL"] = configured(path, target=cv2.dnn.DNN_TARGET_OPENCL)
                candidates["DNN_TARGET_OPENCL_FP16"] = configured(path, target=cv2.dnn.DNN_TARGET_OPENCL_FP16)
            try:
                from cvstyle.engines import cached_onnx

                candidates["readNetFromONNX (project's ONNX conversion)"] = configured(path, onnx=cached_onnx(path))
            except Exception as error:  # no onnx package or no engines module: a note
                notes.append(f"readNetFromONNX on {family}: skipped ({error})")

            def run_net(net):
                net.setInput(blob)
                return net.forward()

            def with_threads(count):
                def run():
                    cv2.setNumThreads(count)
                    try:
                        return default.infer(blob)
                    finally:
                        cv2.setNumThreads(threads)
                return run

            runs = {f"default (project: fusion off, Winograd default, {threads} threads)":
                    lambda: default.infer(blob)}
            runs.update({name: (lambda net=net: run_net(net)) for name, net in candidates.items()})
            for count in sorted({1, 2, os.cpu_count() or 2}):
                runs[f"cv2.setNumThreads({count})"] = with_threads(count)
            outputs = {name: run().copy() for name, run in runs.items()}  # also the warm-up
            times = interleaved(runs, plan.settings_repeat, warm_up=0)
            base_name = next(iter(runs))
            base_out = outputs[base_name]
            base_image = default.postprocess(base_out, *image.shape[:2])
            base_time = statistics.median(times[base_name])
            for name in runs:
                median = statistics.median(times[name])
                raw = float(np.abs(outputs[name] - base_out).max())
                grey = grey_diff(default.postprocess(outputs[name], *image.shape[:2]), base_image)
                rows.append([family, name, ms(median), f"{base_time / median:.2f}x", f"{raw:.3g}", grey,
                             "**yes**" if grey > GREY_LIMIT else "no"])
            # Fusion after a change of input shape: the reason the project disables it.
            fused = configured(path, fusion=True)
            small = default.preprocess(photo(other))
            first = run_net(fused).copy()
            fused.setInput(small)
            fused.forward()
            again = run_net(fused)
            grey_back = grey_diff(default.postprocess(again, *image.shape[:2]), base_image)
            unfused = load_runner(path, "opencv", "cpu")
            fused.setInput(small)
            fused_small = fused.forward().copy()
            grey_small = grey_diff(default.postprocess(fused_small, other[1], other[0]),
                                   unfused.postprocess(unfused.infer(small), other[1], other[0]))
            rows.append([family, f"enableFusion(True), after one forward at {fmt_size(size)}: "
                         f"output at {fmt_size(other)}", "-", "-", "-", grey_small,
                         "**yes**" if grey_small > GREY_LIMIT else "no"])
            rows.append([family, f"enableFusion(True), back at {fmt_size(size)} after "
                         f"{fmt_size(other)} (first forward: {grey_diff(default.postprocess(first, *image.shape[:2]), base_image)})",
                         "-", "-", "-", grey_back, "**yes**" if grey_back > GREY_LIMIT else "no"])
    finally:
        cv2.setNumThreads(threads)
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)

    # Pre- and post-processing against the forward, and the NumPy post-processing the
    # project used before (what switching to OpenCV's bought).
    cost_rows = []
    for family, path in models.items():
        network = load_runner(path, "opencv", "cpu")
        for cost_size in sorted({size, REFERENCE}):
            picture = photo(cost_size)
            blob = network.preprocess(picture)
            output = network.infer(blob)
            height, width = picture.shape[:2]
            mean = np.asarray(network.preprocessing.mean_bgr, np.float32)

            def post_numpy():
                image = output[0, :, :height, :width].transpose(1, 2, 0) + mean
                return np.clip(np.rint(image), 0, 255).astype(np.uint8)

            same = grey_diff(post_numpy(), network.postprocess(output, height, width))
            times = interleaved(
                {
                    "forward": lambda: network.infer(blob),
                    "preprocess": lambda: network.preprocess(picture),
                    "postprocess": lambda: network.postprocess(output, height, width),
                    "post_numpy": post_numpy,
                },
                max(3, plan.settings_repeat), warm_up=1,
            )
            median = {name: statistics.median(values) for name, values in times.items()}
            cost_rows.append([
                family, fmt_size(cost_size), ms(median["forward"]),
                f"{median['preprocess'] * 1000:.1f} ({median['preprocess'] / median['forward'] * 100:.2f} %)",
                f"{median['postprocess'] * 1000:.1f} ({median['postprocess'] / median['forward'] * 100:.2f} %)",
                f"{median['post_numpy'] * 1000:.1f} (max diff {same})",
            ])
    header = ["family", "setting", "forward ms", "speed vs default", "max abs diff (network output)",
              "max grey diff", "> 1 grey level"]
    cost_header = ["family", "size", "forward ms", "preprocess ms (blobFromImage; % of forward)",
                   "postprocess ms (% of forward)", "former NumPy postprocess ms"]
    return (
        f"Each setting on a fresh network at a fixed {fmt_size(size)} input, all interleaved run by "
        f"run, median of {plan.settings_repeat}; differences are against the project's default "
        "(StyleNet: fusion off) on the same blob: the raw network output, and the uint8 picture "
        f"after post-processing (grey levels). Changes beyond {GREY_LIMIT} grey level must stay "
        "opt-in.\n\n" + table(header, rows)
        + ("\n\n" + "\n".join(f"- {note}" for note in notes) if notes else "")
        + "\n\nInput layout and pre/post-processing: `StyleRunner.preprocess` "
        "(cv2.dnn.blobFromImage to NCHW float32) and `postprocess` (per plane, cv2.add of the mean "
        "with a saturating, round-to-even conversion to uint8, then cv2.merge) against the forward, "
        "and the NumPy post-processing the project used before (transpose, add mean, rint, clip, "
        "astype) with its difference to the project's.\n\n" + table(cost_header, cost_rows)
    )


# ---------------------------------------------------------------- main


SECTIONS = {
    1: "Forward time per frame and achieved GFLOP/s",
    2: "End-to-end `cvstyle apply` versus forward",
    3: "Batch throughput",
    4: "Large photos: 12, 48 and 100 MP",
    5: "Live FPS",
    6: "OpenCV DNN, ONNX Runtime and PyTorch side by side",
    7: "OpenCV DNN settings (issue 4, item 2)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats, no 48 or 100 MP")
    parser.add_argument("--only", default="", help="comma-separated section numbers (default: all)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated model families")
    parser.add_argument("--engine", default="auto", choices=("auto", "opencv", "onnxruntime"),
                        help="engine of the project's own paths (sections 2-5), as `cvstyle apply "
                        "--engine`; default auto, the project's default")
    parser.add_argument("-o", "--output", type=Path, help="also write the document to this file")
    parser.add_argument("--child-large", nargs=6, metavar=("MODEL", "W", "H", "REPEAT", "ENGINE", "EXACT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_large:
        model, width, height, repeat, engine, exact = args.child_large
        child_large(model, int(width), int(height), int(repeat), engine, exact == "1")
        return 0
    plan = dataclasses.replace(QUICK if args.quick else FULL, engine=args.engine)
    wanted = [int(n) for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    started = time.perf_counter()
    document: list[str] = []

    def emit(text: str) -> None:
        document.append(text)
        print(text + "\n", flush=True)

    emit(f"# cvstyle benchmark{' (QUICK run)' if plan.quick else ''}\n\n"
         f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')} with `python benchmarks/bench.py"
         f"{' --quick' if plan.quick else ''}{'' if plan.engine == 'auto' else ' --engine ' + plan.engine}`."
         "\n\n## Machine\n\n" + machine_description(plan))
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="cvstyle-bench-") as temp:
        folder = Path(temp)
        models = {family: write_fixture_model(folder / f"{family}.t7", family, seed=1) for family in families}
        log("numpy matmul")
        peak = matmul_gflops()
        chosen = {engine_name(plan.engine, path) for path in models.values()}
        emit(f"numpy float32 matmul (2048x2048 @ 2048x2048, best of 7): **{peak:.1f} GFLOP/s**; "
             "the 'ratio to matmul' columns divide by this figure. Sections 1 and 7 measure OpenCV's "
             f"DNN; sections 2-5 run the project's own paths on engine `{plan.engine}`, which is "
             f"**{', '.join(sorted(chosen))}** here; section 6 puts the engines side by side.")
        for number in sorted(wanted):
            log(f"section {number}: {SECTIONS[number]}")
            if number == 1:
                body = section_forward(plan, models, peak, results)
            elif number == 2:
                body = section_apply(plan, models, folder, results)
            elif number == 3:
                body = section_batch(plan, models, folder)
            elif number == 4:
                body = section_large(plan, models, results)
            elif number == 5:
                body = section_live(plan, models)
            elif number == 6:
                body = section_engines(plan, models, peak)
            else:
                body = section_settings(plan, models)
            emit(f"## {number}. {SECTIONS[number]}\n\n{body}")
        end_peak = matmul_gflops(repeat=3)
    minutes = (time.perf_counter() - started) / 60
    emit(f"Finished in {minutes:.1f} min; load average at end "
         f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}; numpy matmul at end {end_peak:.1f} "
         "GFLOP/s (a large change from the start means the machine was busy).")
    if args.output:
        args.output.write_text("\n\n".join(document) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
