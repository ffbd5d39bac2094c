"""Frame sources: where the pictures come from, and the newest-frame policy.

:class:`VideoFileSource` gives every frame of a file, in order. Cameras and stream URLs
are read by :class:`LatestFrameSource`: a background thread grabs frames and keeps only
the newest, so a slow model drops frames instead of falling behind. :func:`open_source`
picks one from ``0``, a path or a URL.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from ..errors import CvstyleError, ImageError
from ..quiet import quiet_opencv

DEFAULT_FPS = 30.0  # when a camera or file does not say its frame rate
FIRST_FRAME_TIMEOUT = 10.0  # seconds a camera may take to deliver its first frame
STALL_TIMEOUT = 5.0  # seconds without a new frame before a camera counts as gone


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3 uint8 BGR
    index: int  # position in the source's stream: a gap means frames were dropped
    captured: float  # time.monotonic() when it was grabbed


class FrameSource(Protocol):
    name: str
    live: bool  # True: frames keep coming whether or not they are read (may be dropped)
    fps: float  # nominal frame rate
    frame_count: int | None  # total frames when known (files)
    frame_size: tuple[int, int]  # width, height

    def read(self) -> Frame | None:
        """The next frame to process, or None at the end of a file."""

    def close(self) -> None: ...


class VideoFileSource:
    """Every frame of a video file, in order."""

    live = False

    def __init__(self, path: str | os.PathLike):
        self.name = os.fspath(path)
        if not os.path.isfile(self.name):
            raise ImageError(f"{self.name}: no such video file")
        with quiet_opencv():
            self._capture = cv2.VideoCapture(self.name)
        # Some files open but hold no decodable frame: read the first one now.
        ok, image = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise ImageError(f"{self.name}: not a video file OpenCV can read")
        self._pending: np.ndarray | None = image
        self._index = 0
        self.fps = _frame_rate(self._capture)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.frame_size = (image.shape[1], image.shape[0])

    def read(self) -> Frame | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._capture.read()
            if not ok:
                return None
        frame = Frame(image, self._index, time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LatestFrameSource:
    """Frames from ``grab`` (a camera's or stream's read), taken in a background thread.

    Only the newest frame is kept: :meth:`read` returns the most recent frame not yet
    returned, waiting for one if needed, so processing always starts from a fresh
    picture however slow it is. ``grab`` returns None when the device fails; the
    next :meth:`read` then raises :class:`CvstyleError`, as it does when no new frame
    arrives for ``stall_timeout`` seconds.
    """

    live = True

    def __init__(
        self,
        grab: Callable[[], np.ndarray | None],
        name: str,
        fps: float = DEFAULT_FPS,
        release: Callable[[], None] | None = None,
        first_frame_timeout: float = FIRST_FRAME_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ):
        self.name = name
        self.fps = fps
        self.frame_count = None
        self._grab = grab
        self._release = release
        self._stall_timeout = stall_timeout
        self._changed = threading.Condition()
        self._newest: Frame | None = None
        self._failed = False
        self._stopping = False
        self._last_index = -1
        self._thread = threading.Thread(target=self._grab_frames, name=f"grab {name}", daemon=True)
        self._thread.start()
        with self._changed:
            self._changed.wait_for(lambda: self._newest or self._failed, first_frame_timeout)
            first = self._newest
        if first is None:
            self.close()
            raise CvstyleError(f"{name} opened but sent no picture")
        self.frame_size = (first.image.shape[1], first.image.shape[0])

    def _grab_frames(self) -> None:
        index = 0
        while not self._stopping:
            image = self._grab()
            with self._changed:
                if image is None:
                    self._failed = True
                else:
                    self._newest = Frame(image, index, time.monotonic())
                    index += 1
                self._changed.notify_all()
            if image is None:
                return

    def _has_fresh(self) -> bool:
        return self._newest is not None and self._newest.index > self._last_index

    def read(self) -> Frame:
        with self._changed:
            self._changed.wait_for(lambda: self._has_fresh() or self._failed, self._stall_timeout)
            if not self._has_fresh():
                why = "stopped sending frames" if self._failed else (
                    f"sent no new frame for {self._stall_timeout:g} s"
                )
                raise CvstyleError(f"{self.name} {why} (disconnected?)")
            self._last_index = self._newest.index
            return self._newest

    def close(self) -> None:
        self._stopping = True
        # A camera read returns within a frame interval; do not release the device
        # under a read still in progress.
        self._thread.join(timeout=2.0)
        if self._release is not None:
            self._release()

    def __enter__(self) -> LatestFrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_camera(index: int) -> LatestFrameSource:
    with quiet_opencv():  # OpenCV logs each backend it tried; our message says it all
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise CvstyleError(f"no camera at index {index}")
    return _capture_source(capture, f"camera {index}")


def open_stream(url: str) -> LatestFrameSource:
    with quiet_opencv():
        capture = cv2.VideoCapture(url)
    if not capture.isOpened():
        raise CvstyleError(f"cannot open stream {url}")
    return _capture_source(capture, f"stream {url}")


def open_source(spec: str | int) -> VideoFileSource | LatestFrameSource:
    """``0`` (or any integer): a camera; ``scheme://...``: a stream; else a video file."""
    text = str(spec)
    if text.isdigit():
        return open_camera(int(text))
    if "://" in text:
        return open_stream(text)
    return VideoFileSource(text)


def _capture_source(capture: cv2.VideoCapture, name: str) -> LatestFrameSource:
    def grab() -> np.ndarray | None:
        ok, image = capture.read()
        return image if ok else None

    return LatestFrameSource(grab, name, fps=_frame_rate(capture), release=capture.release)


def _frame_rate(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 1 <= fps <= 240 else DEFAULT_FPS
