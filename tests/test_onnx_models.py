""".onnx models: input presets, catalogue lines, the store, `models info`, and both engines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from httpserver import ModelServer, serve, sha256_digest, write_manifest

import onnx_graphs
import cvstyle
from cvstyle import Stylizer, presets, stylizer
from cvstyle.cli import main
from cvstyle.errors import ModelError
from cvstyle.modelinfo import describe, inspect_onnx

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
ENGINES = [
    "opencv",
    pytest.param(
        "onnxruntime",
        marks=pytest.mark.skipif(not HAVE_ORT, reason="ONNX Runtime is not installed (cvstyle[onnx])"),
    ),
    pytest.param(
        "openvino",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed (cvstyle[openvino])"
        ),
    ),
]
RED, BLUE = 2, 0  # channel indices in BGR


@pytest.fixture
def zero_first(tmp_path) -> Path:
    """A graph that zeroes the first channel of its input."""
    return onnx_graphs.channel_mask(tmp_path / "zero_first.onnx")


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("engine", ENGINES)
def test_rgb255_puts_red_first(zero_first, photo, engine):
    painted = Stylizer(zero_first, engine=engine, input_format="rgb255").stylize(photo)
    assert painted.shape == photo.shape
    assert (painted[:, :, RED] == 0).all()
    assert np.array_equal(painted[:, :, :RED], photo[:, :, :RED])  # blue and green untouched


@pytest.mark.parametrize("engine", ENGINES)
def test_vgg_puts_blue_first_and_adds_the_mean_back(zero_first, photo, engine):
    painted = Stylizer(zero_first, engine=engine).stylize(photo)  # vgg is the default
    assert (painted[:, :, BLUE] == round(presets.VGG.mean_bgr[0])).all()  # 0 + the blue mean
    assert np.array_equal(painted[:, :, 1:], photo[:, :, 1:])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("preset", list(presets.PRESETS))
def test_identity_graph_gives_back_the_photo(tmp_path, photo, engine, preset):
    model = onnx_graphs.identity(tmp_path / "identity.onnx")
    assert np.array_equal(Stylizer(model, engine=engine, input_format=preset).stylize(photo), photo)


def test_rgb01_scales_to_one(tmp_path, photo):
    # Halving a 0-1 input and reading the output as 0-1 halves the pixels; under rgb255
    # the same graph halves them too, so a wrong scale shows only with an offset graph.
    model = onnx_graphs.channel_mask(tmp_path / "half.onnx", (0.5, 0.5, 0.5))
    halved = np.rint(photo / 2).astype(np.uint8)
    assert np.abs(Stylizer(model, input_format="rgb01").stylize(photo).astype(int) - halved).max() <= 1
    stylizer_vgg = Stylizer(model, input_format="vgg").stylize(photo)
    assert np.abs(stylizer_vgg.astype(int) - halved).max() > 30  # (p - mean) / 2 + mean


def test_the_network_cache_keys_on_the_preprocessing(zero_first, photo):
    as_rgb = Stylizer(zero_first, engine="opencv", input_format="rgb255")
    as_vgg = Stylizer(zero_first, engine="opencv", input_format="vgg")
    assert as_rgb.runners[0] is not as_vgg.runners[0]
    assert as_rgb.preprocessing == presets.PRESETS["rgb255"] and as_vgg.preprocessing == presets.VGG
    assert Stylizer(zero_first, engine="opencv", input_format="rgb255").runners[0] is as_rgb.runners[0]
    assert not np.array_equal(as_rgb.stylize(photo), as_vgg.stylize(photo))


def test_unknown_input_format(zero_first):
    with pytest.raises(ModelError, match=r"unknown input format 'bgr': choose one of vgg, rgb255, rgb01"):
        Stylizer(zero_first, input_format="bgr")


def test_input_format_is_for_files_given_by_path(zero_first, photo, monkeypatch):
    """The built-in sketch keeps vgg whatever input_format says."""
    loads = []
    real = stylizer.load_runner
    monkeypatch.setattr(stylizer, "load_runner", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    cvstyle.clear_network_cache()
    mix = Stylizer([("sketch", 1.0), (zero_first, 0.0)], engine="opencv", input_format="rgb255")
    assert [network.preprocessing for network in mix.runners] == [presets.VGG, presets.PRESETS["rgb255"]]
    assert mix.name == "sketch+zero_first"


# ---------------------------------------------------------------- both engines on a trained-style net


@pytest.mark.skipif(not HAVE_ORT, reason="ONNX Runtime is not installed (cvstyle[onnx])")
def test_transformer_net_agrees_on_both_engines(tmp_path, photo):
    model = onnx_graphs.transformer_net(tmp_path / "transformer_net.onnx", seed=3)
    by_cv2 = Stylizer(model, engine="opencv", input_format="rgb255")
    by_ort = Stylizer(model, engine="onnxruntime", input_format="rgb255")
    assert (by_cv2.engine, by_ort.engine) == ("opencv", "onnxruntime")
    for image in (photo, photo[:45, :52]):  # sizes that are and are not multiples of 4
        a, b = by_cv2.stylize(image), by_ort.stylize(image)
        assert a.shape == b.shape == image.shape
        assert np.abs(a.astype(int) - b).max() <= 1
        assert a.std() > 10 and np.abs(a.astype(int) - image).mean() > 20  # painted, not flat or copied


@pytest.mark.skipif(not HAVE_ORT, reason="ONNX Runtime is not installed (cvstyle[onnx])")
def test_a_graph_exported_at_a_fixed_size_runs_at_any_size(tmp_path, photo):
    """torch.onnx.export fixes height and width unless told otherwise; both engines
    still take any image size."""
    model = onnx_graphs.transformer_net(tmp_path / "fixed.onnx", seed=4, fixed_size=(32, 32))
    assert inspect_onnx(model).inputs == ["input float32 [1, 3, 32, 32]"]
    by_ort = Stylizer(model, engine="onnxruntime", input_format="rgb255").stylize(photo)
    by_cv2 = Stylizer(model, engine="opencv", input_format="rgb255").stylize(photo)
    assert by_ort.shape == photo.shape
    assert np.abs(by_ort.astype(int) - by_cv2).max() <= 1


# ---------------------------------------------------------------- models info


def test_info_describes_the_graph(zero_first, tmp_path, capsys):
    info = inspect_onnx(zero_first)
    assert (info.ops, info.parameters, info.ir_version) == (["Mul"], 3, 8)
    assert info.inputs == ["input float32 [1, 3, height, width]"]
    assert info.outputs == ["output float32 [1, 3, ?, ?]"]
    assert main(["models", "info", str(zero_first)]) == 0
    out = capsys.readouterr().out
    assert "format:        ONNX (IR version 8, opset ai.onnx 17)" in out
    assert "nodes:         1 (1 x Mul)" in out and "--input-format" in out
    assert "preprocessing: rgb255: RGB 0-255, no mean" in describe(zero_first, "rgb255")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"<html><title>Not found</title></html>")
    assert main(["models", "info", str(garbage)]) == 3
    assert capsys.readouterr().err.strip() == f"cvstyle: error: {garbage}: not an ONNX model (wire type 4)"


def test_info_counts_a_larger_graph(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx_graphs.transformer_net(tmp_path / "net.onnx", width=4, residuals=1)
    proto = onnx.load(str(model))
    info = inspect_onnx(model)
    assert info.ops == [node.op_type for node in proto.graph.node]
    assert info.parameters == sum(int(np.prod(t.dims)) for t in proto.graph.initializer)


# ---------------------------------------------------------------- apply


def test_apply_with_input_format(workdir, zero_first, capsys):
    cv2.imwrite("cat.png", np.full((30, 40, 3), (10, 120, 230), np.uint8))
    assert main(["apply", "-m", str(zero_first), "--input-format", "rgb255", "cat.png", "-o", "rgb.png", "-v"]) == 0
    assert "zero_first: " in capsys.readouterr().err
    assert (cv2.imread("rgb.png") == (10, 120, 0)).all()
    assert main(["apply", "-m", str(zero_first), "cat.png", "-o", "vgg.png"]) == 0
    assert (cv2.imread("vgg.png") == (104, 120, 230)).all()
    assert main(["apply", "-m", str(zero_first), "cat.png"]) == 0
    assert Path("cat_zero_first.jpg").is_file()  # named without the suffix, as for .t7
    capsys.readouterr()
    assert main(["apply", "-m", str(zero_first), "--input-format", "bgr", "cat.png"]) == 2
    assert capsys.readouterr().err == (
        "cvstyle: error: unknown input format 'bgr': choose one of vgg, rgb255, rgb01\n"
    )
    assert main(["apply", "-m", "missing.onnx", "cat.png"]) == 3
    assert "model file missing.onnx does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- a catalogue line, end to end


def test_catalogue_onnx_model_from_fetch_to_apply(workdir, zero_first, capsys):
    data = zero_first.read_bytes()
    cv2.imwrite("cat.png", np.full((30, 40, 3), (10, 120, 230), np.uint8))
    with ModelServer() as server:
        server.routes["/dl/zero.onnx"] = serve(data)
        server.routes["/dl/plain.onnx"] = serve(data)
        manifest = write_manifest(
            workdir / "mine.txt",
            f"mine/zero {server.url('/dl/zero.onnx')} {sha256_digest(data)} input=rgb255 Red off",
            f"mine/plain {server.url('/dl/plain.onnx')} {sha256_digest(data)} Blue off",
        )
        args = ["--manifest", str(manifest)]
        assert main(["fetch-models", *args, "mine/zero", "mine/plain"]) == 0
    stored = workdir / "home" / "models" / "mine" / "zero.onnx"
    assert stored.read_bytes() == data
    assert not list(stored.parent.glob("*.part")) and not list(stored.parent.glob("*.t7"))
    capsys.readouterr()

    assert main(["models", *args, "verify", "zero"]) == 0
    assert capsys.readouterr().out == "mine/zero: ok\n"
    assert main(["models", *args]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line}
    assert rows["zero"][:5] == ["zero", "mine", str(len(data)), "B", "ok"]
    assert main(["models", "path", *args, "zero"]) == 0
    assert capsys.readouterr().out == f"{stored}\n"
    assert main(["models", "info", *args, "zero"]) == 0
    info = capsys.readouterr().out
    assert f"file:          {stored}" in info and "preprocessing: rgb255: RGB 0-255" in info

    for engine in ["opencv"] + (["onnxruntime"] if HAVE_ORT else []):
        assert main(["apply", "--model", "mine/zero", *args, "--engine", engine, "cat.png", "-o", "zero.png"]) == 0
        assert (cv2.imread("zero.png") == (10, 120, 0)).all()  # rgb255: the red channel is zeroed
        # The catalogue's input= wins over --input-format, which is for files given by path.
        assert main(["apply", "-m", "plain", *args, "--engine", engine, "--input-format", "rgb255",
                     "cat.png", "-o", "plain.png"]) == 0
        assert (cv2.imread("plain.png") == (104, 120, 230)).all()  # vgg: blue becomes its mean

    assert main(["models", "remove", *args, "zero"]) == 0
    assert not stored.exists()


def test_an_onnx_line_refuses_a_file_that_is_no_onnx_model(workdir, capsys):
    data = b"\x00\x01" * 100  # binary, matches its digest, but no ONNX model
    with ModelServer() as server:
        server.routes["/fake.onnx"] = serve(data)
        manifest = write_manifest(
            workdir / "mine.txt", f"mine/fake {server.url('/fake.onnx')} {sha256_digest(data)}"
        )
        assert main(["fetch-models", "--manifest", str(manifest), "fake"]) == 4
    out = capsys.readouterr().out
    assert "/fake.onnx matches its digest but is not an ONNX model" in out
    folder = workdir / "home" / "models" / "mine"
    assert not (folder / "fake.onnx").exists() and not (folder / "fake.onnx.part").exists()
