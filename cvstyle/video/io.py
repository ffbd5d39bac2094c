"""Video files through PyAV (FFmpeg's libraries): frames decoded with their timestamps,
orientation and colour description; H.264 written back with the same timing, colour
description and display matrix, and the audio packets copied as they are.

Errors about the input raise :class:`~cvstyle.errors.ImageError` with one line
``<file>: <problem>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..errors import ImageError, first_line

log = logging.getLogger(__name__)

ENCODER = "libx264"  # H.264 High profile, yuv420p: what every browser plays from MP4
PIXEL_FORMAT = "yuv420p"
# Encoding shares the CPU with the network: veryfast costs about 10 ms of CPU per
# 640x480 frame against medium's 18 (files somewhat larger at the same CRF).
PRESET = "veryfast"
# swscale's default path darkens every 4:2:0 -> BGR -> 4:2:0 trip by 2-4 grey levels;
# accurate rounding with full chroma interpolation makes the trip exact on flat colours.
_FLAGS = av.video.reformatter.Interpolation
SCALING = _FLAGS.BILINEAR | _FLAGS.ACCURATE_RND | _FLAGS.FULL_CHR_H_INT | _FLAGS.FULL_CHR_H_INP
# A clip that ends this much before its declared duration was cut short.
TRUNCATION_TOLERANCE = Fraction(1, 2)  # seconds


def crf_for_quality(quality: int) -> int:
    """``--quality`` 1-100 -> x264's constant rate factor 51-16: 95 (the default)
    gives 18, which x264 documents as visually lossless; 75 gives 25, near its default 23."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1-100, not {quality}")
    return round(51 - 35 * (quality - 1) / 99)


@dataclass(frozen=True)
class Colour:
    """How a stream's YUV samples map to colours (FFmpeg's AVCOL_* numbers)."""

    space: int  # matrix
    range: int  # 1 limited (MPEG), 2 full (JPEG)
    primaries: int
    transfer: int


@dataclass(frozen=True)
class DecodedFrame:
    bgr: np.ndarray  # as stored (not yet turned by the display matrix)
    pts: int
    time_base: Fraction


@dataclass(frozen=True)
class Orientation:
    """The display matrix (nine 16.16/2.30 fixed-point integers) and the counter-clockwise
    rotation it applies, which painting undoes (a multiple of 90 degrees, else 0)."""

    matrix: tuple[int, ...] | None = None
    rotation: int = 0


class VideoReader:
    """The first video stream of a file, decoded, with the audio streams' packets in
    file order (for copying). ``read()`` yields :class:`DecodedFrame` and ``av.Packet``."""

    def __init__(self, path: str | os.PathLike):
        self.name = os.fspath(path)
        try:
            self.container = av.open(self.name, metadata_errors="ignore")
        except av.FFmpegError as error:
            raise ImageError(
                f"{self.name}: cannot open the video: corrupt, truncated or not a video ({_reason(error)})"
            ) from None
        try:
            self.stream = _video_stream(self.container, self.name)
        except ImageError:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"
        self.audio = list(self.container.streams.audio)
        self.colour: Colour | None = None  # known once the first frame is decoded
        self.orientation = Orientation()
        self.frames_read = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.stream.codec_context.width, self.stream.codec_context.height

    @property
    def time_base(self) -> Fraction:
        return self.stream.time_base

    @property
    def frame_rate(self) -> Fraction | None:
        return self.stream.average_rate or self.stream.guessed_rate

    def frame_count(self) -> int | None:
        """Frames declared by the container, or estimated from its duration."""
        if self.stream.frames:
            return self.stream.frames
        seconds = self.container.duration / av.time_base if self.container.duration else None
        rate = self.frame_rate
        return round(seconds * rate) if seconds and rate else None

    def read(self) -> Iterator[DecodedFrame | av.Packet]:
        end = Fraction(0)
        try:
            for packet in self.container.demux(self.stream, *self.audio):
                if packet.pts is not None and packet.time_base:
                    end = max(end, (packet.pts + (packet.duration or 0)) * packet.time_base)
                if packet.stream is self.stream:
                    for frame in self.stream.decode(packet):
                        yield self._convert(frame)
                elif packet.size:
                    yield packet
        except av.FFmpegError as error:
            raise ImageError(f"{self.name}: corrupt or truncated video ({_reason(error)})") from None
        if not self.frames_read:
            raise ImageError(f"{self.name}: no video frame could be decoded")
        declared = self.container.duration
        if declared and end + TRUNCATION_TOLERANCE < Fraction(declared, av.time_base):
            raise ImageError(
                f"{self.name}: truncated video (ends at {float(end):.2f} s of "
                f"{declared / av.time_base:.2f} s)"
            )

    def _convert(self, frame: av.VideoFrame) -> DecodedFrame:
        if self.colour is None:
            self.colour = _colour(frame)
            self.orientation = _orientation(frame)
        bgr = frame.to_ndarray(format="bgr24", src_color_range=_range(frame), interpolation=SCALING)
        time_base = frame.time_base or self.stream.time_base
        pts = frame.pts
        if pts is None:  # a container without timestamps: frames at the nominal rate
            pts = round(self.frames_read / ((self.frame_rate or 25) * time_base))
        self.frames_read += 1
        return DecodedFrame(bgr, pts, time_base)

    def close(self) -> None:
        self.container.close()


