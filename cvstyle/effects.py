"""Artistic controls around the network: mix styles, keep the photo's colours, set the strength.

All take and return uint8 BGR images of one size; they are cheap next to a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .errors import CvstyleError


def normalise_weights(weights: Sequence[float]) -> list[float]:
    """Weights scaled to sum to 1; negative, non-finite or all-zero weights are refused."""
    values = [float(w) for w in weights]
    if not values:
        raise CvstyleError("a style mix needs at least one model")
    if any(not np.isfinite(w) or w < 0 for w in values):
        raise CvstyleError(f"style weights must be zero or positive numbers, not {values}")
    total = sum(values)
    if total == 0:
        raise CvstyleError("style weights must not all be zero")
    return [w / total for w in values]


def mix(images: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted average of several stylized versions of one photo."""
    if len(images) != len(weights):
        raise CvstyleError(f"{len(images)} images but {len(weights)} weights")
    normalised = normalise_weights(weights)
    if len(images) == 1:
        return images[0]
    total = np.zeros(images[0].shape, np.float32)
    for image, weight in zip(images, normalised):
        total += weight * image.astype(np.float32)
    return np.clip(np.rint(total), 0, 255).astype(np.uint8)


def preserve_colors(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """The painting's luminance with the photo's chroma (Gatys et al.'s luminance transfer).

    YCrCb keeps the split exact: the result's Cr and Cb equal the photo's and its Y the
    painting's, up to rounding.
    """
    luma = cv2.cvtColor(stylized, cv2.COLOR_BGR2YCrCb)[:, :, :1]
    chroma = cv2.cvtColor(original, cv2.COLOR_BGR2YCrCb)[:, :, 1:]
    return cv2.cvtColor(np.concatenate([luma, chroma], axis=2), cv2.COLOR_YCrCb2BGR)


def blend_strength(original: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 0 gives the photo, 1 the painting; in between, interpolate in Lab.

    Interpolating in Lab rather than in sRGB keeps midway colours saturated instead of
    greying them where photo and painting have different hues.
    """
    if not 0.0 <= strength <= 1.0:
        raise CvstyleError(f"strength must be between 0 and 1, not {strength}")
    if strength == 0.0:
        return original.copy()
    if strength == 1.0:
        return stylized
    to_lab = cv2.COLOR_BGR2Lab
    photo = cv2.cvtColor(original.astype(np.float32) / 255.0, to_lab)
    painting = cv2.cvtColor(stylized.astype(np.float32) / 255.0, to_lab)
    blended = cv2.cvtColor((1.0 - strength) * photo + strength * painting, cv2.COLOR_Lab2BGR)
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
