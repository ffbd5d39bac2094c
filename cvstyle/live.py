"""Live stylization of a camera, a stream or a video file, in pieces usable from Python.

* Frame sources: :class:`VideoFileSource` (every frame, in order) and
  :class:`LatestFrameSource` (cameras and stream URLs: a background thread grabs frames
  and keeps only the newest, so a slow model drops frames instead of falling behind);
  :func:`open_source` picks one from ``0``, a path or a URL.
* Stylizing: :class:`Painter` runs one or more Stylizers at the processing size.
* Composing: :func:`compose` tiles views in a grid; :func:`draw_overlay` adds the FPS,
  latency, tile labels and key help shown in the window (never recorded).
* Sinks: :class:`Window` (``cv2.imshow``) and :class:`VideoRecorder` (``cv2.VideoWriter``
  writing to a temporary name, renamed when closed, so it is playable after errors too).
* Keys: :func:`handle_key` is a pure state machine over :class:`LiveState`.

:func:`run` joins them into the loop behind ``cvstyle live``.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .errors import CvstyleError, ImageError
from .imageio import Picture, quiet_opencv, write_image
from .stylizer import fit_longer_side

DEFAULT_FPS = 30.0  # when a camera or file does not say its frame rate
FIRST_FRAME_TIMEOUT = 10.0  # seconds a camera may take to deliver its first frame
STALL_TIMEOUT = 5.0  # seconds without a new frame before a camera counts as gone
HELP_SECONDS = 5.0  # how long the key help stays on screen
STRENGTH_STEP = 0.1
KEY_ESC = 27
NO_KEY = -1
# Container and codec by output extension: ones the FFmpeg in the OpenCV wheels writes.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
# Shown by ``cvstyle live --help`` and drawn on screen at start.
KEY_HELP = (
    ("n / p", "next / previous style (all styles, then each alone)"),
    ("space", "pause / resume"),
    ("s", "save a snapshot PNG in the current directory"),
    ("o", "side by side with the original on / off"),
    ("c", "keep the photo's colours on / off"),
    ("+ / -", f"strength up / down by {STRENGTH_STEP}"),
    ("h", "show this help again"),
    ("q / Esc", "quit"),
)


# ---------------------------------------------------------------- frame sources


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


# ---------------------------------------------------------------- stylizing


class StylizerLike(Protocol):
    name: str

    def stylize(
        self, image: np.ndarray, *, preserve_colors: bool = False, strength: float = 1.0
    ) -> np.ndarray: ...


class Painter:
    """One or more stylizers applied to each frame at the processing size.

    ``size`` is the processing size's longer side (None: the frame's own size); the
    frame is resized once here so that the original shown beside the styles matches.
    """

    def __init__(self, stylizers: Sequence[StylizerLike], size: int | None = None):
        if not stylizers:
            raise CvstyleError("live mode needs at least one model")
        self.stylizers = list(stylizers)
        self.size = size

    @property
    def names(self) -> list[str]:
        return [stylizer.name for stylizer in self.stylizers]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return fit_longer_side(image, self.size) if self.size else image

    def paint(
        self,
        image: np.ndarray,
        styles: Sequence[int] | None = None,
        preserve_colors: bool = False,
        strength: float = 1.0,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The frame at the processing size, and its stylized versions (``styles``:
        indexes of the stylizers to run, default all)."""
        original = self.prepare(image)
        chosen = range(len(self.stylizers)) if styles is None else styles
        painted = [
            self.stylizers[i].stylize(original, preserve_colors=preserve_colors, strength=strength)
            for i in chosen
        ]
        return original, painted

    def warm_up(self, frame_size: tuple[int, int]) -> None:
        """One forward pass per style at the stream's size, so that loading and memory
        allocation are not counted in the first frame's latency."""
        width, height = frame_size
        self.paint(np.zeros((height, width, 3), np.uint8))


