"""Temporal stabilisation: consecutive painted frames made consistent along the motion.

Each painted frame is blended with the previous *result*, warped to the current frame
by dense optical flow (DIS) measured between the original frames, wherever that flow
is reliable: forward and backward flow agree and the warped previous original matches
the current one. Elsewhere (occlusions, things entering the picture) the frame keeps its
own painting. When little of the frame is reliable the scene has changed (a cut): the
frame is repainted from scratch and nothing of the previous scene is carried over.

Motion is estimated from the originals alone (:class:`MotionEstimator`), so it can run
ahead of the network in another thread; :func:`blend` then needs only the painted frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Weight of the warped previous result where the flow is reliable: the recursive blend
# averages about 1 / (1 - BLEND) frames along each motion path.
BLEND = 0.75
# Forward-backward check (Sundaram et al. 2010): |fw + bw|^2 <= a (|fw|^2 + |bw|^2) + b.
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5  # pixels^2
# Grey levels between the current original and the warped previous one (both blurred
# to ignore sensor noise) above which a pixel is treated as newly seen.
PHOTOMETRIC_TOLERANCE = 12.0
# Below this fraction of reliable pixels the frame is a new scene.
CUT_FRACTION = 0.5
# Longer side (pixels) at which flow is measured; larger frames are scaled down for it.
FLOW_SIZE = 320


@dataclass(frozen=True)
class Motion:
    """Where each pixel of the current frame was in the previous one, and how much of
    the previous result to keep there (0 where the flow is not reliable)."""

    map_x: np.ndarray  # H x W float32
    map_y: np.ndarray
    weight: np.ndarray  # H x W float32 in [0, BLEND]
    reliable_fraction: float


class MotionEstimator:
    """Call with each original frame (BGR, all the same size) in order; returns the
    :class:`Motion` from the previous frame, or None for the first frame and after a cut."""

    def __init__(self, blend: float = BLEND, preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST):
        self.blend = blend
        self.flow = cv2.DISOpticalFlow.create(preset)
        self.previous: np.ndarray | None = None

    def __call__(self, bgr: np.ndarray) -> Motion | None:
        height, width = bgr.shape[:2]
        scale = min(1.0, FLOW_SIZE / max(height, width))
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        previous, self.previous = self.previous, gray
        if previous is None or previous.shape != gray.shape:
            return None
        backward = self.flow.calc(gray, previous, None)  # current pixel -> previous frame
        forward = self.flow.calc(previous, gray, None)
        map_x, map_y = _maps(backward)
        reliable = _consistent(backward, forward, map_x, map_y) & _inside(map_x, map_y)
        reliable &= _same_content(gray, previous, map_x, map_y)
        fraction = float(np.count_nonzero(reliable)) / reliable.size
        if fraction < CUT_FRACTION:
            return None
        # Shrink then soften the reliable region, so that its edges (where flow errors
        # gather, at occlusion boundaries) take little of the previous frame.
        mask = cv2.erode(reliable.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
        weight = cv2.GaussianBlur(mask, (5, 5), 0) * self.blend
        if scale < 1:  # flow is smooth: measured small, applied at full size
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR) / scale
            weight = cv2.resize(weight, (width, height), interpolation=cv2.INTER_LINEAR)
            map_x, map_y = _maps(backward)
        return Motion(map_x, map_y, weight, fraction)

    def reset(self) -> None:
        self.previous = None


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute source coordinates (for cv2.remap) from a displacement field."""
    height, width = flow.shape[:2]
    flow_x, flow_y = cv2.split(flow)
    return flow_x + np.arange(width, dtype=np.float32), flow_y + np.arange(height, dtype=np.float32)[:, None]


def _consistent(backward, forward, map_x, map_y) -> np.ndarray:
    forward_x, forward_y = cv2.split(
        cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    )
    backward_x, backward_y = cv2.split(backward)
    mismatch = cv2.magnitude(backward_x + forward_x, backward_y + forward_y)
    scale = cv2.magnitude(backward_x, backward_y) ** 2 + cv2.magnitude(forward_x, forward_y) ** 2
    return mismatch**2 <= CONSISTENCY_RELATIVE * scale + CONSISTENCY_ABSOLUTE


def _inside(map_x, map_y) -> np.ndarray:
    height, width = map_x.shape
    return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)


def _same_content(gray, previous, map_x, map_y) -> np.ndarray:
    warped = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    difference = cv2.absdiff(cv2.GaussianBlur(gray, (5, 5), 0), cv2.GaussianBlur(warped, (5, 5), 0))
    return difference <= PHOTOMETRIC_TOLERANCE


def blend(motion: Motion | None, previous: np.ndarray | None, painted: np.ndarray) -> np.ndarray:
    """The stabilised frame: ``painted`` blended with ``previous`` (the last stabilised
    frame) warped by ``motion``; ``painted`` itself for the first frame and after a cut."""
    if motion is None or previous is None or previous.shape != painted.shape:
        return painted
    warped = cv2.remap(previous, motion.map_x, motion.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.blendLinear(warped, painted, motion.weight, 1.0 - motion.weight)


class Stabilizer:
    """Both steps in one object, for loops that paint and stabilise in one place
    (``live``): ``stabilizer(original, painted) -> stabilised``. :meth:`all` takes several
    paintings of one frame (styles side by side), which share one motion estimate."""

    def __init__(self, blend_weight: float = BLEND):
        self.estimator = MotionEstimator(blend_weight)
        self.previous: list[np.ndarray | None] = []

    def __call__(self, original: np.ndarray, painted: np.ndarray) -> np.ndarray:
        return self.all(original, [painted])[0]

    def all(self, original: np.ndarray, paintings: Sequence[np.ndarray]) -> list[np.ndarray]:
        motion = self.estimator(original)
        if len(self.previous) != len(paintings):
            motion, self.previous = None, [None] * len(paintings)
        self.previous = [blend(motion, last, painted) for last, painted in zip(self.previous, paintings)]
        return list(self.previous)

    def reset(self) -> None:
        self.estimator.reset()
        self.previous = []
