"""Section: OpenCV DNN settings (fusion, Winograd, targets, threads) against the project's
default, and the cost of pre- and post-processing against the forward."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from cvstyle.runner import StyleRunner

from harness import (
    GREY_LIMIT, REFERENCE, Context, bullets, fmt_size, grey_diff, interleaved, log, ms, photo, table,
)
from project import onnx_file, opencv_net, opencv_runner

TITLE = "OpenCV DNN settings"


def configured(net: cv2.dnn.Net, fusion: bool = False, winograd: bool | None = None,
               target: int = cv2.dnn.DNN_TARGET_CPU) -> cv2.dnn.Net:
    net.enableFusion(fusion)
    if winograd is not None:
        net.enableWinograd(winograd)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(target)
    return net


def candidates(family: str, path: Path, opencl: bool, notes: list[str]) -> dict[str, cv2.dnn.Net]:
    """Each setting tried, on a fresh network of ``path``."""
    nets = {
        "enableFusion(True)": configured(opencv_net(path), fusion=True),
        "enableWinograd(False)": configured(opencv_net(path), winograd=False),
        "enableWinograd(True)": configured(opencv_net(path), winograd=True),
        "DNN_TARGET_CPU_FP16": configured(opencv_net(path), target=cv2.dnn.DNN_TARGET_CPU_FP16),
    }
    if opencl:
        nets["DNN_TARGET_OPENCL"] = configured(opencv_net(path), target=cv2.dnn.DNN_TARGET_OPENCL)
        nets["DNN_TARGET_OPENCL_FP16"] = configured(opencv_net(path), target=cv2.dnn.DNN_TARGET_OPENCL_FP16)
    if not hasattr(cv2.dnn, "readNetFromTorch"):
        note = "readNetFromONNX (project's ONNX conversion): the default itself here (OpenCV 5 reads no .t7)."
        notes.extend([note] if note not in notes else [])
        return nets
    try:
        nets["readNetFromONNX (project's ONNX conversion)"] = configured(cv2.dnn.readNetFromONNX(str(onnx_file(path))))
    except Exception as error:  # no onnx package: a note
        notes.append(f"readNetFromONNX on {family}: skipped ({error})")
    return nets


def forward_of(net: cv2.dnn.Net, blob: np.ndarray) -> np.ndarray:
    net.setInput(blob)
    return net.forward()


def with_threads(runner: StyleRunner, blob: np.ndarray, count: int) -> Callable[[], np.ndarray]:
    """The default runner's forward with OpenCV limited to ``count`` threads."""
    def run() -> np.ndarray:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(count)
        try:
            return runner.infer(blob)
        finally:
            cv2.setNumThreads(threads)
    return run


def verdict(grey: int) -> str:
    return "**yes**" if grey > GREY_LIMIT else "no"


def setting_rows(context: Context, family: str, path: Path, opencl: bool, notes: list[str]) -> list[list]:
    size = context.plan.settings_size
    image = photo(size)
    default = opencv_runner(path)
    blob = default.preprocess(image)
    runs = {f"default (project: fusion off, Winograd default, {cv2.getNumThreads()} threads)":
            lambda: default.infer(blob)}
    runs.update({name: (lambda net=net: forward_of(net, blob))
                 for name, net in candidates(family, path, opencl, notes).items()})
    for count in sorted({1, 2, os.cpu_count() or 2}):
        runs[f"cv2.setNumThreads({count})"] = with_threads(default, blob, count)
    outputs = {name: run().copy() for name, run in runs.items()}  # also the warm-up
    times = interleaved(runs, context.plan.settings_repeat, warm_up=0)
    base_name = next(iter(runs))
    base_out = outputs[base_name]
    base_image = default.postprocess(base_out, *image.shape[:2])
    base_time = statistics.median(times[base_name])
    rows = []
    for name in runs:
        median = statistics.median(times[name])
        raw = float(np.abs(outputs[name] - base_out).max())
        grey = grey_diff(default.postprocess(outputs[name], *image.shape[:2]), base_image)
        rows.append([family, name, ms(median), f"{base_time / median:.2f}x", f"{raw:.3g}", grey, verdict(grey)])
    return rows + fusion_rows(family, path, default, image, base_image)


