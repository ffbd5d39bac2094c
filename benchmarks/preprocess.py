"""The runner's pre-processing against cv2.dnn.blobFromImage, which it replaced.

    PYTHONPATH=. python benchmarks/preprocess.py

For each size, a random BGR photo through ``StyleRunner.preprocess`` (per plane,
cv2.subtract of the mean into the blob) and through blobFromImage with the same mean,
in blocks of 15 consecutive calls (as frames follow each other), the blocks alternated
three times: the median milliseconds per call, and whether the blobs are identical.
Both allocate their blob afresh at each call, and on a VM the page faults of fresh
memory can take longer than the arithmetic.
docs/benchmarks.md, *Tenth session*, has the figures.
"""

import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cvstyle.runner import VGG, StyleRunner, pad_to_network  # noqa: E402

SIZES = [(480, 640), (600, 600), (584, 584), (768, 1024), (720, 1280), (1080, 1920)]
REPEATS = 15
BLOCKS = 3


def main() -> None:
    runner = StyleRunner(SimpleNamespace(streams=1), VGG)  # pre-processing needs no engine
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    print("| size | blobFromImage ms | preprocess ms | identical |\n|---|---|---|---|")
    for height, width in SIZES:
        bgr = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
        calls = {
            "blob": lambda: cv2.dnn.blobFromImage(pad_to_network(bgr), 1.0, None, VGG.mean_bgr, swapRB=False, crop=False),
            "runner": lambda: runner.preprocess(bgr),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(BLOCKS):
            for name, call in calls.items():
                for _ in range(REPEATS):
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
        same = np.array_equal(calls["blob"](), calls["runner"]())
        blob, ours = (statistics.median(times[name]) * 1000 for name in calls)
        print(f"| {width}x{height} | {blob:.2f} | {ours:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
