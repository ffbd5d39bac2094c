"""OpenVINO's any-size model against the model it compiles for a shape that comes back,
with exact ONNX Runtime for scale: forward ms, interleaved call by call.

    PYTHONPATH=. .venv/bin/python benchmarks/openvino_shapes.py [--repeat 9]

Both fixture families at 640x480 and 1024x768, float32 (``exact``), the project's own
networks (``cvstyle.engines.build_network``: ``faster_graph`` and the engines' settings),
one stream. Each cell is the median of ``--repeat`` forwards after two warm-ups; wall
time and process CPU time (both threads), which another tenant's load on a shared VM
disturbs less. Also prints the largest grey-level difference between the two OpenVINO
models' outputs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cvstyle import engines
from cvstyle.model import open_model
from cvstyle.runner import INPUT
from cvstyle.testing import write_fixture_model

from machine import machine_line

SIZES = ((640, 480), (1024, 768))
FAMILIES = ("eccv16", "instance_norm")


def timed(call, blob: np.ndarray) -> tuple[float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    call(blob)
    return 1000 * (time.perf_counter() - start), 1000 * (time.process_time() - start_cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(machine_line() + "\n")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for family in FAMILIES:
            graph = open_model(write_fixture_model(Path(folder) / f"{family}.t7", family, seed=1)).graph
            openvino = engines.build_network(graph, "openvino", "cpu", family)
            onnxruntime = engines.build_network(graph, "onnxruntime", "cpu", family)
            for width, height in SIZES:
                blob = np.random.default_rng(0).normal(0.0, 60.0, (1, 3, height, width)).astype(np.float32)
                calls = {
                    "onnxruntime": lambda b: onnxruntime.run({INPUT: b}),
                    "openvino, any-size model": lambda b: openvino.any_size.infer({openvino.input_names[0]: b}),
                    "openvino, model for the shape": lambda b: openvino.run({INPUT: b}),
                }
                for _ in range(engines.WARM_UP_FORWARDS):  # the last compiles the model for the shape
                    outputs = {name: call(blob) for name, call in calls.items()}
                assert openvino.shape_models, "no model was compiled for the shape"
                any_size = outputs["openvino, any-size model"][0]
                fixed = outputs["openvino, model for the shape"][0]
                grey = float(np.abs(any_size - fixed).max())
                times = {name: [] for name in calls}
                for _ in range(args.repeat):
                    for name, call in calls.items():
                        times[name].append(timed(call, blob))
                base_wall = statistics.median(wall for wall, _ in times["onnxruntime"])
                base_cpu = statistics.median(cpu for _, cpu in times["onnxruntime"])
                for name, measured in times.items():
                    wall = statistics.median(w for w, _ in measured)
                    cpu = statistics.median(c for _, c in measured)
                    rows.append(f"| {family} | {width}x{height} | {name} | {wall:.0f} | {cpu:.0f} | "
                                f"{base_wall / wall:.2f} | {base_cpu / cpu:.2f} | {grey if 'shape' in name else ''} |")
                print(f"{family} {width}x{height} done", file=sys.stderr)
    print("| family | size | run | ms | CPU ms | x ONNX Runtime | x ONNX Runtime (CPU time) | largest output difference from the any-size model (grey levels, before rounding) |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
