"""Tiled stylization: equal to one pass, seamless, and safe on large images."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from cvstyle import tiling
from cvstyle.modelinfo import load_network
from cvstyle.runner import StyleNet


@pytest.fixture(scope="module")
def photo(cat_bgr) -> np.ndarray:
    return cv2.resize(cat_bgr, (333, 251), interpolation=cv2.INTER_AREA)


def test_tiles_cover_the_image_once_with_aligned_windows():
    height, width = 1001, 777
    tiles = tiling.plan_tiles(height, width, core=256, margin=48)
    covered = np.zeros((height, width), np.int32)
    for tile in tiles:
        covered[tile.core] += 1
        top, left, tile_h, tile_w = tile.window
        assert top % 4 == 0 and left % 4 == 0 and tile_h % 4 == 0 and tile_w % 4 == 0
        # The core sits inside the window with the full margin, except at image edges.
        rows, cols = tile.crop
        assert rows.start >= 48 or top == 0
        assert cols.start >= 48 or left == 0
    assert (covered == 1).all()
    assert len({t.window[2:] for t in tiles}) == 1  # one window shape: the net never reshapes


@pytest.mark.parametrize("family", ["eccv16", "instance_norm"])
def test_tiled_equals_untiled(family, eccv16_model, instance_norm_model, photo):
    path = {"eccv16": eccv16_model, "instance_norm": instance_norm_model}[family]
    network = StyleNet(load_network(path), "cpu")
    whole = network(photo).astype(int)
    tiled = tiling.stylize_large(network, path, photo, core=128, margin=48).astype(int)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() <= 2


def test_no_seam_at_tile_borders(instance_norm_model, photo):
    network = StyleNet(load_network(instance_norm_model), "cpu")
    core = 96
    tiled = tiling.stylize_large(network, instance_norm_model, photo, core=core, margin=48)
    steps = np.abs(np.diff(tiled.astype(int), axis=1)).max(axis=(0, 2))  # per column boundary
    at_borders = steps[core - 1 :: core]
    elsewhere = np.delete(steps, np.arange(core - 1, steps.size, core))
    assert at_borders.max() <= elsewhere.max()
    assert at_borders.mean() <= np.percentile(elsewhere, 90)


def test_too_small_margin_shows_a_seam(eccv16_model, photo):
    """The equality above is not vacuous: without enough context tiles do differ."""
    network = StyleNet(load_network(eccv16_model), "cpu")
    whole = network(photo).astype(int)
    tiled = tiling.stylize_tiled(network, photo, core=128, margin=4).astype(int)
    assert np.abs(tiled - whole).max() > 10


def test_auto_mode_thresholds():
    small = np.zeros((1080, 1920, 3), np.uint8)
    large = np.zeros((1440, 2560, 3), np.uint8)
    assert not tiling.needs_tiling(small, "auto")
    assert tiling.needs_tiling(large, "auto")
    assert tiling.needs_tiling(small, "on") and not tiling.needs_tiling(large, "off")
    with pytest.raises(ValueError):
        tiling.needs_tiling(small, "sometimes")


def test_large_landscape_photo_in_bounded_memory(instance_norm_model, tmp_path):
    """2560x1440 makes OpenCV's transposed convolution segfault in one pass; tiled it
    completes under an address-space limit, with peak RSS well under 1.5 GiB."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        import numpy as np
        limit = 3 * 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from cvstyle import Stylizer
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (1440 // 8, 2600 // 8, 3), dtype=np.uint8)
        image = np.kron(image, np.ones((8, 8, 1), np.uint8))
        out = Stylizer({str(instance_norm_model)!r}, device="cpu").stylize(image)
        assert out.shape == image.shape, out.shape
        # VmHWM, unlike ru_maxrss, does not inherit the parent's peak across exec.
        status = open("/proc/self/status").read()
        print(status.split("VmHWM:")[1].split()[0])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib < 1.5 * 1024**2
