"""Engine selection, the ONNX Runtime runner, the conversion cache and the OpenCV 5 path."""

from __future__ import annotations

import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import needs_torch_importer
import cvstyle
from cvstyle import engines, model, onnx_export
from cvstyle.engines import choose_engine, load_runner
from cvstyle.engines import onnxruntime as ort_engine
from cvstyle.engines import ranking
from cvstyle.engines.onnxruntime import CPU, CUDA, TENSORRT
from cvstyle.errors import CvstyleError, ModelError
from cvstyle.runner import Preprocessing
from cvstyle.testing import write_fixture_model

ORT_REASON = "ONNX Runtime is not installed (cvstyle[onnx])"
pytest.importorskip("onnx", reason="the converter needs the onnx package (cvstyle[onnx])")


@pytest.fixture
def model_copy(tmp_path, instance_norm_model):
    """A private copy, so that conversions cached next to it stay in this test."""
    return shutil.copy(instance_norm_model, tmp_path / "style.t7")


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b).max())


# ---------------------------------------------------------------- choosing

FAKE_TIMINGS = {"exact": {"onnxruntime": 1.0, "opencv": 2.0, "openvino": 3.0}, "fast": {}}


@pytest.mark.parametrize(
    "providers,device,expected",
    [
        ([], "auto", "opencv"),  # onnxruntime not installed
        ([CPU], "auto", "onnxruntime"),  # the fastest measured (FAKE_TIMINGS)
        ([CPU], "cpu", "onnxruntime"),
        ([CUDA, CPU], "auto", "onnxruntime"),
        ([CUDA, CPU], "cuda", "onnxruntime"),
        ([CUDA, CPU], "cuda-fp16", "opencv"),  # FP16 needs TensorRT in onnxruntime
        ([TENSORRT, CUDA, CPU], "cuda-fp16", "onnxruntime"),
        ([CPU], "cuda", "opencv"),  # OpenCV's CUDA backend, or its clear error
        ([CUDA, CPU], "opencl", "opencv"),
    ],
)
def test_auto_engine(monkeypatch, providers, device, expected):
    monkeypatch.setattr(ort_engine, "available_providers", lambda: providers)
    monkeypatch.setattr(ranking, "timings", lambda build: FAKE_TIMINGS)
    monkeypatch.setattr(engines, "cuda_available", lambda: False)
    assert choose_engine("auto", device, "style.t7") == expected


def test_auto_prefers_opencv_cuda_over_onnxruntime_cpu(monkeypatch):
    monkeypatch.setattr(ort_engine, "available_providers", lambda: [CPU])
    monkeypatch.setattr(engines, "cuda_available", lambda: True)
    assert choose_engine("auto", "auto", "style.t7") == "opencv"


