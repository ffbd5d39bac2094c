"""Section: live mode's frame rate (``cvstyle.live.run``, no window), unpaced on
in-memory frames against forward-only, and behind a simulated 30 FPS camera."""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from cvstyle import Stylizer, live

from harness import Context, fmt_size, log, ms, photo, table, timed
from project import engine_argument, stylizer_runner

TITLE = "Live FPS"
CAMERA_FPS = 30.0
BUILTIN = {"sketch (built-in)": "sketch"}


class MemorySource:
    """In-memory frames for :func:`cvstyle.live.run`, as a video file would give them."""

    live = False
    fps = 1000.0  # no pacing: there is no window anyway

    def __init__(self, frames: list[np.ndarray]):
        self.frames = frames
        self.index = 0
        self.name = "memory"
        self.frame_count = len(frames)
        self.frame_size = (frames[0].shape[1], frames[0].shape[0])

    def read(self) -> live.Frame | None:
        if self.index >= len(self.frames):
            return None
        frame = live.Frame(self.frames[self.index], self.index, time.monotonic())
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def simulated_camera(frame: np.ndarray) -> live.LatestFrameSource:
    """A camera at ``CAMERA_FPS`` that keeps showing ``frame``: the real grabbing thread
    that keeps only the newest frame."""

    def grab() -> np.ndarray:
        time.sleep(1.0 / CAMERA_FPS)
        return frame.copy()

    return live.LatestFrameSource(grab, "simulated camera", fps=CAMERA_FPS)


def quiet(message: str) -> None:
    """live.run's notices have no place in the document."""


def case_row(context: Context, label: str, stylizer: Stylizer, size: tuple[int, int]) -> list:
    frame_count = context.plan.live_frames
    base = photo(size)
    frames = [np.roll(base, 8 * i, axis=1) for i in range(frame_count)]
    runner = stylizer_runner(stylizer)
    blobs = [runner.preprocess(frame) for frame in frames]
    painter = live.Painter([stylizer])
    live_seconds, latencies, forward_total = 0.0, [], 0.0
    for _ in range(2):  # two rounds of live loop / forward-only loop, interleaved
        report = live.run(MemorySource(frames), painter, max_frames=frame_count, notify=quiet)
        live_seconds += report.frames / report.fps
        latencies.append(report.mean_latency)
        forward_total += timed(lambda: [runner.infer(blob) for blob in blobs])[0]
    with simulated_camera(base) as camera:
        camera_report = live.run(camera, painter, max_frames=frame_count, notify=quiet)
    fps = 2 * frame_count / live_seconds
    forward_fps = 2 * frame_count / forward_total
    return [
        label, stylizer.engine, fmt_size(size), f"{fps:.2f}", ms(statistics.mean(latencies)),
        f"{forward_fps:.2f}", f"{fps / forward_fps * 100:.0f} %",
        f"{camera_report.fps:.2f}", ms(camera_report.mean_latency),
    ]


def run(context: Context) -> str:
    plan, rows = context.plan, []
    for label, model in {**context.models, **BUILTIN}.items():
        stylizer = Stylizer(str(model), device="cpu", **engine_argument(plan))
        for size in plan.live_sizes:
            log(f"live {label} {fmt_size(size)}")
            rows.append(case_row(context, label, stylizer, size))
    header = ["model", "engine", "size", "live FPS", "mean latency ms", "forward-only FPS",
              "live / forward-only", f"{CAMERA_FPS:g} FPS camera: FPS", "camera: mean latency ms"]
    return (
        f"`cvstyle.live.run` (the loop behind `cvstyle live`, its warm-up outside the timing) with no "
        f"window, on {plan.live_frames} in-memory frames per case, twice, each time followed by "
        "forward-only (the same network's infer on the frames' prepared blobs) for the reference "
        f"FPS; then {plan.live_frames} frames from a simulated {CAMERA_FPS:g} FPS camera (the "
        "newest-frame grabbing thread `cvstyle live` uses for cameras and streams): FPS is frames shown per second, "
        f"latency from a frame's capture to its stylized view. OpenCV threads: {cv2.getNumThreads()}.\n\n"
        + table(header, rows)
    )
