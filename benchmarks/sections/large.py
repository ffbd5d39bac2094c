"""Section: 12, 48 and 100 MP photos through ``Stylizer.stylize`` under a 1.5 GiB memory
budget, each in its own subprocess so that its peak resident memory is its own; exact
statistics against the estimate (time and grey levels) for instance_norm."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from harness import REFERENCE, Context, fmt_size, log, peak_rss_mib, photo, table, timed
from project import engine_text
from sections.forward import forward_seconds

TITLE = "Large photos: 12, 48 and 100 MP"
DRIVER = Path(__file__).resolve().parent.parent / "bench.py"
BUDGET = "1.5G"
EQUALITY_SIZE = (2403, 1801)  # 4.3 MP: one untiled pass still fits this machine's memory


def _watch_folder(folder: Path, peak: list[int], stop: threading.Event) -> None:
    """Record the largest total size of the files in ``folder`` (the spilled activations)."""
    while not stop.wait(0.2):
        total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        peak[0] = max(peak[0], total)


def child(arguments: list[str]) -> None:
    """In the subprocess (MODEL WIDTH HEIGHT ENGINE STATISTICS TILE MAX_MEMORY OUT):
    stylize one photo made in memory, print JSON with the time, the peak RSS, the
    progress steps and the peak temporary disk use; save the result to OUT unless '-'."""
    from cvstyle import Stylizer, tiling

    model, width, height, engine, mode, tile, budget, out = arguments
    stylizer = Stylizer(model, device="cpu", engine=engine)
    image = photo((int(width), int(height)))
    steps, disk, stop = [0], [0], threading.Event()
    watcher = threading.Thread(target=_watch_folder, args=(Path(os.environ["CVSTYLE_TMP"]), disk, stop))
    watcher.start()
    before = peak_rss_mib()
    try:
        seconds, result = timed(
            stylizer.stylize, image, statistics=mode, tile=tile, max_memory=None if budget == "-" else budget,
            progress=lambda done, total: steps.__setitem__(0, total),
        )
    finally:  # the watcher keeps the process alive until told to stop
        stop.set()
        watcher.join()
    if out != "-":
        np.save(out, result)
    # Under auto a staged run goes to the engine fastest at staged runs (measured by now).
    staged = engine == "auto" and mode == "exact" and stylizer.models[0].normalisations
    stages = tiling.staged_runner(stylizer.runners[0], stylizer.models[0]).engine if staged else stylizer.engine
    print(json.dumps({"seconds": seconds, "peak_mib": peak_rss_mib(), "before_mib": before,
                      "steps": steps[0], "disk_mib": disk[0] / 2**20, "engine": stylizer.engine,
                      "stages_engine": stages}))


def run_child(model: Path, size: tuple[int, int], engine: str, mode: str = "exact", tile: str = "auto",
              budget: str = BUDGET, out: str = "-") -> dict:
    command = [sys.executable, str(DRIVER), "--child", "large", str(model), str(size[0]), str(size[1]),
               engine, mode, tile, budget, out]
    with tempfile.TemporaryDirectory(prefix="bench-spill-") as spill:
        done = subprocess.run(command, capture_output=True, text=True, timeout=7200, check=False,
                              env={**os.environ, "CVSTYLE_TMP": spill})
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"[:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def size_rows(context: Context, family: str, path: Path) -> list[list]:
    plan = context.plan
    reference_mp = REFERENCE[0] * REFERENCE[1] / 1e6
    forward_rate = forward_seconds(context, family, REFERENCE) / reference_mp
    rows = []
    for size in plan.large_sizes:
        megapixels = size[0] * size[1] / 1e6
        log(f"large {family} {fmt_size(size)}")
        report = run_child(path, size, plan.engine)
        if "error" in report:
            rows.append([family, "-", fmt_size(size), f"{megapixels:.1f}", f"FAILED ({report['error']})"] + ["-"] * 5)
            continue
        rate = report["seconds"] / megapixels
        engine = report["engine"] if report["stages_engine"] == report["engine"] else \
            f"{report['engine']} (stages on {report['stages_engine']})"
        rows.append([family, engine, fmt_size(size), f"{megapixels:.1f}", report["steps"] or "one pass",
                     f"{report['seconds']:.1f}", f"{rate:.2f}", f"{rate / forward_rate:.2f}",
                     f"{report['peak_mib']:.0f}", f"{report['disk_mib']:.0f}"])
    return rows


def exact_against_estimate(context: Context, path: Path) -> str:
    """Rounds of estimate, exact, exact, estimate at 12 MP under the budget, each run its
    own process (a round's ratio moves by 10-20 % on a shared VM; the median of several
    is the figure), then grey levels at 4.3 MP."""
    plan, size = context.plan, context.plan.large_sizes[0]
    rounds: list[dict[str, list[float]]] = []
    for _ in range(plan.ratio_rounds):
        times: dict[str, list[float]] = {"exact": [], "estimate": []}
        for mode in ("estimate", "exact", "exact", "estimate"):
            log(f"large instance_norm {fmt_size(size)} statistics={mode}")
            times[mode].append(run_child(path, size, plan.engine, mode=mode).get("seconds", float("nan")))
        rounds.append(times)
    exact, estimate = (statistics.median(s for times in rounds for s in times[mode]) for mode in ("exact", "estimate"))
    ratios = [sum(times["exact"]) / sum(times["estimate"]) for times in rounds]
    with tempfile.TemporaryDirectory() as folder:
        outputs, engines = {}, {}
        # The untiled pass runs on the engine the stages ran on: engines' float32 passes
        # differ among themselves by more than a staged run differs from its engine's.
        for label, mode, tile, budget in [("exact", "exact", "on", BUDGET), ("estimate", "estimate", "on", BUDGET),
                                          ("one pass", "exact", "off", "-")]:
            log(f"large instance_norm {fmt_size(EQUALITY_SIZE)} {label}")
            engine = engines["exact"] if label == "one pass" else plan.engine
            report = run_child(path, EQUALITY_SIZE, engine, mode, tile, budget, f"{folder}/{mode}{tile}.npy")
            engines[label] = report.get("stages_engine", engine)
            outputs[label] = np.load(f"{folder}/{mode}{tile}.npy").astype(int)
    differences = {label: np.abs(outputs[label] - outputs["one pass"]) for label in ("exact", "estimate")}
    return (
        f"instance_norm at {fmt_size(size)} under --max-memory {BUDGET}, {len(rounds)} round(s) of "
        f"estimate, exact, exact, estimate, each run its own process: exact median {exact:.1f} s, "
        f"estimate median {estimate:.1f} s, ratio {exact / estimate:.2f} (goal <= 1.5; per round "
        f"{', '.join(f'{r:.2f}' for r in ratios)}). Against one untiled pass at {fmt_size(EQUALITY_SIZE)} "
        f"(tile off, no budget, on {engines['one pass']}), tiles forced under the {BUDGET} budget "
        f"(stages on {engines['exact']}): exact max "
        f"{differences['exact'].max()} / mean {differences['exact'].mean():.3f} grey levels, estimate max "
        f"{differences['estimate'].max()} / mean {differences['estimate'].mean():.2f}."
    )


def run(context: Context) -> str:
    plan = context.plan
    rows = [row for family, path in context.models.items() for row in size_rows(context, family, path)]
    header = ["family", "engine", "size", "MP", "progress steps", "seconds", "s/MP",
              "s/MP / 1024x768 forward", "peak RSS MiB", "temporary disk MiB"]
    comparison = exact_against_estimate(context, context.models["instance_norm"]) \
        if "instance_norm" in context.models else ""
    return (
        f"`Stylizer(model{engine_text(plan, api=True)}).stylize(photo, max_memory=\"{BUDGET}\")` with "
        "default (auto) tiling and exact statistics, each case in its own subprocess so that the "
        "peak resident memory (VmHWM) is that case's alone; the photo is made in memory (no "
        "decoding); one call, network set-up included. Temporary disk: the largest total size of "
        "the spilled activation files, polled every 0.2 s. Goals: every case completes, peak RSS "
        "<= 1536 MiB. Progress steps: tiles, or tile passes of the staged run."
        + ("" if len(plan.large_sizes) > 1 else " Quick run: 48 and 100 MP skipped.")
        + "\n\n" + table(header, rows) + ("\n\n" + comparison if comparison else "")
    )
