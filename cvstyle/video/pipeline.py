"""Paint a video file: decoding, the network and encoding run at the same time.

A reader thread demuxes, decodes, turns each frame upright, resizes it (and, with
stabilisation, measures its motion); painter threads run the network, as many frames
at once as the caller asks (one per stream of the network), handed on in order; a
writer thread blends (stabilisation), turns frames back, encodes and muxes them with
the audio packets. FFmpeg, OpenCV and the inference engines release the GIL, so the
network is kept busy. The output appears under its name only when complete.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ..engines.streams import in_order
from ..errors import ImageError, first_line
from ..files import temporary_sibling
from ..stylizer import fit_longer_side
from . import stabilize
from .containers import OUTPUT_FORMATS
from .io import DecodedFrame, VideoReader, VideoWriter

Progress = Callable[[int, int | None], None]  # (frames done, frames expected or None)
QUEUE_FRAMES = 4  # frames waiting on each side of the network: enough to absorb jitter
_END = object()
_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
_UNROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass
class _Frame:
    decoded: DecodedFrame
    upright: np.ndarray  # what the network paints: turned upright, resized
    motion: stabilize.Motion | None = None
    painted: np.ndarray | None = None


def output_format(target: str | os.PathLike) -> str:
    """The FFmpeg muxer for ``target``'s extension, or ImageError naming the ones there are."""
    suffix = Path(target).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ImageError(
            f"{target}: videos are written as {', '.join(OUTPUT_FORMATS)}, not {suffix or '(no extension)'!r}"
        )
    return OUTPUT_FORMATS[suffix]


def stylize_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    paint: Callable[[np.ndarray], np.ndarray],
    size: int | None = None,
    quality: int = 95,
    stabilized: bool = False,
    progress: Progress | None = None,
    painters: int = 1,
) -> None:
    """Write ``source`` with every frame replaced by ``paint(frame)`` (BGR in, BGR of the
    same size out) to ``target`` (.mp4, .mov or .mkv): H.264 at ``quality`` (1-100),
    the source's timestamps, colour description, display matrix and audio.

    Frames are painted upright, with their longer side ``size`` if given (then rounded
    down to even sizes, which H.264's 4:2:0 sampling needs). ``stabilized`` blends each
    painted frame with the previous one along the motion (:mod:`.stabilize`).
    ``painters`` frames are painted at once (``paint`` must allow that many calls at a
    time: a :class:`~cvstyle.Stylizer` with as many ``streams``).
    """
    muxer = output_format(target)
    reader = VideoReader(source)
    try:
        with temporary_sibling(target) as temporary:
            run = _Run(reader, Path(target), temporary, muxer, quality, stabilized)
            run.execute(paint, size, progress, painters)
    finally:
        reader.close()


class _Run:
    def __init__(
        self, reader: VideoReader, target: Path, temporary: Path, muxer: str, quality: int, stabilized: bool
    ):
        self.reader = reader
        self.target = target
        self.temporary = temporary
        self.muxer = muxer
        self.quality = quality
        self.estimator = stabilize.MotionEstimator() if stabilized else None
        self.stop = threading.Event()
        self.to_network: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.to_writer: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.writer: VideoWriter | None = None
        self.errors: list[BaseException] = []

    def execute(self, paint, size: int | None, progress: Progress | None, painters: int) -> None:
        threads = [
            threading.Thread(target=self._guard, args=(self._read, size), name="cvstyle-video-read", daemon=True),
            threading.Thread(target=self._guard, args=(self._write,), name="cvstyle-video-write", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            with ThreadPoolExecutor(max_workers=painters, thread_name_prefix="cvstyle-video-paint") as painting:
                self._paint_all(painting, paint, painters, progress)
            self._put(self.to_writer, _END)
            for thread in threads:
                thread.join()
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=5)
            if self.writer is not None:
                self.writer.abandon()
            raise
        if self.errors:
            raise self.errors[0]

    def _paint_all(self, painting: ThreadPoolExecutor, paint, painters: int, progress: Progress | None) -> None:
        """Frames to the painters, and on to the writer in order with the audio packets
        between them."""
        expected = self.reader.frame_count()
        arrivals = iter(lambda: self._get(self.to_network), _END)

        def start(item):
            return painting.submit(paint, item.upright) if isinstance(item, _Frame) else None

        done = 0
        for item, future in in_order(arrivals, start, painters):
            if future is not None:
                item.painted = future.result()
                done += 1
            self._put(self.to_writer, item)
            if future is not None and progress is not None:
                progress(done, expected)

    def _guard(self, work, *args) -> None:
        try:
            work(*args)
        except BaseException as error:  # handed to the calling thread, which re-raises it
            self.errors.append(error)
            self.stop.set()

    def _put(self, channel: queue.Queue, item) -> None:
        while not self.stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise_stopped()

    def _get(self, channel: queue.Queue):
        while not self.stop.is_set():
            try:
                return channel.get(timeout=0.1)
            except queue.Empty:
                continue
        self._raise_stopped()

    def _raise_stopped(self):
        if self.errors:
            raise self.errors[0]
        raise _Stopped

    def _read(self, size: int | None) -> None:
        for item in self.reader.read():
            if isinstance(item, DecodedFrame):
                upright = _turn(item.bgr, self.reader.orientation.rotation, _ROTATE)
                upright = _even(fit_longer_side(upright, size) if size else upright)
                motion = self.estimator(upright) if self.estimator else None
                item = _Frame(item, upright, motion)
            self._put(self.to_network, item)
        self._put(self.to_network, _END)

    def _write(self) -> None:
        try:
            self._encode()
        except (av.FFmpegError, OSError) as error:
            raise ImageError(f"{self.target}: cannot write the video ({first_line(error)})") from None

    def _encode(self) -> None:
        pending_audio = []
        previous = None
        while (item := self._get(self.to_writer)) is not _END:
            if not isinstance(item, _Frame):
                if self.writer is None:
                    pending_audio.append(item)  # the output opens with the first frame
                else:
                    self.writer.write_audio(item)
                continue
            painted = item.painted
            if self.estimator is not None:
                painted = previous = stabilize.blend(item.motion, previous, painted)
            stored = _turn(painted, self.reader.orientation.rotation, _UNROTATE)
            if self.writer is None:
                self.writer = self._open(stored.shape[1::-1])
                for packet in pending_audio:
                    self.writer.write_audio(packet)
                pending_audio = []
            self.writer.write_frame(stored, item.decoded.pts, item.decoded.time_base)
        if self.writer is None:
            raise ImageError(f"{self.reader.name}: no video frame could be decoded")
        self.writer.finish()

    def _open(self, size: tuple[int, int]) -> VideoWriter:
        reader = self.reader
        return VideoWriter(
            self.temporary, self.muxer, size, reader.time_base, reader.frame_rate,
            reader.colour, reader.orientation, reader.audio, self.quality,
        )


class _Stopped(Exception):
    """A thread's wait ended because another stage failed or the run was interrupted."""


def _turn(image: np.ndarray, rotation: int, codes: dict[int, int]) -> np.ndarray:
    return cv2.rotate(image, codes[rotation]) if rotation in codes else image


def _even(image: np.ndarray) -> np.ndarray:
    """Drop a last odd row or column: 4:2:0 chroma needs even sizes."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.ascontiguousarray(image[: height - height % 2, : width - width % 2])
