"""Tiled stylization: equal to one pass, seamless, and safe on large images."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from cvstyle import presets, tiling
from cvstyle.engines import load_runner
from cvstyle.model import open_model
from cvstyle.runner import pad_to_network
from cvstyle.tiling import TileSettings



@pytest.fixture(scope="module")
def photo(cat_bgr) -> np.ndarray:
    return cv2.resize(cat_bgr, (333, 251), interpolation=cv2.INTER_AREA)


@pytest.fixture(params=["opencv", "onnxruntime"])
def engine(request) -> str:
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    return request.param


def test_tiles_cover_the_image_once_with_aligned_windows():
    height, width = 1001, 777
    tiles = tiling.plan_tiles(height, width, max_core=256, margin=32)
    covered = np.zeros((1004, 780), np.int32)  # the image padded to the stride
    for tile in tiles:
        covered[tile.core] += 1
        for span in (tile.rows, tile.cols):
            assert all(value % 4 == 0 for value in span.core + span.window)
            # The core sits inside the window with at least the margin, except at image edges.
            assert span.core[0] - span.window[0] >= (0 if span.first else 32)
            assert span.window[1] - span.core[1] >= (0 if span.last else 32)
            assert span.window[0] >= 0 and span.window[1] <= (1004, 780)[span is tile.cols]
    assert (covered == 1).all()
    # One window shape for the whole photo (the larger cores and both margins): an
    # engine prepares it once.
    shapes = {(t.rows.window[1] - t.rows.window[0], t.cols.window[1] - t.cols.window[0]) for t in tiles}
    assert shapes == {(252 + 64, 196 + 64)}
    # Cores are as equal as the stride allows: no sliver of a tile at the far edge.
    sizes = {span.core[1] - span.core[0] for span in tiling.plan_spans(1001, 256, 32)}
    assert sizes == {252, 248}


@pytest.mark.parametrize("height,width", [(101, 77), (45, 47), (3, 50), (1, 5), (8, 8)])
@pytest.mark.parametrize("border", [0, 40])
def test_windows_are_cut_from_the_image_as_the_network_pads_it(height, width, border):
    """Windows are gathered from the photo itself (no padded copy of a large photo), and
    equal the same windows of the explicitly padded photo; those that lie within the
    photo are views of it, not copies."""
    photo = np.random.default_rng(height).integers(0, 256, (height, width, 3), np.uint8)
    reflect = cv2.BORDER_REFLECT_101
    padded = cv2.copyMakeBorder(pad_to_network(photo), border, border, border, border, reflect)
    view = tiling.PaddedImage(photo, border)
    assert padded.shape[:2] == (view.inner[0] + 2 * border, view.inner[1] + 2 * border)
    for tile in tiling.plan_tiles(*view.inner, max_core=16, margin=8):
        (top, bottom), (left, right) = tile.rows.window, tile.cols.window
        expected = padded[top : bottom + 2 * border, left : right + 2 * border]
        assert np.array_equal(view.window(tile), expected)
        inside = top >= border and left >= border and bottom + border <= height and right + border <= width
        assert np.shares_memory(view.window(tile), photo) == inside


@pytest.mark.parametrize("family", ["eccv16", "instance_norm"])
def test_tiled_equals_untiled(family, engine, eccv16_model, instance_norm_model, photo):
    path = {"eccv16": eccv16_model, "instance_norm": instance_norm_model}[family]
    network = load_runner(path, engine, "cpu")
    whole = network(photo).astype(int)
    tiled = tiling.stylize_large(network, open_model(path), photo, TileSettings(max_tile=96)).astype(int)
    assert len(tiling.plan_tiles(*photo.shape[:2], max_core=96, margin=32)) == 12
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() <= 1


def test_exact_statistics_match_the_untiled_pass(engine, instance_norm_model, photo):
    """Above statistics_pixels the estimate comes from a scaled-down copy; the exact
    mode (the default) measures the full-resolution image and matches one pass."""
    settings = TileSettings(statistics_pixels=120 * 90, max_tile=128)
    network = load_runner(instance_norm_model, engine, "cpu")
    model = open_model(instance_norm_model)
    whole = network(photo).astype(int)
    estimated = tiling.stylize_large(network, model, photo, settings, statistics="estimate")
    exact = tiling.stylize_large(network, model, photo, settings)
    assert np.abs(exact.astype(int) - whole).max() <= 2
    # Not vacuous: on these random-weight networks the estimate is visibly off.
    assert np.abs(estimated.astype(int) - whole).mean() > 2


def test_onnx_models_with_instance_norm_are_tiled_with_whole_image_statistics(engine, photo, tmp_path):
    """A PyTorch-example-shaped ONNX model (reflection padding in every convolution,
    instance normalisation, upsampling): tiles run the whole graph with wide margins and
    its normalisations frozen to whole-image statistics."""
    onnx_graphs = pytest.importorskip("onnx_graphs")
    model = onnx_graphs.transformer_net(tmp_path / "net.onnx", seed=1, width=8, residuals=5)
    network = load_runner(model, engine, "cpu", presets.preset("rgb255"))
    whole = network(photo).astype(int)
    opened = open_model(model, presets.preset("rgb255"))
    estimate = tiling.stylize_large(network, opened, photo, TileSettings(max_tile=96), "estimate").astype(int)
    assert np.abs(estimate - whole).max() <= 1  # the photo is below statistics_pixels
    settings = TileSettings(max_tile=96, statistics_pixels=120 * 90)
    exact = tiling.stylize_large(network, opened, photo, settings)
    assert np.abs(exact.astype(int) - whole).max() <= 1
    # Each window normalised by itself would be far off.
    per_window = tiling.stylize_tiled(network, photo, 96, 64).astype(int)
    assert np.abs(per_window - whole).mean() > 5


def test_no_seam_at_tile_borders(instance_norm_model, photo):
    network = load_runner(instance_norm_model, "opencv", "cpu")
    core = 96
    settings = TileSettings(statistics_pixels=120 * 90, max_tile=core)
    tiled = tiling.stylize_large(network, open_model(instance_norm_model), photo, settings, "estimate")
    steps = np.abs(np.diff(tiled.astype(int), axis=1)).max(axis=(0, 2))  # per column boundary
    cores = [span.core[1] for span in tiling.plan_spans(photo.shape[1], core, 32)][:-1]
    at_borders = steps[np.array(cores) - 1]
    elsewhere = np.delete(steps, np.array(cores) - 1)
    assert at_borders.max() <= elsewhere.max()
    assert at_borders.mean() <= np.percentile(elsewhere, 90)


@pytest.mark.parametrize("margin", [0, 4])
def test_too_small_margin_shows_a_seam(eccv16_model, photo, margin):
    """The equality above is not vacuous: without enough context tiles do differ."""
    network = load_runner(eccv16_model, "opencv", "cpu")
    whole = network(photo).astype(int)
    settings = TileSettings(max_tile=96, margin=margin)
    tiled = tiling.stylize_large(network, open_model(eccv16_model), photo, settings)
    assert np.abs(tiled.astype(int) - whole).max() > 10


def test_networks_without_a_leading_padding_run_whole_on_each_window(photo):
    """A graph cvstyle cannot take apart (here: a plain function) is tiled with wide margins."""
    def blur(bgr):
        return cv2.GaussianBlur(bgr, (9, 9), 0)

    whole = blur(pad_to_network(photo))[: photo.shape[0], : photo.shape[1]]
    assert np.array_equal(tiling.stylize_tiled(blur, photo, 96, TileSettings().whole_network_margin), whole)
    assert not np.array_equal(tiling.stylize_tiled(blur, photo, 96, 0), whole)


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
    completes under an address-space limit, with peak RSS under 1.5 GiB when given a
    1.2 GiB budget (exact statistics: whole-image activations beyond it go to files)."""
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
        out = Stylizer({str(instance_norm_model)!r}, device="cpu", engine="opencv").stylize(image, max_memory="1.2G")
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


def test_huge_photos_get_smaller_tiles(eccv16_model, photo):
    """Above huge_pixels the photo and its result crowd the memory budget: tiles shrink."""
    defaults = TileSettings()
    assert defaults.tile_size(3000, 4000) == defaults.max_tile
    assert defaults.tile_size(8400, 12000) == defaults.huge_image_tile < defaults.max_tile
    network = load_runner(eccv16_model, "opencv", "cpu")
    model = open_model(eccv16_model)
    tiles = []
    settings = TileSettings(max_tile=256, huge_image_tile=128)
    tiling.stylize_large(network, model, photo, settings, progress=lambda done, total: tiles.append(total))
    huge = TileSettings(max_tile=256, huge_image_tile=128, huge_pixels=100 * 100)
    tiling.stylize_large(network, model, photo, huge, progress=lambda done, total: tiles.append(total))
    counts = sorted(set(tiles))
    assert counts == [len(tiling.plan_tiles(252, 336, 256, 32)), len(tiling.plan_tiles(252, 336, 128, 32))]