def _video_stream(container, name: str):
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise ImageError(f"{name}: no video stream")
    stream = streams[0]
    codec = stream.codec_context
    if codec is None or codec.name in (None, "none"):
        raise ImageError(f"{name}: unknown video codec: this FFmpeg build cannot decode it")
    return stream


def _reason(error: av.FFmpegError) -> str:
    return first_line(getattr(error, "strerror", None) or error)


def _range(frame: av.VideoFrame) -> int:
    """The frame's colour range; unspecified means full for the yuvj formats, else limited."""
    if frame.color_range in (1, 2):
        return frame.color_range
    return 2 if frame.format.name.startswith("yuvj") else 1


def _colour(frame: av.VideoFrame) -> Colour:
    # FFmpeg decodes an unspecified matrix as BT.601; the output says so explicitly.
    space = frame.colorspace if frame.colorspace not in (2, 0) else 6  # 6: SMPTE 170M (BT.601)
    return Colour(space, _range(frame), frame.color_primaries, frame.color_trc)


def _orientation(frame: av.VideoFrame) -> Orientation:
    for side in frame.side_data:
        if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            matrix = tuple(int(v) for v in np.frombuffer(bytes(side), dtype="<i4"))
            rotation = round(frame.rotation) % 360
            return Orientation(matrix, rotation if rotation % 90 == 0 else 0)
    return Orientation()


class VideoWriter:
    """H.264 video (and the given audio streams) into ``path``, in the ``muxer`` format.

    Frames keep the pts they are given in ``time_base``; ``colour`` and ``orientation``
    are written as the stream's colour tags and display matrix. Audio packets are copied
    unchanged where the container takes their codec, else decoded and re-encoded to AAC.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        muxer: str,
        size: tuple[int, int],
        time_base: Fraction,
        frame_rate: Fraction | None,
        colour: Colour,
        orientation: Orientation,
        audio: Sequence,
        quality: int,
    ):
        self.name = os.fspath(path)
        options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
        self.container = av.open(self.name, "w", format=muxer, container_options=options)
        try:
            self.video = self._add_video(size, time_base, frame_rate, colour, orientation, quality)
            self.audio = {source.index: self._add_audio(source) for source in audio}
        except BaseException:
            self.container.close()
            raise
        self.colour = colour

    def _add_video(self, size, time_base, frame_rate, colour: Colour, orientation: Orientation, quality):
        stream = self.container.add_stream(
            ENCODER, options={"crf": str(crf_for_quality(quality)), "preset": PRESET}
        )
        stream.width, stream.height = size
        stream.pix_fmt = PIXEL_FORMAT
        stream.time_base = time_base
        codec = stream.codec_context
        codec.time_base = time_base
        if frame_rate:
            codec.framerate = frame_rate
        codec.colorspace, codec.color_range = colour.space, colour.range
        codec.color_primaries, codec.color_trc = colour.primaries, colour.transfer
        if orientation.matrix is not None:
            stream.set_display_matrix(list(orientation.matrix))
        return stream

    def _add_audio(self, source):
        try:
            stream = self.container.add_stream_from_template(source)
            copied = True
        except ValueError:
            stream = self.container.add_stream("aac", rate=source.rate, layout=source.layout)
            copied = False
            log.warning(
                "%s: audio stream %d (%s) re-encoded to AAC: the %s container cannot hold it",
                self.name, source.index, source.codec_context.name, self.container.format.name,
            )
        for key in ("language", "title"):
            if key in source.metadata:
                stream.metadata[key] = source.metadata[key]
        return stream, copied

    def write_frame(self, bgr: np.ndarray, pts: int, time_base: Fraction) -> None:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(
            format=PIXEL_FORMAT, dst_colorspace=self.colour.space, dst_color_range=self.colour.range,
            interpolation=SCALING,
        )
        frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.video.encode(frame))

    def write_audio(self, packet: av.Packet) -> None:
        stream, copied = self.audio[packet.stream.index]
        if copied:
            packet.stream = stream
            self.container.mux(packet)
            return
        for frame in packet.decode():
            self.container.mux(stream.encode(frame))

    def finish(self) -> None:
        """Flush the encoders and write the trailer (and the front index, for MP4)."""
        self.container.mux(self.video.encode())
        for stream, copied in self.audio.values():
            if not copied:
                self.container.mux(stream.encode())
        self.container.close()

    def abandon(self) -> None:
        """Close without flushing: the file is about to be removed."""
        try:
            self.container.close()
        except av.FFmpegError:
            pass
