"""cv2.dnn through cvstyle's runner equals an independent NumPy implementation.

The networks load as the opencv engine loads them: OpenCV 4 reads the .t7 with its Torch
importer, OpenCV 5 (which has none) reads the .t7's ONNX conversion.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import reference_net
from cvstyle import torch7
from cvstyle.errors import CvstyleError
from cvstyle.engines import load_runner
from cvstyle.engines.opencv import resolve_device
from cvstyle.runner import Preprocessing, StyleRunner, pad_to_network


@pytest.mark.parametrize("height,width", [(199, 301), (64, 48), (37, 53)])
def test_cv2_matches_reference_implementation(fixture_model, cat_bgr, height, width):
    image = cv2.resize(cat_bgr, (width, height), interpolation=cv2.INTER_AREA)
    net = load_runner(fixture_model, "opencv", "cpu")
    result = net(image)
    expected = reference_net.stylize(torch7.load(fixture_model)["model"], image)
    assert result.shape == image.shape and result.dtype == np.uint8
    difference = np.abs(result.astype(np.float64) - expected)
    assert difference.max() <= 1.0
    # The network really paints: the output is far from the photo.
    assert np.abs(result.astype(float) - image).mean() > 20


def test_builtin_sketch_matches_reference_implementation(cat_bgr):
    from pathlib import Path

    import cvstyle

    path = Path(cvstyle.__file__).parent / "data" / "sketch.t7"
    assert path.stat().st_size < 1_000_000
    result = load_runner(path, "opencv", "cpu")(cat_bgr)
    expected = reference_net.stylize(torch7.load(path)["model"], cat_bgr)
    assert np.abs(result.astype(np.float64) - expected).max() <= 1.0


def test_network_is_reused_across_sizes(instance_norm_model, cat_bgr):
    net = load_runner(instance_norm_model, "opencv", "cpu")
    small = net(cat_bgr[:50, :70])
    large = net(cat_bgr)
    again = net(cat_bgr[:50, :70])
    assert small.shape == (50, 70, 3) and large.shape == cat_bgr.shape
    assert np.array_equal(small, again)


def test_tiny_inputs(eccv16_model):
    net = load_runner(eccv16_model, "opencv", "cpu")
    for shape in [(1, 1, 3), (2, 3, 3), (5, 1, 3)]:
        image = np.full(shape, 128, np.uint8)
        assert net(image).shape == shape


def test_unknown_and_missing_devices(monkeypatch):
    with pytest.raises(CvstyleError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == "cpu"
    # A build without CUDA (the pip wheels): auto is the CPU, asking for CUDA is an error.
    monkeypatch.setattr("cvstyle.engines.opencv.cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    for device in ("cuda", "cuda-fp16"):
        with pytest.raises(CvstyleError, match="no CUDA"):
            resolve_device(device)
    # A build with CUDA and a device: auto takes it.
    monkeypatch.setattr("cvstyle.engines.opencv.cuda_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda-fp16") == "cuda-fp16"
    # No OpenCL platform: asking for it is an error.
    monkeypatch.setattr(cv2.ocl, "haveOpenCL", lambda: False)
    with pytest.raises(CvstyleError, match="no OpenCL platform"):
        resolve_device("opencl")


@pytest.mark.parametrize(
    "preprocessing",
    [Preprocessing(), Preprocessing(mean_bgr=(1.5, 20.25, 127.0), scale=1 / 255, swap_rb=True)],
)
@pytest.mark.parametrize("size", [(37, 53), (768, 1024)])
def test_preprocess_gives_opencv_s_blob(preprocessing, size):
    """The blob is bit for bit cv2.dnn.blobFromImage's (mean subtracted after the channel
    swap, then scaled), at an odd size and at one where blobFromImage is slow."""
    bgr = np.random.default_rng(1).integers(0, 256, (*size, 3), np.uint8)
    runner = StyleRunner(SimpleNamespace(streams=1), preprocessing)
    mean = preprocessing.mean_bgr[::-1] if preprocessing.swap_rb else preprocessing.mean_bgr
    expected = cv2.dnn.blobFromImage(pad_to_network(bgr), preprocessing.scale, None, mean,
                                     swapRB=preprocessing.swap_rb, crop=False)
    blob = runner.preprocess(bgr)
    assert blob.dtype == np.float32 and np.array_equal(blob, expected)


@pytest.mark.parametrize(
    "preprocessing",
    [Preprocessing(), Preprocessing(mean_bgr=(0.0, 0.0, 0.0), scale=1 / 255, swap_rb=True)],
)
def test_postprocess_rounds_and_saturates_like_numpy(preprocessing):
    """The OpenCV post-processing gives exactly the pixels of the plain NumPy formula:
    halves round to even, values below 0 and above 255 saturate."""
    rng = np.random.default_rng(0)
    output = rng.normal(0, 150, (1, 3, 37, 53)).astype(np.float32) * preprocessing.scale
    output[0, :, 0, :8] = (np.arange(8) - 104.5) * preprocessing.scale  # exact halves
    runner = StyleRunner(SimpleNamespace(streams=1), preprocessing)  # post-processing needs no engine
    planes = output[0, :, :31, :50]
    if preprocessing.swap_rb:
        planes = planes[::-1]
    expected = planes.transpose(1, 2, 0) / preprocessing.scale + np.asarray(preprocessing.mean_bgr)
    expected = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    assert np.array_equal(runner.postprocess(output, 31, 50), expected)
