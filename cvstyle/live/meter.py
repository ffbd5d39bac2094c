"""Measuring the live loop: frames shown per second, frames dropped and latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .sources import Frame


@dataclass(frozen=True)
class RunReport:
    frames: int  # frames stylized and shown/recorded
    dropped: int  # frames a live source produced that were never processed
    fps: float  # mean rate of frames shown
    seconds: float  # the whole run, warm-up excluded
    mean_latency: float  # seconds from capture to the stylized view
    max_latency: float
    interrupted: bool  # stopped by Ctrl-C
    live: bool = False  # the source was a camera or stream (newest frame first)
    recorded: Path | None = None  # the video file stylize_stream wrote, if any


class Meter:
    """Frames shown per second and capture-to-display latency: smoothed for the
    overlay, and totals for the :class:`RunReport`."""

    SMOOTHING = 0.9

    def __init__(self) -> None:
        self.frames = 0
        self.dropped = 0
        self.fps = 0.0
        self.latency = 0.0
        self.max_latency = 0.0
        self.total_latency = 0.0
        self.started = time.monotonic()
        self._first_time: float | None = None
        self._last_time: float | None = None
        self._last_index: int | None = None

    def update(self, frame: Frame, now: float) -> None:
        latency = now - frame.captured
        self.latency = latency if not self.frames else _smooth(self.latency, latency)
        self.max_latency = max(self.max_latency, latency)
        self.total_latency += latency
        if self._last_time is None:
            self._first_time = now
        elif now > self._last_time:
            rate = 1.0 / (now - self._last_time)
            self.fps = rate if self.frames == 1 else _smooth(self.fps, rate)
        if self._last_index is not None:
            self.dropped += max(0, frame.index - self._last_index - 1)
        self._last_time, self._last_index = now, frame.index
        self.frames += 1

    def report(self, interrupted: bool = False, live: bool = False) -> RunReport:
        span = (self._last_time or 0.0) - (self._first_time or 0.0)
        return RunReport(
            frames=self.frames,
            dropped=self.dropped,
            # Intervals between frames shown: the rate, without the wait for the first.
            fps=(self.frames - 1) / span if span > 0 else 0.0,
            seconds=time.monotonic() - self.started,
            mean_latency=self.total_latency / self.frames if self.frames else 0.0,
            max_latency=self.max_latency,
            interrupted=interrupted,
            live=live,
        )


def _smooth(average: float, value: float) -> float:
    return Meter.SMOOTHING * average + (1 - Meter.SMOOTHING) * value