# ---------------------------------------------------------------- composing


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns for ``count`` tiles: as square as possible, wider than tall."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def compose(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """Tiles of one size in a grid (row by row); empty cells are black."""
    rows, columns = grid_shape(len(tiles))
    height, width = tiles[0].shape[:2]
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    for i, tile in enumerate(tiles):
        row, column = divmod(i, columns)
        canvas[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile
    return canvas


def draw_overlay(
    view: np.ndarray,
    status: str,
    labels: Sequence[str] = (),
    show_help: bool = False,
) -> np.ndarray:
    """A copy of ``view`` with the status line at the top, each grid tile's label at
    its bottom left and, if asked, the key help."""
    shown = view.copy()
    scale = max(0.35, min(0.7, view.shape[1] / 1400))
    _text(shown, [[status]], (6, 6), scale)
    if labels:
        rows, columns = grid_shape(len(labels))
        tile_h, tile_w = view.shape[0] // rows, view.shape[1] // columns
        for i, label in enumerate(labels):
            row, column = divmod(i, columns)
            _text(shown, [[label]], (column * tile_w + 6, (row + 1) * tile_h - 6), scale, bottom=True)
    if show_help:
        _text(shown, KEY_HELP, (6, 6 + int(30 * scale) + 6), scale)
    return shown


def _text(
    image: np.ndarray, rows: Sequence[Sequence[str]], origin: tuple[int, int], scale: float,
    bottom: bool = False,
) -> None:
    """White text in aligned columns on a dark box, readable over any painting."""
    font, thickness, gap = cv2.FONT_HERSHEY_SIMPLEX, 1, int(20 * scale)
    line_h = int(28 * scale) + 4
    widths = [
        max(cv2.getTextSize(row[c], font, scale, thickness)[0][0] for row in rows)
        for c in range(len(rows[0]))
    ]
    x, y = origin
    top = y - line_h * len(rows) if bottom else y
    right = x + sum(widths) + gap * (len(widths) - 1)
    cv2.rectangle(image, (x - 4, top - 2), (right + 4, top + line_h * len(rows) + 2), (0, 0, 0), -1)
    for i, row in enumerate(rows):
        baseline = top + line_h * (i + 1) - 4
        column_x = x
        for text, width in zip(row, widths):
            cv2.putText(image, text, (column_x, baseline), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
            column_x += width + gap


# ---------------------------------------------------------------- sinks


class Window:
    """The on-screen view, with keyboard input."""

    def __init__(self, title: str = "cvstyle live"):
        # Qt aborts the whole process when there is no display: check first.
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise CvstyleError("no display to open a window on: use --no-window with --output")
        self.title = title
        self._size: tuple[int, int] | None = None
        try:
            # Resizable, aspect kept, without the Qt toolbar (whose keys would clash).
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise CvstyleError(f"cannot open a window ({exc.err}): use --no-window") from None

    def show(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if size != self._size:  # one pixel per pixel whenever the layout changes
            cv2.resizeWindow(self.title, *size)
            self._size = size
        cv2.imshow(self.title, image)

    def poll_key(self, wait_ms: int = 1) -> int:
        """The key pressed (as ``cv2.waitKey`` gives it), :data:`NO_KEY` if none;
        closing the window reads as Esc."""
        key = cv2.waitKey(max(1, wait_ms))
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return KEY_ESC
        return key

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # lets the GUI backend process the close


class VideoRecorder:
    """Writes frames to a video file whose extension picks the codec (see :data:`CODECS`).

    The file is written under a temporary name in the same folder and renamed when
    closed, with whatever frames it has, so a stopped or failed run still leaves a
    playable file and never a truncated one under the final name. Frames of another
    size than the first are letterboxed into it.

    ``paced``: frames are timestamped (``write(image, at=time)``) and repeated or
    skipped so the file plays in real time at ``fps`` however fast they came (live
    sources, whose processing rate is not the camera's).
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS, paced: bool = False):
        self.path = check_video_path(path)
        extension = self.path.suffix.lower()
        folder = self.path.parent
        self.fps = fps
        self.paced = paced
        self.frames = 0
        self.size: tuple[int, int] | None = None
        # The extension stays last: FFmpeg picks the container from it.
        self._temp = folder / f".{self.path.stem}.{uuid.uuid4().hex[:8]}.part{extension}"
        self._writer: cv2.VideoWriter | None = None
        self._start = 0.0

    def write(self, image: np.ndarray, at: float | None = None) -> None:
        if self._writer is None:
            self._open(image, at)
        if image.shape[1::-1] != self.size:
            image = letterbox(image, self.size)
        copies = 1
        if self.paced and at is not None:
            copies = int((at - self._start) * self.fps) + 1 - self.frames
        for _ in range(copies):
            self._writer.write(image)
        self.frames += max(copies, 0)

    def _open(self, image: np.ndarray, at: float | None) -> None:
        self.size = (image.shape[1], image.shape[0])
        fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
        with quiet_opencv():
            writer = cv2.VideoWriter(str(self._temp), fourcc, self.fps, self.size)
        if not writer.isOpened():
            self._remove_temp()
            width, height = self.size
            raise ImageError(f"{self.path}: OpenCV cannot write {width}x{height} video here")
        self._writer = writer
        self._start = time.monotonic() if at is None else at

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None (and no file) if no frame came."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        if not self.frames:
            self._remove_temp()
            return None
        os.replace(self._temp, self.path)
        return self.path

    def _remove_temp(self) -> None:
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_video_path(path: str | os.PathLike) -> Path:
    """``path`` if a video can be recorded there (known extension, writable folder),
    else :class:`ImageError`; lets a command fail before it loads models."""
    path = Path(path)
    extension = path.suffix.lower()
    if extension not in CODECS:
        raise ImageError(
            f"{path}: unknown video format {extension or '(no extension)'!r}: "
            f"use one of {', '.join(CODECS)}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise ImageError(f"{path}: output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ImageError(f"{path}: cannot write in folder {str(folder)!r}")
    return path


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (width, height), centred on black."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    canvas[y:y + new_h, x:x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas


def save_snapshot(image: np.ndarray, folder: str | os.PathLike = ".") -> Path:
    """Write ``image`` as ``cvstyle-<date>-<time>.png`` (``-2``, ``-3``... if taken)."""
    stem = time.strftime("cvstyle-%Y%m%d-%H%M%S")
    path = Path(folder) / f"{stem}.png"
    number = 1
    while path.exists():
        number += 1
        path = Path(folder) / f"{stem}-{number}.png"
    write_image(path, Picture(image))
    return path


# ---------------------------------------------------------------- keys


@dataclass(frozen=True)
class LiveState:
    """What the viewer has chosen with the keys."""

    styles: int  # how many styles are loaded
    selected: int | None = None  # None: every style in a grid; else only this one
    paused: bool = False
    side_by_side: bool = False
    preserve_colors: bool = False
    strength: float = 1.0

    def visible(self) -> list[int]:
        return list(range(self.styles)) if self.selected is None else [self.selected]

    def look(self) -> tuple:
        """The settings that change the picture (a change re-renders a paused frame)."""
        return self.selected, self.side_by_side, self.preserve_colors, self.strength


class Action(Enum):
    SNAPSHOT = "snapshot"
    HELP = "help"
    QUIT = "quit"


def handle_key(state: LiveState, key: int) -> tuple[LiveState, Action | None]:
    """The state after ``key`` (a ``cv2.waitKey`` code) and what the loop must do."""
    if key == NO_KEY:
        return state, None
    char = chr(key & 0xFF).lower()
    if key == KEY_ESC or char == "q":
        return state, Action.QUIT
    if char == "s":
        return state, Action.SNAPSHOT
    if char == "h":
        return state, Action.HELP
    if char in "np" and state.styles > 1:
        # Cycle through: all styles, then each one alone (which also runs faster).
        views = [None, *range(state.styles)]
        step = 1 if char == "n" else -1
        selected = views[(views.index(state.selected) + step) % len(views)]
        return replace(state, selected=selected), None
    if char == " ":
        return replace(state, paused=not state.paused), None
    if char == "o":
        return replace(state, side_by_side=not state.side_by_side), None
    if char == "c":
        return replace(state, preserve_colors=not state.preserve_colors), None
    if char in "+=-_":
        step = STRENGTH_STEP if char in "+=" else -STRENGTH_STEP
        # Rounded so repeated steps land on 0.1, 0.2... exactly and reach 0 and 1.
        return replace(state, strength=round(min(1.0, max(0.0, state.strength + step)), 6)), None
    return state, None


# ---------------------------------------------------------------- the loop


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

    def report(self, interrupted: bool = False) -> RunReport:
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
        )


