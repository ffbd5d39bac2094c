"""Where one large photo's time goes: a cProfile of ``Stylizer.stylize`` with tiles
forced, the time spent writing activation maps to RAM and to spilled files, and each
stage's wall, CPU and system CPU time (the system time is mostly page faults).

    PYTHONPATH=. python benchmarks/profile_staged.py [--engine onnxruntime]
        [--statistics exact] [--size 4000x3000] [--max-memory 1.5G] [--model PATH]

Runs in this process, after a small warm-up photo (networks loaded), on the
instance_norm fixture unless ``--model`` names another. docs/benchmarks.md, *Where a
staged run's time goes*, has the figures.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import photo  # noqa: E402

from cvstyle import Stylizer  # noqa: E402
from cvstyle.testing import write_fixture_model  # noqa: E402
from cvstyle.tiling import activations, staged  # noqa: E402


def timed_writes(seconds: dict, sizes: dict) -> None:
    """Wrap ActivationStore.write to add up its time and bytes per kind of map."""
    write = activations.ActivationStore.write

    def counted(self, name, rows, cols, block):
        kind = "RAM" if name in self.arrays else "file"
        start = time.perf_counter()
        result = write(self, name, rows, cols, block)
        seconds[kind] += time.perf_counter() - start
        sizes[kind] += block.nbytes
        return result

    activations.ActivationStore.write = counted


def timed_stages(rows: list) -> None:
    """Wrap each staged run's stages to note (stage, wall, CPU, system CPU) seconds."""
    stage = staged._Run.stage

    def clocks() -> tuple[float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_stime

    def counted(self, index, progress):
        before = clocks()
        stage(self, index, progress)
        rows.append((index, *(after - first for after, first in zip(clocks(), before))))

    staged._Run.stage = counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--statistics", default="exact", choices=["exact", "estimate"])
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--max-memory", default="1.5G")
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or write_fixture_model(Path(folder) / "instance_norm.t7", "instance_norm", seed=1)
        painter = Stylizer(str(model), device="cpu", engine=args.engine)
        image = photo((width, height))
        painter.stylize(image[:256, :256])
        seconds: dict = collections.defaultdict(float)
        sizes: dict = collections.defaultdict(int)
        timed_writes(seconds, sizes)
        stages: list = []
        timed_stages(stages)
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        painter.stylize(image, statistics=args.statistics, tile="on", max_memory=args.max_memory)
        profile.disable()
        print(f"{args.engine} {args.statistics} {args.size} under {args.max_memory}: "
              f"{time.perf_counter() - start:.1f} s (profiled)")
        for kind in seconds:
            print(f"writes to {kind}: {seconds[kind]:.2f} s for {sizes[kind] / 1e9:.2f} GB")
        if stages:
            print("stage  wall s  CPU s  system CPU s")
            for index, wall, cpu, system in stages:
                print(f"{index:5d} {wall:7.2f} {cpu:6.2f} {system:13.2f}")
            print(f"  all {sum(row[1] for row in stages):7.2f} {sum(row[2] for row in stages):6.2f} "
                  f"{sum(row[3] for row in stages):13.2f}")
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
