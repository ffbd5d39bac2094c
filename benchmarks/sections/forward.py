"""Section: forward time per frame on OpenCV's DNN, its work in GMAC and achieved GFLOP/s."""

from __future__ import annotations

import statistics
from pathlib import Path

from flops import gmac
from harness import Context, fmt_size, interleaved, log, ms, photo, table
from project import engine_name, load_runner, model_root, opencv_gflop, opencv_runner

TITLE = "Forward time per frame and achieved GFLOP/s"


def run(context: Context) -> str:
    plan, rows = context.plan, []
    for family, path in context.models.items():
        root = model_root(path)
        runner = opencv_runner(path)
        for size in plan.forward_sizes:
            log(f"forward {family} {fmt_size(size)}")
            blob = runner.preprocess(photo(size))
            times = interleaved({"forward": lambda: runner.infer(blob)}, plan.forward_repeat)["forward"]
            median = statistics.median(times)
            work = gmac(root, blob.shape)
            rate = 2 * work / median
            context.results["forward", "opencv", family, size] = median
            rows.append([
                family, fmt_size(size), ms(median), ms(min(times)),
                f"{median / (size[0] * size[1] / 1e6) * 1000:.0f}",
                f"{work:.1f}", counted(opencv_gflop(runner, blob.shape)), f"{rate:.1f}",
                f"{rate / context.peak_gflops:.2f}",
            ])
    header = ["family", "size", "forward ms (median)", "min ms", "ms/MP", "GMAC",
              "GFLOP by cv2 getFLOPS", "GFLOP/s (2 MAC/s)", "ratio to matmul"]
    return (
        f"OpenCV DNN: the runner's infer on a prepared blob, median of {plan.forward_repeat} after one warm-up. "
        "GMAC counts convolutions and transposed convolutions from the Torch7 tree, on the "
        "input plus its 40-px reflection border; OpenCV's own getFLOPS (which also counts "
        "normalisation and activations) is shown beside it as a check.\n\n"
        + table(header, rows)
    )


def counted(gflop: float | None) -> str:
    return "-" if gflop is None else f"{gflop:.1f}"


def forward_seconds(context: Context, family: str, size: tuple[int, int], repeat: int = 3) -> float:
    """The median forward of ``family`` at ``size`` on the plan's engine: this section's
    figure when it ran on that engine, else measured here (and kept for later sections)."""
    path: Path = context.models[family]
    key = ("forward", engine_name(context.plan.engine, path), family, size)
    if key not in context.results:
        runner = load_runner(path, context.plan.engine)
        blob = runner.preprocess(photo(size))
        context.results[key] = statistics.median(interleaved({"f": lambda: runner.infer(blob)}, repeat)["f"])
    return context.results[key]
