"""The openvino engine: the float64 reference within 1 grey level at any size, one
compiled model for every size, tiling with frozen statistics, and one-line errors for a
missing package and a model OpenVINO cannot compile (where ``auto`` moves on)."""

from __future__ import annotations

import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

import reference_net
from conftest import SAMPLES
from cvstyle import engines, onnx_export, torch7, tiling
from cvstyle.cli import main
from cvstyle.errors import CvstyleError
from cvstyle.engines import load_runner, ranking
from cvstyle.engines import openvino as ov_engine
from cvstyle.model import open_model
from cvstyle.stylizer import Stylizer
from cvstyle.tiling import TileSettings

pytest.importorskip("openvino", reason="the openvino engine needs openvino (cvstyle[openvino])")
onnx = pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def fresh_networks():
    engines.clear_network_cache()
    yield
    engines.clear_network_cache()


def _resized(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("height,width", [(199, 301), (37, 53), (64, 48)])
def test_matches_the_float64_reference(fixture_model, cat_bgr, height, width):
    image = _resized(cat_bgr, height, width)
    result = load_runner(fixture_model, "openvino", "cpu")(image)
    expected = reference_net.stylize(torch7.load(fixture_model)["model"], image)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert np.abs(result.astype(np.float64) - expected).max() <= 1.0
    assert np.abs(result.astype(float) - image).mean() > 20  # it really paints


def test_agrees_with_onnxruntime(fixture_model, cat_bgr):
    pytest.importorskip("onnxruntime")
    image = _resized(cat_bgr, 123, 157)
    ours = load_runner(fixture_model, "openvino", "cpu")(image).astype(int)
    theirs = load_runner(fixture_model, "onnxruntime", "cpu")(image).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_one_compiled_model_for_every_size(instance_norm_model, cat_bgr):
    runner = load_runner(instance_norm_model, "openvino", "cpu")
    network = runner.network
    compiled = network.compiled
    shape = compiled.inputs[0].get_partial_shape()
    assert shape[2].is_dynamic and shape[3].is_dynamic
    small, large = runner(cat_bgr[:50, :70]), runner(cat_bgr)
    again = runner(cat_bgr[:50, :70])
    assert small.shape == (50, 70, 3) and large.shape == cat_bgr.shape
    assert np.array_equal(small, again)
    assert runner.network is network and network.compiled is compiled
    assert (runner.engine, runner.device, runner.precision) == ("openvino", "cpu", "exact")


def test_a_shape_that_comes_back_runs_on_a_model_of_its_own(fixture_model, cat_bgr):
    """Frames of one size: from the second on, a model compiled for that size, still
    the float64 reference within 1; other sizes keep the any-size model; the most
    recently used shapes are kept, the oldest dropped."""
    runner = load_runner(fixture_model, "openvino", "cpu")
    network = runner.network
    frame = _resized(cat_bgr, 99, 131)
    expected = reference_net.stylize(torch7.load(fixture_model)["model"], frame)
    first = runner(frame)
    assert not network.shape_models
    again = [runner(frame) for _ in range(2)]
    assert len(network.shape_models) == 1
    (shape, specialised), = network.shape_models.items()
    assert specialised.compiled.inputs[0].get_partial_shape().is_static
    assert [list(dims) for _, dims in shape] == [[1, 3, 100, 132]]  # the network's padded size
    for result in [first, *again]:
        assert np.abs(result.astype(np.float64) - expected).max() <= 1.0
    runner(_resized(cat_bgr, 51, 77))  # seen once: the any-size model
    assert len(network.shape_models) == 1
    for height, width in [(51, 77), (51, 77), (65, 41), (65, 41)]:
        runner(_resized(cat_bgr, height, width))
    assert [dims[2:] for ((_, dims),) in network.shape_models] == [(52, 80), (68, 44)]


def test_a_shape_openvino_cannot_compile_stays_on_the_any_size_model(instance_norm_model, cat_bgr, monkeypatch):
    runner = load_runner(instance_norm_model, "openvino", "cpu")
    network = runner.network
    frame = _resized(cat_bgr, 60, 80)
    first = runner(frame)
    attempts = []

    class FailingCore:
        def compile_model(self, *args):
            attempts.append(args)
            raise RuntimeError("Exception from src/plugin.cpp:1:\nout of memory for this shape")

    monkeypatch.setattr(ov_engine, "_core", FailingCore)
    results = [runner(frame) for _ in range(3)]
    assert len(attempts) == 1  # tried once, not at every forward
    assert list(network.shape_models.values()) == [network.any_size]
    assert all(np.array_equal(result, first) for result in results)


def _convolutions(model) -> int:
    return sum(op.get_type_name() == "Convolution" for op in model.get_ops())


@pytest.mark.parametrize("family,rewritten", [("eccv16", True), ("instance_norm", False)])
def test_shapes_that_come_back_run_the_residual_trunk_in_winograd_form(family, rewritten, eccv16_model, instance_norm_model, cat_bgr):
    """Compiled per shape from the graph whose trunk is Winograd's (six products for
    each of eccv16's ten trunk convolutions); the any-size model keeps the plain trunk,
    quicker to compile for one forward. instance_norm has no such trunk."""
    runner = load_runner({"eccv16": eccv16_model, "instance_norm": instance_norm_model}[family], "openvino", "cpu")
    network = runner.network
    for _ in range(2):
        runner(_resized(cat_bgr, 47, 59))
    assert network.shape_source is not None and (network.shape_source is not network.model) == rewritten
    assert _convolutions(network.shape_source) == _convolutions(network.model) + (50 if rewritten else 0)


KEPT_MEMORY_SCRIPT = """
import sys
import numpy as np
from cvstyle import engines
from cvstyle.memory import resident_memory
from cvstyle.model import open_model
network = engines.build_network(open_model(sys.argv[1]).graph, "openvino", "cpu", "m", pooled=sys.argv[2] == "pooled")
blob = np.zeros((1, 3, 768, 768), np.float32)
before = resident_memory()
for _ in range(3):
    network.run({"input": blob})
kept = resident_memory() - before
network.release_memory()
print(kept, resident_memory() - before, len(network.shape_models))
"""


@pytest.mark.parametrize("mode", ["pooled", "unpooled"])
def test_networks_keep_working_memory_until_they_release_it(instance_norm_model, mode):
    """Forwards keep their working memory (a pooled network's repeated shape gets a
    model of its own, an unpooled one, a staged run's stage, keeps one model), and
    release_memory hands it back. Measured in a fresh process, whose memory no earlier
    test has shaped."""
    done = subprocess.run([sys.executable, "-c", KEPT_MEMORY_SCRIPT, str(instance_norm_model), mode],
                          capture_output=True, text=True, timeout=300, check=True)
    kept, released, models = map(int, done.stdout.split())
    assert models == (1 if mode == "pooled" else 0)
    # 768x768 in float32 is 2.4 MB a channel; a forward's working memory holds many such maps.
    assert kept > 60 << 20 and released < kept / 2, (kept, released)


def test_memory_openvino_refuses_to_release_stays_and_the_network_runs_on(instance_norm_model, caplog):
    class BusyModel:  # OpenVINO's answer when it finds an infer request running
        def __init__(self, compiled):
            self.compiled = compiled

        def release_memory(self):
            raise RuntimeError("Exception from src/inference/src/cpp/compiled_model.cpp:1:\n"
                               "Attempt to call release_memory() on a compiled model in a busy state.")

        def __getattr__(self, name):
            return getattr(self.compiled, name)

    network = engines.build_network(open_model(instance_norm_model).graph, "openvino", "cpu", "m", pooled=False)
    blob = np.zeros((1, 3, 64, 80), np.float32)
    first = network.run({"input": blob})[0]
    network.any_size.compiled = BusyModel(network.any_size.compiled)
    with caplog.at_level(logging.INFO, logger=ov_engine.__name__):
        network.release_memory()
    assert "openvino keeps a model's working memory (Attempt to call release_memory()" in caplog.text
    assert np.array_equal(network.run({"input": blob})[0], first)


def test_tiles_equal_one_pass_and_frozen_statistics_agree_with_onnxruntime(instance_norm_model, cat_bgr):
    """Exact statistics (staged runs) give the untiled picture; estimated statistics
    frozen into the tiles give what ONNX Runtime gives with them."""
    pytest.importorskip("onnxruntime")
    photo = _resized(cat_bgr, 251, 333)
    model = open_model(instance_norm_model)
    runner = load_runner(instance_norm_model, "openvino", "cpu")
    whole = runner(photo).astype(int)
    settings = TileSettings(statistics_pixels=120 * 90, max_tile=128)
    tiled = tiling.stylize_large(runner, model, photo, settings, statistics="exact")
    assert np.abs(tiled.astype(int) - whole).max() <= 2  # as on the other engines (test_tiling)
    frozen = tiling.stylize_large(runner, model, photo, settings, statistics="estimate").astype(int)
    reference = load_runner(instance_norm_model, "onnxruntime", "cpu")
    assert np.abs(frozen - tiling.stylize_large(reference, model, photo, settings, statistics="estimate")).max() <= 1
    assert np.abs(frozen - whole).mean() > 1  # not vacuous: the estimate differs from the exact result


FRESH_STAGES_SCRIPT = """
import sys
import cv2
from cvstyle import tiling
from cvstyle.engines import clear_network_cache, load_runner
from cvstyle.model import open_model
from cvstyle.tiling import TileSettings
photo = cv2.resize(cv2.imread(sys.argv[2]), (333, 251), interpolation=cv2.INTER_AREA)
settings = TileSettings(statistics_pixels=120 * 90, max_tile=128)
for _ in range(int(sys.argv[3])):
    clear_network_cache()  # new stage networks: their first forwards, two streams at once
    runner = load_runner(sys.argv[1], "openvino", "cpu")
    tiling.stylize_large(runner, open_model(sys.argv[1]), photo, settings, statistics="exact")
print("done")
"""


def test_staged_runs_on_fresh_stage_networks_keep_the_process_whole(instance_norm_model):
    """Two streams of a free-size model reading their inputs in place corrupted the heap
    within a few such rounds (an abort or a segmentation fault), more often with the
    cores oversubscribed: two processes of their own run at once, so that a crash
    fails this test and not the suite."""
    command = [sys.executable, "-c", FRESH_STAGES_SCRIPT, str(instance_norm_model), str(SAMPLES / "chelsea.png"), "15"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0 and out.split() == ["done"], (process.returncode, err[-2000:])


def test_missing_package_is_one_line_naming_pip(monkeypatch, capsys, eccv16_model, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), np.full((20, 20, 3), 120, np.uint8))
    code = main(["apply", str(photo), "-m", str(eccv16_model), "-o", str(tmp_path), "--engine", "openvino"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["cvstyle: error: the openvino engine needs openvino: pip install -e '.[openvino]'"]
    assert not list(tmp_path.glob("in_*"))
    assert "openvino" not in ranking.installed_engines()


def _graph_openvino_cannot_convert(tmp_path):
    """An identity network scaled by Det(2*I): ONNX Runtime runs Det, OpenVINO has no
    conversion rule for it."""
    helper = onnx.helper
    nodes = [helper.make_node("Det", ["matrix"], ["det"]), helper.make_node("Mul", ["input", "det"], ["output"])]
    graph = helper.make_graph(
        nodes, "det",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 3, None, None])],
        [onnx.numpy_helper.from_array(np.eye(2, dtype=np.float32) * np.float32(0.5) ** 0.5, "matrix")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)], ir_version=8)
    path = tmp_path / "det.onnx"
    onnx.save(model, path)
    return path


