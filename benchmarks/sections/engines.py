"""Section: OpenCV DNN, ONNX Runtime and PyTorch side by side on the same blob, on the CPU
and on each GPU engine this machine offers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from cvstyle.runner import StyleRunner

from flops import gmac
from harness import Context, bullets, fmt_size, grey_diff, interleaved, log, ms, photo, table
from project import gpu_configurations, load_runner, model_root, onnxruntime_providers, opencv_runner

TITLE = "OpenCV DNN, ONNX Runtime and PyTorch side by side"
BASELINE = "opencv"  # OpenCV DNN on the CPU: what the others are compared with


def pytorch() -> tuple[object | None, str]:
    """torch, or None and why not."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch column skipped: torch is not installed."
    return torch, ""


def engine_runners(family: str, path: Path, notes: list[str]) -> dict[str, Callable]:
    """Each engine's forward (blob in, network output out) for ``path``, by column name;
    an engine that cannot run here becomes a note."""
    runners: dict[str, Callable] = {}
    for engine, device in [("onnxruntime", "cpu"), *gpu_configurations()]:
        name = engine if device == "cpu" else f"{engine} {device}"
        try:
            start = time.perf_counter()
            runners[name] = load_runner(path, engine, device).infer
            log(f"{name} {family}: loaded in {time.perf_counter() - start:.1f} s")
        except Exception as error:  # an engine that cannot run here is a note, not a failure
            notes.append(f"{name} on {family}: {error}")
    torch, _ = pytorch()
    if torch is not None:
        from torch_port import torch_runner

        runners["torch"] = torch_runner(model_root(path))
    return runners


def size_row(context: Context, family: str, baseline: StyleRunner, runners: dict[str, Callable],
             names: list[str], size: tuple[int, int]) -> list:
    """One table row: each engine's median forward at ``size``, its speed and difference
    against OpenCV's; ``baseline`` (the OpenCV runner) prepares the blob and pictures."""
    log(f"engines {family} {fmt_size(size)}: {', '.join(runners)}")
    image = photo(size)
    blob = baseline.preprocess(image)
    outputs = {name: baseline.postprocess(run(blob), *image.shape[:2]) for name, run in runners.items()}
    times = interleaved({name: (lambda run=run: run(blob)) for name, run in runners.items()},
                        context.plan.engine_repeat, warm_up=0)
    median = {name: statistics.median(values) for name, values in times.items()}
    work = gmac(model_root(context.models[family]), blob.shape)
    row = [family, fmt_size(size)]
    for name in names:
        on_cpu = " " not in name
        ratio = f" ({2 * work / median[name] / context.peak_gflops:.2f})" if on_cpu and name in median else ""
        row.append(f"{ms(median[name])}{ratio}" if name in median else "-")
    for name in names[1:]:
        row.append(f"{median[BASELINE] / median[name]:.2f}x, {grey_diff(outputs[name], outputs[BASELINE])}"
                   if name in median else "-")
    return row


def run(context: Context) -> str:
    torch, missing = pytorch()
    notes = [missing] if missing else []
    baselines = {family: opencv_runner(path) for family, path in context.models.items()}
    per_family = {
        family: {BASELINE: baselines[family].infer, **engine_runners(family, path, notes)}
        for family, path in context.models.items()
    }
    names = list(dict.fromkeys(name for runners in per_family.values() for name in runners))
    rows = [size_row(context, family, baselines[family], runners, names, size)
            for family, runners in per_family.items() for size in context.plan.engine_sizes]
    header = ["family", "size"] + [f"{name} ms (ratio to matmul)" for name in names]
    header += [f"{name}: speed vs opencv, max grey diff" for name in names[1:]]
    threads = [f"OpenCV {cv2.getNumThreads()}"]
    if torch is not None:
        threads.append(f"PyTorch {torch.get_num_threads()}")
    return (
        f"Forward on the same prepared blob, engines interleaved frame by frame, median of "
        f"{context.plan.engine_repeat} after one warm-up (model conversion and loading excluded). ONNX "
        "Runtime runs the project's ONNX conversion (the onnxruntime engine, default session "
        "options); PyTorch runs a direct port of the Torch7 tree (torch.nn.functional, "
        "inference_mode). Columns named with a device (cuda, cuda-fp16) run on the GPU where this "
        "machine has one (no ratio to the CPU's matmul). Speed vs opencv > 1 means faster than "
        f"OpenCV on the CPU. Threads: {', '.join(threads)}, ONNX Runtime its default; ONNX Runtime "
        f"providers here: {', '.join(onnxruntime_providers()) or 'none'}.\n\n"
        + table(header, rows) + bullets(notes)
    )