def test_auto_needs_the_converter_for_t7_only(monkeypatch):
    monkeypatch.setattr(ort_engine, "available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(engines.importlib.util, "find_spec", lambda name: None)
    assert choose_engine("auto", "auto", "style.t7") == "opencv"
    assert choose_engine("auto", "auto", "style.onnx") == "onnxruntime"


def test_explicit_and_unknown_engines():
    assert choose_engine("opencv", "cuda", "m.t7") == "opencv"
    assert choose_engine("onnxruntime", "cpu", "m.t7") == "onnxruntime"
    with pytest.raises(CvstyleError, match="unknown engine 'tensorflow'"):
        choose_engine("tensorflow", "cpu", "m.t7")


def test_provider_lists():
    providers = ort_engine.provider_list
    assert providers("cpu", [CUDA, CPU]) == [(CPU, {})]
    assert providers("auto", [CPU]) == [(CPU, {})]
    assert providers("auto", [TENSORRT, CUDA, CPU]) == [(CUDA, {}), (CPU, {})]
    assert providers("cuda-fp16", [TENSORRT, CUDA, CPU])[0] == (TENSORRT, {"trt_fp16_enable": True})
    with pytest.raises(CvstyleError, match=r"pip install -e '\.\[gpu\]'"):
        providers("cuda", [CPU])
    with pytest.raises(CvstyleError, match="TensorRT"):
        providers("cuda-fp16", [CUDA, CPU])
    with pytest.raises(CvstyleError, match="no OpenCL"):
        providers("opencl", [CPU])
    with pytest.raises(CvstyleError, match="unknown device"):
        providers("tpu", [CPU])


# ---------------------------------------------------------------- running


@needs_torch_importer
def test_onnxruntime_engine_matches_opencv(model_copy, photo):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    runner = load_runner(model_copy, "onnxruntime", "cpu")
    assert (runner.engine, runner.device, runner.network.providers) == ("onnxruntime", "cpu", [CPU])
    expected = load_runner(model_copy, "opencv", "cpu")(photo)
    assert _max_diff(runner(photo), expected) <= 1
    for shape in [(1, 1, 3), (5, 2, 3)]:  # tiny inputs are padded like OpenCV's
        assert runner(np.full(shape, 90, np.uint8)).shape == shape


def test_onnxruntime_without_gpu_refuses_cuda(model_copy):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    if CUDA in ort_engine.available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(CvstyleError, match="device 'cuda' with onnxruntime"):
        load_runner(model_copy, "onnxruntime", "cuda")


def test_auto_engine_on_this_machine(model_copy):
    runner = load_runner(model_copy)
    assert runner.engine == choose_engine("auto", "auto", model_copy)
    assert runner.device in ("cpu", "cuda")


def test_conversion_is_cached_by_digest(model_copy, monkeypatch):
    first = model.cached_onnx(model_copy)
    assert first.parent == model_copy.parent
    assert first.name.startswith("style.") and first.suffix == ".onnx"
    assert len(first.name.split(".")[1]) == 16
    monkeypatch.setattr(onnx_export, "model_proto", lambda path: pytest.fail("converted twice"))
    assert model.cached_onnx(model_copy) == first
    monkeypatch.undo()
    write_fixture_model(model_copy, "instance_norm", seed=3)  # new weights, same name
    assert model.cached_onnx(model_copy) != first


def test_conversion_falls_back_to_the_user_cache(model_copy, tmp_path, monkeypatch):
    cache = tmp_path / "user-cache"
    monkeypatch.setattr(model.platformdirs, "user_cache_dir", lambda app: str(cache))
    write = model.write_atomically

    def read_only_model_folder(target, data):
        if target.parent == model_copy.parent:
            raise PermissionError(13, "Permission denied")
        write(target, data)

    monkeypatch.setattr(model, "write_atomically", read_only_model_folder)
    converted = model.cached_onnx(model_copy)
    assert converted.parent == cache / "onnx" and converted.is_file()


def test_opencv5_path_converts_and_reads_onnx(model_copy, photo, monkeypatch):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    expected = load_runner(model_copy, "onnxruntime", "cpu")(photo)
    for stale in model_copy.parent.glob("style.*.onnx"):
        stale.unlink()
    cvstyle.clear_network_cache()  # as a new process would start
    monkeypatch.delattr(cv2.dnn, "readNetFromTorch", raising=False)  # what OpenCV 5 looks like
    runner = load_runner(model_copy, "opencv", "cpu")
    assert runner.engine == "opencv"
    assert list(model_copy.parent.glob("style.*.onnx"))
    assert _max_diff(runner(photo), expected) <= 1


def test_onnx_models_load_directly_with_their_preprocessing(model_copy, tmp_path, photo):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    onnx_file = onnx_export.convert(model_copy, tmp_path / "rgb.onnx")
    rgb = Preprocessing(mean_bgr=(0.0, 0.0, 0.0), swap_rb=True)
    by_ort = load_runner(onnx_file, "onnxruntime", "cpu", rgb)
    by_cv2 = load_runner(onnx_file, "opencv", "cpu", rgb)
    assert by_ort.preprocessing == by_cv2.preprocessing == rgb
    assert _max_diff(by_ort(photo), by_cv2(photo)) <= 1


@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_bad_onnx_files(tmp_path, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime", reason=ORT_REASON)
    with pytest.raises(ModelError, match="no such model file"):
        load_runner(tmp_path / "missing.onnx", engine, "cpu")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelError, match="not an ONNX model|cannot load this model"):
        load_runner(garbage, engine, "cpu")


SHARED_ARENA_SCRIPT = """
import sys
import numpy as np
from cvstyle import engines
from cvstyle.memory import resident_memory
from cvstyle.model import open_model
graph = open_model(sys.argv[1]).graph
networks = [engines.build_network(graph, "onnxruntime", "cpu", "m", pooled=sys.argv[2] == "pooled") for _ in range(4)]
blob = np.zeros((1, 3, 640, 640), np.float32)
before = resident_memory()
for network in networks:
    network.run({"input": blob})
print(resident_memory() - before)
"""


def test_unpooled_onnxruntime_sessions_share_one_arena(model_copy):
    """A staged run's stage networks (unpooled) run in turn on one arena: four of them
    keep one forward's working memory (no fresh memory to fault in at every run), where
    four pooled sessions keep four."""
    kept = {}
    for mode in ("pooled", "unpooled"):
        done = subprocess.run([sys.executable, "-c", SHARED_ARENA_SCRIPT, str(model_copy), mode],
                              capture_output=True, text=True, timeout=300, check=True)
        kept[mode] = int(done.stdout.split()[-1])
    # A forward's working memory: several 640x640 maps of 16 channels, 26 MB each.
    assert kept["pooled"] > 4 * (40 << 20) and kept["pooled"] / 8 < kept["unpooled"] < kept["pooled"] / 2, kept
