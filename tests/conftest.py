"""Shared fixtures: architecture-faithful model files and sample photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cvstyle.testing import write_fixture_model

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def eccv16_model(model_dir) -> Path:
    return write_fixture_model(model_dir / "eccv16_fixture.t7", "eccv16", seed=1)


@pytest.fixture(scope="session")
def instance_norm_model(model_dir) -> Path:
    return write_fixture_model(model_dir / "instance_norm_fixture.t7", "instance_norm", seed=2)


@pytest.fixture(params=["eccv16", "instance_norm"])
def fixture_model(request, eccv16_model, instance_norm_model) -> Path:
    """Each fixture family in turn."""
    return {"eccv16": eccv16_model, "instance_norm": instance_norm_model}[request.param]


@pytest.fixture(scope="session")
def cat_bgr() -> np.ndarray:
    image = cv2.imread(str(SAMPLES / "chelsea.png"))
    assert image is not None
    return image


# OpenCV 5 removed the Torch7 importer. Tests of that importer itself (or comparing with
# it) run under OpenCV 4 only; everything else goes through the ONNX path under OpenCV 5.
needs_torch_importer = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromTorch"),
    reason=f"OpenCV {cv2.__version__} has no Torch importer (cv2.dnn.readNetFromTorch): OpenCV 4 only",
)
