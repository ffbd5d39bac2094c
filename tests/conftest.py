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


@pytest.fixture
def photo(cat_bgr) -> np.ndarray:
    """A small photo with odd sides (not multiples of the networks' 4): the cat at 61x47.
    Test modules needing another size define their own ``photo``."""
    return cv2.resize(cat_bgr, (61, 47), interpolation=cv2.INTER_AREA)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty cvstyle home (CVSTYLE_HOME): no models stored, nothing downloaded."""
    home = tmp_path / "home"
    monkeypatch.setenv("CVSTYLE_HOME", str(home))
    return home


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty current directory, with an empty cvstyle home inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path


# OpenCV 5 removed the Torch7 importer. Tests of that importer itself (or comparing with
# it) run under OpenCV 4 only; everything else goes through the ONNX path under OpenCV 5.
needs_torch_importer = pytest.mark.skipif(
    not hasattr(cv2.dnn, "readNetFromTorch"),
    reason=f"OpenCV {cv2.__version__} has no Torch importer (cv2.dnn.readNetFromTorch): OpenCV 4 only",
)
