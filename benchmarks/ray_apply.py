"""`cvstyle apply` through Ray against local `cvstyle apply` on the same folder.

Makes N JPEGs at 640x480 and the instance_norm fixture model, then runs, interleaved
(ABC ABC ...), each in its own process tree:

  local    cvstyle apply FOLDER
  ray      cvstyle apply FOLDER --ray          (a local Ray started and stopped by the job)
  cluster  cvstyle apply FOLDER --ray ADDRESS  (a one-node Ray started beforehand, as on a cluster,
                                               which has run one untimed job on 4 photos)

For each: wall time, throughput (images/s, Ray's start included), steady throughput (from
the first output written to the last, by the files' times: what a long job sees), and
the peak of the summed proportional set size (PSS: shared pages split between their
users, sampled every second) of every process of the job: the CLI, and for Ray its GCS, raylet, agents and
workers. Prints a Markdown table for docs/benchmarks.md, and the nodes a million 12 MP
photos need overnight.

    PYTHONPATH=. .venv/bin/python benchmarks/ray_apply.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from cvstyle.testing import write_fixture_model

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Seconds between memory samples: a sample reads every process's smaps, whose CPU
# time the Ray runs' dozen processes would otherwise have (docs/benchmarks.md, Ray).
SAMPLE_S = 1.0
OVERNIGHT_S = 10 * 3600
PHOTOS = 1_000_000


def make_photos(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    base = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), (640, 480))
    rng = np.random.default_rng(0)
    for i in range(count):
        noise = cv2.GaussianBlur(rng.integers(0, 255, base.shape, np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"photo_{i:04d}.jpg"), cv2.addWeighted(base, 0.6, noise, 0.4, 0), [cv2.IMWRITE_JPEG_QUALITY, 90])


def process_tree(roots: set[int], marker: str | None = None) -> set[int]:
    """``roots``, the processes whose command line holds ``marker``, and their descendants."""
    parents, found = {}, set(roots)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if marker and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    while more := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= more
    return found


def pss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def run_job(args: list[str], cwd: Path, marker: str | None) -> dict:
    """Run one `cvstyle apply`; its wall time, output times and peak summed PSS."""
    env = {**os.environ, **RAY_ENV}
    start = time.monotonic()
    job = subprocess.Popen(
        [sys.executable, "-c", "from cvstyle.cli import run; run()", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], pss_bytes(process_tree({job.pid}, marker)))
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started_at = time.time() - (time.monotonic() - start)
    job.communicate()
    wall = time.monotonic() - start
    stop.set()
    sampler.join()
    if job.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {job.returncode}")
    # When each output was written (renamed into place with its writing time): a Ray
    # driver hears of a block's outputs only once the whole block is done.
    written = sorted(path.stat().st_mtime - started_at for path in (cwd / "out").iterdir())
    count = len(written)
    steady = (count - 1) / (written[-1] - written[0]) if count > 1 and written[-1] > written[0] else float("nan")
    return {"wall": wall, "rate": count / wall, "steady": steady, "peak": peak[0], "count": count}


def start_cluster(temp: str, port: int) -> None:
    subprocess.run(
        [Path(sys.executable).with_name("ray"), "start", "--head", "--node-ip-address=127.0.0.1",
         f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats"],
        env={**os.environ, **RAY_ENV}, check=True, capture_output=True,
    )


def stop_cluster(temp: str) -> None:
    pids = process_tree(set(), temp) - {os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 photos (default: 200 photos)")
    parser.add_argument("--photos", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    count = options.photos or (40 if options.quick else 200)
    work = Path(tempfile.mkdtemp(prefix="cvstyle-ray-bench-"))
    temp = tempfile.mkdtemp(prefix="cvr", dir="/tmp")  # Ray's socket paths must stay short
    port = 20000 + os.getpid() % 20000
    try:
        make_photos(work / "photos", count)
        model = write_fixture_model(work / "instance_norm_fixture.t7", "instance_norm", seed=2)
        start_cluster(temp, port)
        # A cluster in use has run Ray Data before: the first job on a new cluster also
        # starts Ray Data's cluster-wide actors (statistics, autoscaling coordinator),
        # once per cluster; that first job is run here untimed, on a few photos.
        first = work / "first"
        first.mkdir()
        for photo in sorted((work / "photos").iterdir())[:4]:
            shutil.copy(photo, first)
        run_job(["apply", "first", "-m", str(model), "-o", "out", "--ray", f"127.0.0.1:{port}"], work, temp)
        variants = {
            "local": ([], None),
            "ray (local Ray started by the job)": (["--ray"], None),
            "ray (one-node cluster started beforehand)": (["--ray", f"127.0.0.1:{port}"], temp),
        }
        results: dict[str, list[dict]] = {name: [] for name in variants}
        for round_ in range(options.rounds):
            for name, (extra, marker) in variants.items():
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                result = run_job(["apply", "photos", "-m", str(model), "-o", "out", *extra], work, marker)
                assert result["count"] == count, result
                results[name].append(result)
                print(f"round {round_ + 1} {name}: {result['wall']:.1f} s, steady {result['steady']:.2f} img/s, "
                      f"peak PSS {result['peak'] / 2**20:.0f} MiB", file=sys.stderr)
    finally:
        stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    report(results, count, options.rounds)


def report(results: dict[str, list[dict]], count: int, rounds: int) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"\n{count} JPEGs 640x480, instance_norm fixture, {rounds} interleaved rounds, {os.cpu_count()} CPUs ({cpu}); medians\n")
    print("| run | wall s | images/s | / local | steady images/s | / local | peak PSS MiB (all processes) |")
    print("|---|---|---|---|---|---|---|")
    local = results["local"]
    local_rate = statistics.median(r["rate"] for r in local)
    local_steady = statistics.median(r["steady"] for r in local)
    for name, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        steady = statistics.median(r["steady"] for r in runs)
        print(f"| {name} | {statistics.median(r['wall'] for r in runs):.1f} | {rate:.2f} | {rate / local_rate:.0%} "
              f"| {steady:.2f} | {steady / local_steady:.0%} | {max(r['peak'] for r in runs) / 2**20:.0f} |")
    per_image = 1 / local_steady
    per_12mp = per_image * 12e6 / (640 * 480)
    print(f"\nLocal steady cost: {per_image:.2f} s per 640x480 photo, so ~{per_12mp:.0f} s per 12 MP photo at the "
          f"same cost per pixel on this {os.cpu_count()}-CPU machine; {PHOTOS:,} photos in {OVERNIGHT_S // 3600} h "
          f"need {PHOTOS * per_12mp / OVERNIGHT_S:,.0f} such machines at 100 % of local throughput.")


if __name__ == "__main__":
    main()
