"""Artistic controls: measurable properties of colour preservation, strength and mixing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cvstyle import Stylizer, effects
from cvstyle.errors import CvstyleError


@pytest.fixture(scope="module")
def photo(cat_bgr):
    return cv2.resize(cat_bgr, (120, 80), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def painting(photo, instance_norm_model):
    return Stylizer(instance_norm_model, device="cpu").stylize(photo)


def ycrcb(image):
    return cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(int)


def test_preserved_colours_take_chroma_from_photo_and_luma_from_painting(photo, painting):
    result = effects.preserve_colors(photo, painting)
    # Within rounding: the YCrCb round trip through uint8 BGR moves values by a few levels
    # only where BGR clips; compare medians and a high percentile.
    chroma_error = np.abs(ycrcb(result)[:, :, 1:] - ycrcb(photo)[:, :, 1:])
    luma_error = np.abs(ycrcb(result)[:, :, 0] - ycrcb(painting)[:, :, 0])
    assert np.median(chroma_error) <= 1 and np.percentile(chroma_error, 95) <= 3
    assert np.median(luma_error) <= 1 and np.percentile(luma_error, 95) <= 3
    # ...and it is far from the painting's own colours.
    assert np.abs(ycrcb(painting)[:, :, 1:] - ycrcb(photo)[:, :, 1:]).mean() > 4 * chroma_error.mean()


def test_strength_ends_and_middle(photo, painting):
    assert np.array_equal(effects.blend_strength(photo, painting, 0.0), photo)
    assert np.array_equal(effects.blend_strength(photo, painting, 1.0), painting)
    half = effects.blend_strength(photo, painting, 0.5).astype(int)
    to_photo = np.abs(half - photo).mean()
    to_painting = np.abs(half - painting).mean()
    assert 0.3 < to_photo / (to_photo + to_painting) < 0.7
    with pytest.raises(CvstyleError, match="between 0 and 1"):
        effects.blend_strength(photo, painting, 1.2)


def test_mix_weights(photo, painting):
    assert np.array_equal(effects.mix([painting, photo], [1, 0]), painting)
    assert np.array_equal(effects.mix([painting, photo], [3, 3]), effects.mix([painting, photo], [1, 1]))
    even = effects.mix([painting, photo], [1, 1]).astype(int)
    expected = (painting.astype(int) + photo.astype(int)) / 2
    assert np.abs(even - expected).max() <= 0.5 + 1e-9
    for bad in ([-1, 2], [0, 0], [float("nan"), 1]):
        with pytest.raises(CvstyleError, match="weights"):
            effects.mix([painting, photo], bad)


def test_stylizer_controls(photo, painting, instance_norm_model):
    stylizer = Stylizer(instance_norm_model, device="cpu")
    assert np.array_equal(stylizer.stylize(photo, strength=0.0), photo)
    assert np.array_equal(stylizer.stylize(photo), painting)
    assert np.array_equal(
        stylizer.stylize(photo, preserve_colors=True), effects.preserve_colors(photo, painting)
    )
    single = Stylizer([(instance_norm_model, 1.0), ("sketch", 0.0)], device="cpu")
    assert np.array_equal(single.stylize(photo), painting)
    assert single.name == "instance_norm_fixture+sketch"
    mixed = Stylizer(f"{instance_norm_model}:1+sketch:1", device="cpu").stylize(photo)
    sketch = Stylizer("sketch", device="cpu").stylize(photo)
    assert np.array_equal(mixed, effects.mix([painting, sketch], [1, 1]))
    with pytest.raises(CvstyleError, match="zero"):
        Stylizer(f"{instance_norm_model}:0+sketch:0")
