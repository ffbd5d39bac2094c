"""Section: 12, 48 and 100 MP photos through ``Stylizer.stylize``, each in its own
subprocess so that its peak resident memory is its own."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import REFERENCE, Context, fmt_size, log, peak_rss_mib, photo, table, timed
from project import engine_text
from sections.forward import forward_seconds

TITLE = "Large photos: 12, 48 and 100 MP"
DRIVER = Path(__file__).resolve().parent.parent / "bench.py"
DEFAULT = "default"  # the project's own choice of statistics


def child(arguments: list[str]) -> None:
    """In the subprocess (MODEL WIDTH HEIGHT REPEAT ENGINE MODE): stylize one photo made
    in memory with statistics MODE (``default``: the project's choice), print JSON with
    the times, the peak RSS and the steps stylize reported progress for."""
    from cvstyle import Stylizer

    model, width, height, repeat, engine, mode = arguments
    stylizer = Stylizer(model, device="cpu", engine=engine)
    image = photo((int(width), int(height)))
    options = {} if mode == DEFAULT else {"statistics": mode}
    steps = [0]

    def progress(done: int, total: int, *stage) -> None:
        steps[0] = total

    before = peak_rss_mib()
    times = [timed(stylizer.stylize, image, progress=progress, **options)[0] for _ in range(int(repeat))]
    peak = peak_rss_mib()
    print(json.dumps({"seconds": times, "peak_mib": peak, "before_mib": before, "steps": steps[0],
                      "engine": stylizer.engine}))


def run_child(model: Path, size: tuple[int, int], engine: str, repeat: int = 1, mode: str = DEFAULT) -> dict:
    command = [sys.executable, str(DRIVER), "--child", "large", str(model),
               str(size[0]), str(size[1]), str(repeat), engine, mode]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"[:200], "wall": wall}
    return json.loads(done.stdout.strip().splitlines()[-1])


def family_rows(context: Context, family: str, path: Path) -> list[list]:
    plan = context.plan
    megapixels_reference = REFERENCE[0] * REFERENCE[1] / 1e6
    log(f"large {family} {fmt_size(REFERENCE)} reference")
    reference = run_child(path, REFERENCE, plan.engine, repeat=3)
    reference_rate = None
    if "error" not in reference:
        reference_rate = statistics.median(reference["seconds"]) / megapixels_reference
    forward_rate = forward_seconds(context, family, REFERENCE) / megapixels_reference
    cases = [(size, DEFAULT) for size in (REFERENCE, *plan.large_sizes)]
    if family == "instance_norm":
        cases.insert(2, (plan.large_sizes[0], "estimate"))
    rows = []
    for size, mode in cases:
        megapixels = size[0] * size[1] / 1e6
        label = fmt_size(size) + ("" if mode == DEFAULT else f" statistics={mode}")
        if size != REFERENCE:
            log(f"large {family} {label}")
        report = reference if size == REFERENCE else run_child(path, size, plan.engine, mode=mode)
        if "error" in report:
            rows.append([family, "-", label, f"{megapixels:.1f}", "-",
                         f"FAILED ({report['error']})", "-", "-", "-", "-"])
            continue
        seconds = statistics.median(report["seconds"])
        rate = seconds / megapixels
        rows.append([
            family, report["engine"], label, f"{megapixels:.1f}", report["steps"] or "one pass",
            f"{seconds:.1f}", f"{rate:.2f}",
            f"{rate / reference_rate:.2f}" if reference_rate else "-",
            f"{rate / forward_rate:.2f}",
            f"{report['peak_mib']:.0f} (before: {report['before_mib']:.0f})",
        ])
    return rows


def run(context: Context) -> str:
    plan = context.plan
    rows = [row for family, path in context.models.items() for row in family_rows(context, family, path)]
    header = ["family", "engine", "size", "MP", "progress steps", "seconds", "s/MP", "s/MP / 1024x768 stylize",
              "s/MP / 1024x768 forward", "peak RSS MiB"]
    return (
        f"`Stylizer(model{engine_text(plan, api=True)}).stylize(photo)` with default (auto) tiling, each "
        "case in its own subprocess so that the peak resident memory (VmHWM) is that case's alone; "
        f"the photo is made in memory (no decoding). The {fmt_size(REFERENCE)} row is the median of 3 "
        "calls in one process (the first pays network set-up); large rows are one call, set-up "
        "included. \"before\" is the peak RSS after loading the network and making the photo; the "
        "last-but-one column divides by the 1024x768 forward of the same engine. Goals: both "
        "complete, peak RSS <= 1536 MiB, s/MP within 10 % of the 1024x768 figure. Progress steps: "
        "the total that stylize's progress callback reported (tiles, or the tile passes of a staged "
        "run; one pass: none). instance_norm is also run once with `statistics=\"estimate\"` "
        "(statistics measured on a small copy) beside the default (exact)."
        + ("" if 8000 * 6000 in [w * h for w, h in plan.large_sizes] else " Quick run: 48 and 100 MP skipped.")
        + "\n\n" + table(header, rows)
    )
