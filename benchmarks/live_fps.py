"""Live-mode frame rate on the CPU, as a markdown table.

    python benchmarks/live_fps.py [--frames 10] [--sizes 320x240,640x480]

Runs the real ``cvstyle live`` loop (:func:`cvstyle.live.run`: newest-frame grabbing
thread, stylizing, composing) headless on a simulated 30 FPS camera that shows the
bundled cat photo, for the architecture-faithful fixture models of both families
(same layers and shapes as the published checkpoints, so the same work per frame)
and the built-in sketch model. FPS is frames shown per second after the warm-up;
latency is from a frame's capture to its stylized view being ready.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from cvstyle import Stylizer, live
from cvstyle.testing import FAMILIES, write_fixture_model

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"
CAMERA_FPS = 30.0


def simulated_camera(photo: np.ndarray, size: tuple[int, int]) -> live.LatestFrameSource:
    frame = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)

    def grab() -> np.ndarray:
        time.sleep(1.0 / CAMERA_FPS)
        return frame.copy()

    return live.LatestFrameSource(grab, "simulated camera", fps=CAMERA_FPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="frames measured per cell")
    parser.add_argument("--sizes", default="320x240,640x480")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    photo = cv2.imread(str(SAMPLE))
    rows = []
    with tempfile.TemporaryDirectory(prefix="cvstyle-bench-") as folder:
        models = {f"{family} (fixture)": write_fixture_model(Path(folder) / f"{family}.t7", family, seed=1)
                  for family in FAMILIES}
        models["sketch (built-in)"] = "sketch"
        for label, model in models.items():
            painter = live.Painter([Stylizer(model, device="cpu")])
            for width, height in sizes:
                with simulated_camera(photo, (width, height)) as camera:
                    report = live.run(camera, painter, max_frames=args.frames)
                rows.append((label, f"{width}x{height}", report))
    print("| model | size | FPS | latency (ms) |")
    print("|---|---|---:|---:|")
    for label, size, report in rows:
        print(f"| {label} | {size} | {report.fps:.1f} | {report.mean_latency * 1000:.0f} |")
    print(f"\nCPU, cv2 {cv2.__version__}, {cv2.getNumThreads()} threads, "
          f"{args.frames} frames per cell after one warm-up frame, {CAMERA_FPS:g} FPS camera")


if __name__ == "__main__":
    main()
