"""Generated clips with known motion, the flicker measure, and a clip writer: what the
tests and ``benchmarks/video.py`` use to check videos without shipping any.

Flicker is the mean absolute difference (grey levels, all channels) between each
painted frame and the previous painted frame moved by the clip's *true* motion, over
the pixels both frames show; pairs across a scene cut are left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import cv2
import numpy as np

Shift = tuple[float, float]  # content displacement (x, y) in pixels from the previous frame


@dataclass
class Clip:
    frames: list[np.ndarray] = field(default_factory=list)  # BGR uint8, all one size
    motions: list[Shift | None] = field(default_factory=list)  # None: first frame or a cut

    def __add__(self, other: Clip) -> Clip:
        """``other`` after a scene cut."""
        return Clip(self.frames + other.frames, self.motions + [None] + other.motions[1:])


def pan(photo: np.ndarray, count: int, size: tuple[int, int] = (160, 120), speed: int = 1) -> Clip:
    """A camera panning right across ``photo`` (scaled to twice ``size``'s height) by
    ``speed`` whole pixels a frame, so the true motion needs no interpolation."""
    width, height = size
    scale = 2 * height / photo.shape[0]
    scaled = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if scaled.shape[1] < width + speed * count:
        raise ValueError("photo too narrow for this pan")
    top = (scaled.shape[0] - height) // 2
    frames = [np.ascontiguousarray(scaled[top : top + height, t * speed : t * speed + width]) for t in range(count)]
    return Clip(frames, [None] + [(-float(speed), 0.0)] * (count - 1))


def noisy_still(
    photo: np.ndarray, count: int, size: tuple[int, int] = (160, 120), sigma: float = 6.0, seed: int = 0
) -> Clip:
    """A still camera on ``photo`` with Gaussian sensor noise of ``sigma`` grey levels."""
    still = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = [np.clip(still + rng.normal(0, sigma, still.shape) + 0.5, 0, 255).astype(np.uint8) for _ in range(count)]
    return Clip(frames, [None] + [(0.0, 0.0)] * (count - 1))


def flicker(painted: Sequence[np.ndarray], motions: Sequence[Shift | None]) -> float:
    """Mean absolute difference between consecutive painted frames after the true motion."""
    differences = []
    for t in range(1, len(painted)):
        if motions[t] is None:
            continue
        dx, dy = motions[t]
        margin_x, margin_y = math.ceil(abs(dx)) + 1, math.ceil(abs(dy)) + 1
        height, width = painted[t].shape[:2]
        moved = cv2.warpAffine(
            painted[t - 1], np.float32([[1, 0, dx], [0, 1, dy]]), (width, height), flags=cv2.INTER_LINEAR
        )
        inner = (slice(margin_y, height - margin_y), slice(margin_x, width - margin_x))
        differences.append(float(np.mean(cv2.absdiff(painted[t][inner], moved[inner]))))
    return float(np.mean(differences)) if differences else 0.0


def write_clip(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray],
    pts: Sequence[int] | None = None,
    time_base: Fraction = Fraction(1, 30),
    audio_tones: Sequence[float] = (440.0,),
    audio_codec: str = "aac",
    rotation: int | None = None,
    muxer: str | None = None,
) -> None:
    """Write ``frames`` (BGR) as H.264 at ``pts`` (default 0, 1, 2...) in ``time_base``,
    with one sine-tone audio stream per frequency in ``audio_tones`` lasting as long as
    the video, and a display rotation (counter-clockwise degrees) if given."""
    import av  # only the tests and benchmarks write clips

    pts = list(range(len(frames))) if pts is None else list(pts)
    with av.open(os.fspath(path), "w", format=muxer) as out:
        video = out.add_stream("libx264", options={"crf": "18"})
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        if rotation is not None:
            video.set_display_rotation(rotation)
        seconds = float((pts[-1] + 1) * time_base)
        tones = [(out.add_stream(audio_codec, rate=48000, layout="mono"), tone) for tone in audio_tones]
        for image, stamp in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = stamp, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for stream, tone in tones:
            _write_tone(stream, out, tone, seconds)


def _write_tone(stream, out, tone: float, seconds: float) -> None:
    import av

    rate = 48000
    samples = (0.3 * np.sin(2 * np.pi * tone * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    for start in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m cvstyle.video.synthetic PHOTO OUT.mp4``: a 4 s, 30 fps pan over PHOTO
    at 320x240 with a 440 Hz tone, to try videos with when none is at hand."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    photo = cv2.imread(args.photo)
    if photo is None:
        parser.error(f"{args.photo}: not an image OpenCV can read")
    write_clip(args.output, pan(photo, 120, (320, 240)).frames)


if __name__ == "__main__":
    main()
