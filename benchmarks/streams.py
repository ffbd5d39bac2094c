"""Streams: several forwards at once for folders and clips, against one forward at a time.

    python benchmarks/streams.py                 # 40 photos and a 100-frame clip, 3 rounds; ~17 min on 2 quiet cores
    python benchmarks/streams.py --quick         # 12 photos, 24 frames, 1 round
    python benchmarks/streams.py --precision fast --engine onnxruntime

For each fixture family at 640x480, in interleaved rounds (A B C ... then reversed, so
that the VM's drift favours none), on the same engine and precision:

- forward-only, 1 stream: ``Stylizer.stylize`` on photos already decoded, one at a time
  (what a single photo, live and the web app run);
- forward-only, N streams: a ``Stylizer(streams=N)`` on the same photos from N threads
  (the network alone, as folders and clips now run it);
- folder, 1 stream and N streams: ``batch.run_jobs`` on a folder of JPEGs (decode, paint,
  encode, as ``cvstyle apply folder`` runs it; it now takes N);
- clip, 1 stream and N streams: ``stylize_video`` on a 640x480 clip with sound (decode,
  paint, encode, audio copied; ``cvstyle apply clip.mp4`` now takes N).

Printed: each variant's frames per second (median of the rounds) and the ratios the
issues ask for, per round and their median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import cv2

from cvstyle import Stylizer, batch
from cvstyle.engines.streams import throughput_streams
from cvstyle.testing import FAMILIES, write_fixture_model
from cvstyle.video import synthetic
from cvstyle.video.pipeline import stylize_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SIZE = (640, 480)
FPS = 10


def variants(model: Path, folder: Path, engine: str, precision: str, photos: int, frames: int) -> dict:
    streams = throughput_streams()
    single = Stylizer(str(model), engine=engine, precision=precision)
    several = Stylizer(str(model), engine=engine, precision=precision, streams=streams)
    clip = synthetic.pan(cv2.imread(str(SAMPLES / "astronaut.png")), frames, SIZE)
    source = folder / "pan.mp4"
    synthetic.write_clip(source, clip.frames, time_base=Fraction(1, FPS))
    inputs = folder / "photos"
    inputs.mkdir(exist_ok=True)
    for index in range(photos):
        cv2.imwrite(str(inputs / f"{index:03d}.jpg"), clip.frames[index % frames], [cv2.IMWRITE_JPEG_QUALITY, 92])
    sources, _ = batch.expand_inputs([inputs])
    out = folder / "out"
    out.mkdir(exist_ok=True)

    def forward(painter: Stylizer) -> float:
        with ThreadPoolExecutor(painter.streams) as pool:
            return _seconds(lambda: list(pool.map(painter.stylize, clip.frames)))

    def folder_run(painter: Stylizer) -> float:
        jobs = batch.plan_outputs(sources, [painter], out)
        return _seconds(lambda: batch.run_jobs(jobs))

    def clip_run(painter: Stylizer) -> float:
        return _seconds(lambda: stylize_video(source, out / "clip.mp4", painter.stylize, painters=painter.streams))

    for painter in (single, several):
        painter.stylize(clip.frames[0])  # warm
    return {
        "forward-only, 1 stream": (frames, lambda: forward(single)),
        f"forward-only, {streams} streams": (frames, lambda: forward(several)),
        "folder, 1 stream": (photos, lambda: folder_run(single)),
        f"folder, {streams} streams": (photos, lambda: folder_run(several)),
        "clip, 1 stream": (frames, lambda: clip_run(single)),
        f"clip, {streams} streams": (frames, lambda: clip_run(several)),
    }, several.engine, streams


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--precision", default="exact")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--family", choices=FAMILIES, action="append", help="default: both")
    args = parser.parse_args()
    photos, frames, rounds = (12, 24, 1) if args.quick else (40, 100, 3)
    rounds = args.rounds or rounds
    print(machine_line())
    print(f"640x480, {photos} photos, {frames} frames, {rounds} round(s), engine {args.engine}, {args.precision}\n")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for family in args.family or FAMILIES:
            model = write_fixture_model(folder / f"{family}.t7", family)
            runs, engine, streams = variants(model, folder, args.engine, args.precision, photos, frames)
            rates: dict[str, list[float]] = {name: [] for name in runs}
            for round_ in range(rounds):
                order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
                for name in order:
                    count, work = runs[name]
                    rates[name].append(count / work())
            print(f"### {family}, {engine} {args.precision}\n")
            print("| variant | per second, each round | median |\n|---|---|---:|")
            for name, values in rates.items():
                print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
            one, many = "forward-only, 1 stream", f"forward-only, {streams} streams"
            print("\n| ratio | each round | median |\n|---|---|---:|")
            for work in ("folder", "clip"):
                for base in (one, many):
                    ratio = [a / b for a, b in zip(rates[f"{work}, {streams} streams"], rates[base])]
                    print(f"| {work}, {streams} streams / {base} | {', '.join(f'{r:.3f}' for r in ratio)} | "
                          f"{statistics.median(ratio):.3f} |")
            print()


if __name__ == "__main__":
    main()
