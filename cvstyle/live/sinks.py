"""Where the live loop's pictures go: the on-screen :class:`Window` (which also reads the
keys), the :class:`VideoRecorder`, and snapshots."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

from ..errors import CvstyleError, ImageError
from ..imageio import Picture, quiet_opencv, write_image
from .keys import KEY_ESC
from .sources import DEFAULT_FPS

# Container and codec by output extension: ones the FFmpeg in the OpenCV wheels writes.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


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
        """The key pressed (as ``cv2.waitKey`` gives it), :data:`~cvstyle.live.keys.NO_KEY` if none;
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