def test_a_model_openvino_cannot_compile_is_one_line(capsys, tmp_path):
    model = _graph_openvino_cannot_convert(tmp_path)
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), np.full((20, 20, 3), 120, np.uint8))
    code = main(["apply", str(photo), "-m", str(model), "-o", str(tmp_path), "--engine", "openvino"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1
    assert err[0].startswith(f"cvstyle: error: {model}: openvino cannot compile this model (")
    assert "Det" in err[0] and "Exception from" not in err[0]


def test_auto_falls_back_to_the_next_engine_and_says_so(monkeypatch, caplog, capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _graph_openvino_cannot_convert(tmp_path)
    monkeypatch.setattr(ranking, "ranked", lambda build, wanted: ["openvino", "onnxruntime", "opencv"])
    with caplog.at_level(logging.INFO, logger="cvstyle"):
        stylizer = Stylizer(str(model), engine="auto", device="cpu", input_format="rgb01")
    assert stylizer.engine == "onnxruntime"
    assert any("openvino cannot compile" in r.message and "trying onnxruntime" in r.message for r in caplog.records)
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), np.full((20, 20, 3), 120, np.uint8))
    engines.clear_network_cache()
    code = main(["apply", str(photo), "-m", str(model), "-o", str(tmp_path), "--input-format", "rgb01", "-v"])
    err = capsys.readouterr().err
    assert code == 0
    assert "openvino cannot compile this model" in err and "engine auto: trying onnxruntime instead" in err
    assert f"{model.stem}: onnxruntime on cpu, exact" in err


def test_reason_is_the_line_that_says_what_failed():
    error = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:105:\nCheck 'false' failed at x.cpp:151:\n"
        "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\nSummary:\n"
        "-- No conversion rule found for operations: Det-18\nTo facilitate the conversion, refer to ..."
    )
    assert ov_engine.reason(error) == "No conversion rule found for operations: Det-18"
    assert ov_engine.reason(RuntimeError("Exception from a.cpp:1:\nout of memory")) == "out of memory"


def test_cuda_is_refused_in_one_line(eccv16_model):
    with pytest.raises(CvstyleError, match="^the openvino engine has no CUDA device"):
        load_runner(eccv16_model, "openvino", "cuda")


@pytest.mark.parametrize("fixed_size", [None, (32, 32)])
def test_user_onnx_models_at_any_size(tmp_path, cat_bgr, fixed_size):
    """A PyTorch-example-shaped graph, also one exported at a fixed height and width,
    agrees with ONNX Runtime at sizes that are and are not multiples of 4."""
    pytest.importorskip("onnxruntime")
    import onnx_graphs

    model = onnx_graphs.transformer_net(tmp_path / "net.onnx", seed=3, fixed_size=fixed_size)
    ours = Stylizer(model, engine="openvino", device="cpu", input_format="rgb255")
    theirs = Stylizer(model, engine="onnxruntime", device="cpu", input_format="rgb255")
    for image in (_resized(cat_bgr, 47, 61), _resized(cat_bgr, 45, 52)):
        a, b = ours.stylize(image), theirs.stylize(image)
        assert a.shape == image.shape
        assert np.abs(a.astype(int) - b).max() <= 1
