"""Video figures as markdown: clip throughput against forward-only, flicker with and
without --stabilize, and what stabilising costs.

    python benchmarks/video.py            # 640x480, 10 s at 10 fps (100 frames), 3 repetitions; ~10 min on 2 quiet cores
    python benchmarks/video.py --quick    # 3 s (30 frames), one repetition
    python benchmarks/video.py --only 3   # some sections only

1. Throughput: a generated 640x480 clip (a pan over samples/astronaut.png, with a sine
   tone) through ``cvstyle.video.pipeline.stylize_video`` (decode, paint, encode, audio
   copied) against ``Stylizer.stylize`` alone on the same, already decoded frames
   (forward-only), for both fixture families on the default engine, both as ``cvstyle
   apply`` runs a clip: on the throughput streams, as many frames at once
   (``benchmarks/streams.py`` also compares with one stream). The two are
   interleaved (ABAB), each repetition giving one ratio of speeds (forward-only time
   over clip time), in wall time and in the process's CPU time: on a machine shared
   with other work, the CPU ratio says what the pipeline itself adds.
2. Flicker (``cvstyle.video.synthetic.flicker``: mean absolute difference between
   consecutive painted frames after the clips' true motion) on the tests' generated
   clips at 320x240, painted frame by frame and with the stabiliser.
   Beside it, the CPU time decoding and encoding take per frame without the network.
3. Stabiliser cost per frame at 640x480: motion estimation and blending alone (median
   over the clip's frames), and the whole clip with and without ``stabilized=True``
   (interleaved).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import cv2

from cvstyle import Stylizer
from cvstyle.engines.streams import throughput_streams
from cvstyle.testing import FAMILIES, write_fixture_model
from cvstyle.video import stabilize, synthetic
from cvstyle.video.io import PRESET, DecodedFrame, VideoReader, VideoWriter
from cvstyle.video.pipeline import stylize_video

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
FPS = 10


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def throughput(folder: Path, models: dict[str, Path], seconds: int, repeats: int) -> list[str]:
    clip = synthetic.pan(cv2.imread(str(SAMPLES / "astronaut.png")), seconds * FPS, (640, 480))
    source = folder / "pan.mp4"
    synthetic.write_clip(source, clip.frames, time_base=Fraction(1, FPS))
    rows = [
        "| family | engine | frames | forward-only: wall s (CPU s) | clip: wall s (CPU s) | speed ratio, wall: each (median) | speed ratio, CPU: each (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for family, model in models.items():
        painter = Stylizer(str(model), streams=throughput_streams())
        painter.stylize(clip.frames[0])  # warm-up
        forward, whole = [], []  # (wall, CPU) seconds per repetition
        with ThreadPoolExecutor(painter.streams) as painting:
            for _ in range(repeats):
                forward.append(_timed(lambda: list(painting.map(painter.stylize, clip.frames))))
                whole.append(_timed(
                    lambda: stylize_video(source, folder / "out.mp4", painter.stylize, painters=painter.streams)
                ))
        wall = _ratios([f[0] / w[0] for f, w in zip(forward, whole)])
        cpu = _ratios([f[1] / w[1] for f, w in zip(forward, whole)])
        rows.append(
            f"| {family} | {painter.engine} | {len(clip.frames)} | {_median(forward)} | {_median(whole)} | {wall} | {cpu} |"
        )
    return rows


def _timed(work) -> tuple[float, float]:
    """Wall and process CPU seconds (all threads) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def _ratios(ratios: list[float]) -> str:
    """Each repetition's ratio, and their median (the VM's speed drifts between them)."""
    return f"{', '.join(f'{r:.3f}' for r in ratios)} ({statistics.median(ratios):.3f})"


def _median(runs: list[tuple[float, float]]) -> str:
    return f"{statistics.median(r[0] for r in runs):.1f} ({statistics.median(r[1] for r in runs):.1f})"


def codec_cost(folder: Path) -> list[str]:
    """CPU time (all threads) of decoding and of encoding one 640x480 frame, no network:
    what the pipeline adds to the network's own work."""
    clip = synthetic.pan(cv2.imread(str(SAMPLES / "astronaut.png")), 40, (640, 480))
    source = folder / "codec.mp4"
    synthetic.write_clip(source, clip.frames, time_base=Fraction(1, FPS))
    start = time.process_time()
    reader = VideoReader(source)
    items = list(reader.read())
    decoded = time.process_time()
    writer = VideoWriter(
        folder / "codec_out.mp4", "mp4", (640, 480), reader.time_base, reader.frame_rate,
        reader.colour, reader.orientation, reader.audio, 95,
    )
    for item in items:
        if isinstance(item, DecodedFrame):
            writer.write_frame(item.bgr, item.pts, item.time_base)
        else:
            writer.write_audio(item)
    writer.finish()
    encoded = time.process_time()
    reader.close()
    frames = reader.frames_read
    return [
        f"- decoding and converting to BGR: {(decoded - start) / frames * 1e3:.1f} ms of CPU per 640x480 frame; "
        f"converting to yuv420p and encoding (x264 {PRESET}, CRF 18): {(encoded - decoded) / frames * 1e3:.1f} ms"
    ]