def fusion_rows(family: str, path: Path, default: StyleRunner, image: np.ndarray, base_image: np.ndarray) -> list[list]:
    """Fusion after a change of input shape: the reason the project disables it."""
    height, width = image.shape[:2]
    other = (width // 2, height // 2)
    blob, small = default.preprocess(image), default.preprocess(photo(other))
    fused = configured(opencv_net(path), fusion=True)
    first = forward_of(fused, blob).copy()
    forward_of(fused, small)
    grey_back = grey_diff(default.postprocess(forward_of(fused, blob), height, width), base_image)
    fused_small = forward_of(fused, small).copy()
    unfused = opencv_runner(path)
    grey_small = grey_diff(default.postprocess(fused_small, other[1], other[0]),
                           unfused.postprocess(unfused.infer(small), other[1], other[0]))
    grey_first = grey_diff(default.postprocess(first, height, width), base_image)
    size = fmt_size((width, height))
    return [
        [family, f"enableFusion(True), after one forward at {size}: output at {fmt_size(other)}",
         "-", "-", "-", grey_small, verdict(grey_small)],
        [family, f"enableFusion(True), back at {size} after {fmt_size(other)} (first forward: {grey_first})",
         "-", "-", "-", grey_back, verdict(grey_back)],
    ]


def postprocess_numpy(runner: StyleRunner, output: np.ndarray, height: int, width: int) -> np.ndarray:
    """The NumPy post-processing the project used before OpenCV's: the comparison."""
    mean = np.asarray(runner.preprocessing.mean_bgr, np.float32)
    image = output[0, :, :height, :width].transpose(1, 2, 0) + mean
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def cost_rows(context: Context) -> list[list]:
    """Pre- and post-processing against the forward, and the former NumPy post-processing."""
    rows = []
    for family, path in context.models.items():
        runner = opencv_runner(path)
        for size in sorted({context.plan.settings_size, REFERENCE}):
            picture = photo(size)
            blob = runner.preprocess(picture)
            output = runner.infer(blob)
            height, width = picture.shape[:2]
            same = grey_diff(postprocess_numpy(runner, output, height, width),
                             runner.postprocess(output, height, width))
            times = interleaved(
                {
                    "forward": lambda: runner.infer(blob),
                    "preprocess": lambda: runner.preprocess(picture),
                    "postprocess": lambda: runner.postprocess(output, height, width),
                    "post_numpy": lambda: postprocess_numpy(runner, output, height, width),
                },
                max(3, context.plan.settings_repeat), warm_up=1,
            )
            median = {name: statistics.median(values) for name, values in times.items()}
            rows.append([
                family, fmt_size(size), ms(median["forward"]),
                f"{median['preprocess'] * 1000:.1f} ({median['preprocess'] / median['forward'] * 100:.2f} %)",
                f"{median['postprocess'] * 1000:.1f} ({median['postprocess'] / median['forward'] * 100:.2f} %)",
                f"{median['post_numpy'] * 1000:.1f} (max diff {same})",
            ])
    return rows


def run(context: Context) -> str:
    size = context.plan.settings_size
    rows, notes = [], []
    opencl = cv2.ocl.haveOpenCL()
    if not opencl:
        notes.append("DNN_TARGET_OPENCL and DNN_TARGET_OPENCL_FP16: not available "
                     "(cv2.ocl.haveOpenCL() is False: no OpenCL platform on this machine).")
    if platform.machine().lower() not in ("aarch64", "arm64"):
        notes.append(f"DNN_TARGET_CPU_FP16: OpenCV {cv2.__version__} supports it only on ARMv8 and falls "
                     "back to DNN_TARGET_CPU here (its warning says so), hence the identical output.")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # the CPU_FP16 fallback warning
    try:
        for family, path in context.models.items():
            log(f"settings {family} {fmt_size(size)}")
            rows += setting_rows(context, family, path, opencl, notes)
    finally:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    header = ["family", "setting", "forward ms", "speed vs default", "max abs diff (network output)",
              "max grey diff", "> 1 grey level"]
    cost_header = ["family", "size", "forward ms", "preprocess ms (% of forward)",
                   "postprocess ms (% of forward)", "former NumPy postprocess ms"]
    return (
        f"Each setting on a fresh network at a fixed {fmt_size(size)} input, all interleaved run by "
        f"run, median of {context.plan.settings_repeat}; differences are against the project's default "
        "(the opencv engine's runner: fusion off) on the same blob: the raw network output, and the uint8 picture "
        f"after post-processing (grey levels). Changes beyond {GREY_LIMIT} grey level must stay "
        "opt-in.\n\n" + table(header, rows) + bullets(notes)
        + "\n\nInput layout and pre/post-processing: the runner's `preprocess` "
        "(per plane, cv2.subtract of the mean into an NCHW float32 blob, bit for bit "
        "cv2.dnn.blobFromImage's) and `postprocess` (per plane, cv2.add of the mean "
        "with a saturating, round-to-even conversion to uint8, then cv2.merge) against the forward, "
        "and the NumPy post-processing the project used before (transpose, add mean, rint, clip, "
        "astype) with its difference to the project's.\n\n" + table(cost_header, cost_rows(context))
    )