def _smooth(average: float, value: float) -> float:
    return Meter.SMOOTHING * average + (1 - Meter.SMOOTHING) * value


@dataclass(frozen=True)
class RunReport:
    frames: int  # frames stylized and shown/recorded
    dropped: int  # frames a live source produced that were never processed
    fps: float  # mean rate of frames shown
    seconds: float  # the whole run, warm-up excluded
    mean_latency: float  # seconds from capture to the stylized view
    max_latency: float
    interrupted: bool  # stopped by Ctrl-C


def render(painter: Painter, image: np.ndarray, state: LiveState) -> tuple[np.ndarray, list[str]]:
    """The composed view of a frame for ``state``, and its tiles' labels."""
    original, painted = painter.paint(
        image, state.visible(), preserve_colors=state.preserve_colors, strength=state.strength
    )
    labels = [painter.names[i] for i in state.visible()]
    if state.side_by_side:
        return compose([original, *painted]), ["original", *labels]
    return compose(painted), labels


def status_line(meter: Meter, state: LiveState) -> str:
    parts = [f"{meter.fps:.1f} FPS", f"{meter.latency * 1000:.0f} ms"]
    if state.strength < 1:
        parts.append(f"strength {state.strength:.1f}")
    if state.preserve_colors:
        parts.append("colours kept")
    if state.paused:
        parts.append("PAUSED")
    return "  ".join(parts) + "   h: help"


