"""Milliseconds per frame of each engine, for both model families, as a markdown table.

    python benchmarks/engines.py [--repeat 5] [--sizes 640x480,1024x768]

Runs on the architecture-faithful fixture models (same layers and shapes as the
published checkpoints, so the same work per frame). Every engine/device pair this
machine offers is measured: OpenCV and ONNX Runtime on the CPU always, ONNX Runtime's
CUDA (and TensorRT FP16) providers and OpenCV's CUDA backend where present. Each cell
is the median of ``--repeat`` frames after one warm-up frame, pre- and
post-processing included; configurations are interleaved frame by frame so that load
from other processes affects them alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from cvstyle import engines
from cvstyle.errors import CvstyleError
from cvstyle.testing import FAMILIES, write_fixture_model
from cvstyle.runner import cuda_available

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"


def configurations() -> list[tuple[str, str]]:
    """(engine, device) pairs this machine can run."""
    pairs = [("opencv", "cpu"), ("onnxruntime", "cpu")]
    if cuda_available():
        pairs.append(("opencv", "cuda"))
    providers = ort_engine.available_providers()
    if engines.CUDA in providers:
        pairs.append(("onnxruntime", "cuda"))
    if engines.TENSORRT in providers:
        pairs.append(("onnxruntime", "cuda-fp16"))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="640x480,1024x768")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    photo = cv2.imread(str(SAMPLE))
    pairs = configurations()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cvstyle-bench-") as folder:
        for family in FAMILIES:
            model = write_fixture_model(Path(folder) / f"{family}.t7", family, seed=1)
            runners = {}
            for engine, device in pairs:
                try:
                    runners[engine, device] = engines.load_runner(model, engine, device)
                except CvstyleError as error:
                    print(f"skipping {engine} on {device}: {error}")
            for width, height in sizes:
                frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
                times: dict[tuple[str, str], list[float]] = {pair: [] for pair in runners}
                for run in runners.values():
                    run(frame)  # warm-up: allocations, provider start-up
                for _ in range(args.repeat):
                    for pair, run in runners.items():
                        start = time.perf_counter()
                        run(frame)
                        times[pair].append(time.perf_counter() - start)
                medians = {pair: 1000 * statistics.median(t) for pair, t in times.items()}
                rows.append((family, f"{width}x{height}", medians))
    header = [f"{engine} {device}" for engine, device in pairs]
    print(f"| family | size | {' | '.join(header)} |")
    print(f"|---|---|{'---:|' * len(header)}")
    for family, size, medians in rows:
        cells = [f"{medians[pair]:.0f}" if pair in medians else "-" for pair in pairs]
        print(f"| {family} | {size} | {' | '.join(cells)} |")
    print(f"\nms per frame, median of {args.repeat}; cv2 {cv2.__version__}, "
          f"onnxruntime providers: {', '.join(ort_engine.available_providers()) or 'none'}")


if __name__ == "__main__":
    main()