def flicker(models: dict[str, Path]) -> list[str]:
    photo, other = cv2.imread(str(SAMPLES / "astronaut.png")), cv2.imread(str(SAMPLES / "coffee.png"))
    size = (320, 240)
    clips = {
        "pan, 1 px/frame": synthetic.pan(photo, 30, size),
        "still, noise sigma 6": synthetic.noisy_still(other, 30, size),
        "pan, cut, noisy still": synthetic.pan(photo, 15, size) + synthetic.noisy_still(other, 15, size),
    }
    rows = ["| model | clip | frame by frame | --stabilize | ratio |", "|---|---|---:|---:|---:|"]
    for name, model in {"sketch": "sketch", **{family: str(path) for family, path in models.items()}}.items():
        painter = Stylizer(model)
        for clip_name, clip in clips.items():
            painted = [painter.stylize(frame) for frame in clip.frames]
            stabilizer = stabilize.Stabilizer()
            steady = [stabilizer(original, frame) for original, frame in zip(clip.frames, painted)]
            before, after = synthetic.flicker(painted, clip.motions), synthetic.flicker(steady, clip.motions)
            rows.append(f"| {name} | {clip_name} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    return rows


def stabiliser_cost(folder: Path, model: Path, seconds: int, repeats: int) -> list[str]:
    clip = synthetic.pan(cv2.imread(str(SAMPLES / "astronaut.png")), seconds * FPS, (640, 480))
    estimator, estimate, mix = stabilize.MotionEstimator(), [], []
    previous = None
    for frame in clip.frames:
        start = time.perf_counter()
        motion = estimator(frame)
        middle = time.perf_counter()
        previous = stabilize.blend(motion, previous, frame)
        estimate.append(middle - start)
        mix.append(time.perf_counter() - middle)
    source = folder / "pan.mp4"
    synthetic.write_clip(source, clip.frames, time_base=Fraction(1, FPS))
    painter = Stylizer(str(model))
    plain, steady = [], []  # (wall, CPU) seconds per repetition
    for _ in range(repeats):
        for flag, runs in ((False, plain), (True, steady)):
            runs.append(_timed(lambda: stylize_video(source, folder / "out.mp4", painter.stylize, stabilized=flag)))
    frames = len(clip.frames)

    def per_frame(runs: list[tuple[float, float]]) -> str:
        wall, cpu = (statistics.median(r[i] for r in runs) / frames * 1e3 for i in (0, 1))
        return f"{wall:.0f} ms wall ({cpu:.0f} ms CPU)"

    return [
        f"- motion estimation {statistics.median(estimate) * 1e3:.1f} ms, blending {statistics.median(mix) * 1e3:.1f} ms "
        f"per 640x480 frame (median of {frames}, one thread each, as the pipeline runs them)",
        f"- whole clip, {model.stem}, per frame: {per_frame(plain)} without, {per_frame(steady)} with "
        f"--stabilize (medians of {repeats}, interleaved)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s clips, one repetition")
    parser.add_argument("--only", default="1,2,3", help="sections to run, e.g. 3")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 3, --quick 1)")
    args = parser.parse_args()
    sections = {int(part) for part in args.only.split(",")}
    seconds, repeats = (3, 1) if args.quick else (10, 3)
    repeats = args.repeats or repeats
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="cvstyle-video-") as name:
        folder = Path(name)
        models = {family: write_fixture_model(folder / f"{family}.t7", family, seed=1) for family in FAMILIES}
        if 1 in sections:
            print(f"\nThroughput, 640x480, {seconds} s at {FPS} fps:\n")
            print("\n".join(throughput(folder, models, seconds, repeats)))
            print()
            print("\n".join(codec_cost(folder)))
        if 2 in sections:
            print("\nFlicker (grey levels), 320x240, 30 frames:\n")
            print("\n".join(flicker(models)))
        if 3 in sections:
            print("\nStabiliser cost:\n")
            print("\n".join(stabiliser_cost(folder, models["instance_norm"], seconds, repeats)))
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
