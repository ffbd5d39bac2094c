"""What a Ray job pays before and after its first photo, phase by phase: importing Ray,
starting a local Ray (or connecting to ADDRESS), Ray Data's executions of an actor pool
that does nothing (the first, then later ones in the same process), and shutting down.

    PYTHONPATH=. .venv/bin/python benchmarks/ray_start.py [ADDRESS]
"""

from __future__ import annotations

import logging
import os
import sys
import time

START = time.perf_counter()
os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})


class Passthrough:
    """An actor that returns its batches unchanged: the pool's cost alone."""

    def __call__(self, batch):
        return batch


def main() -> None:
    last = [START]

    def phase(what: str) -> None:
        now = time.perf_counter()
        print(f"{what}: {now - last[0]:.2f} s")
        last[0] = now

    import ray
    import ray.data

    phase("import ray, ray.data")
    address = sys.argv[1] if len(sys.argv) > 1 else "local"
    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    phase(f"ray.init({address!r})")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    for run in ("first", "second", "third"):
        rows = ray.data.from_items([{"x": i} for i in range(8)], override_num_blocks=2)
        list(rows.map_batches(Passthrough, batch_size=4, compute=ray.data.ActorPoolStrategy(size=1)).iter_rows())
        phase(f"{run} Ray Data execution of a one-actor pool")
    ray.shutdown()
    phase("ray.shutdown()")


if __name__ == "__main__":
    main()