def run(
    source: FrameSource,
    painter: Painter,
    state: LiveState | None = None,
    window: Window | None = None,
    recorder: VideoRecorder | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[Meter], None] | None = None,
    notify: Callable[[str], None] = print,
) -> RunReport:
    """Stylize ``source`` until it ends, ``q``/Esc, ``max_frames`` or Ctrl-C.

    Opening and closing the source, window and recorder is the caller's job (use them
    as context managers so a recording is finished whatever happens); errors of the
    source propagate. ``on_frame`` is called after each new frame (progress bars),
    ``notify`` with messages such as a snapshot's file name.
    """
    state = state or LiveState(styles=len(painter.stylizers))
    painter.warm_up(source.frame_size)
    meter = Meter()
    help_until = time.monotonic() + HELP_SECONDS
    frame: Frame | None = None
    view, labels, rendered_look = None, [], None
    interrupted = False
    try:
        while max_frames is None or meter.frames < max_frames:
            fresh = frame is None or not state.paused
            if fresh:
                frame = source.read()
                if frame is None:
                    break
            if fresh or state.look() != rendered_look:
                view, labels = render(painter, frame.image, state)
                rendered_look = state.look()
            now = time.monotonic()
            if fresh:
                meter.update(frame, now)
                if on_frame is not None:
                    on_frame(meter)
            # A live recording follows the wall clock, so it holds a paused picture;
            # a file's recording has each of its frames once.
            if recorder is not None and (fresh or source.live):
                recorder.write(view, at=now)
            if window is None:
                continue
            window.show(draw_overlay(view, status_line(meter, state), labels, now < help_until))
            state, action = handle_key(state, window.poll_key(_wait_ms(source, state, meter)))
            if action is Action.QUIT:
                break
            if action is Action.SNAPSHOT:
                notify(f"saved {save_snapshot(view)}")
            elif action is Action.HELP:
                help_until = time.monotonic() + HELP_SECONDS
    except KeyboardInterrupt:
        interrupted = True
    return meter.report(interrupted)


def _wait_ms(source: FrameSource, state: LiveState, meter: Meter) -> int:
    """How long to wait for a key: a paused loop idles; a file plays no faster than
    its frame rate (a frame's processing time counts towards its interval); a live
    source goes straight on to the newest frame."""
    if state.paused:
        return 30
    if source.live:
        return 1
    return max(1, int((1.0 / source.fps - meter.latency) * 1000))
