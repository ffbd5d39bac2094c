"""Where one large photo's time goes: a cProfile of ``Stylizer.stylize`` with tiles
forced, and the time spent writing activation maps to RAM and to spilled files.

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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import photo  # noqa: E402

from cvstyle import Stylizer  # noqa: E402
from cvstyle.testing import write_fixture_model  # noqa: E402
from cvstyle.tiling import activations  # noqa: E402


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
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        painter.stylize(image, statistics=args.statistics, tile="on", max_memory=args.max_memory)
        profile.disable()
        print(f"{args.engine} {args.statistics} {args.size} under {args.max_memory}: "
              f"{time.perf_counter() - start:.1f} s (profiled)")
        for kind in seconds:
            print(f"writes to {kind}: {seconds[kind]:.2f} s for {sizes[kind] / 1e9:.2f} GB")
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
