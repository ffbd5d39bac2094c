"""Crafted model files and images get one clear line, never a traceback, a hang, a
memory blow-up or a crash of the interpreter (issue 15)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from cvstyle import torch7, torch7_modules
from cvstyle.cli import main
from cvstyle.errors import ImageError, ModelError
from cvstyle.imageio import decode_image
from cvstyle.testing import build_checkpoint
from cvstyle.validate import MAX_PADDING, module_list, validate_graph, validate_tree

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def write_t7(path: Path, checkpoint: object) -> Path:
    buffer = io.BytesIO()
    torch7.dump(checkpoint, buffer)
    path.write_bytes(buffer.getvalue())
    return path


def refusal(capsys, *args: str) -> str:
    """The one line ``cvstyle ARGS`` prints on stderr when it exits 3 (a model error)."""
    assert main(list(args)) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvstyle: error: "), captured.err
    return lines[0]


def layers(checkpoint: dict) -> list:
    return checkpoint["model"].children


# ---------------------------------------------------------------- Torch7 trees


def test_a_module_tree_containing_itself_is_refused(tmp_path, capsys):
    checkpoint = build_checkpoint("instance_norm", seed=1)
    residual = layers(checkpoint)[10]
    residual.fields["modules"][0].fields["modules"][0].fields["modules"].append(residual)
    line = refusal(capsys, "models", "info", str(write_t7(tmp_path / "cycle.t7", checkpoint)))
    assert "model.11.1.1.6: nn.Sequential contains itself" in line


def diamond(depth: int) -> dict:
    """A module shared under both branches of its parent, ``depth`` times over: a walk
    that does not notice visits it 2**depth times."""
    module = torch7_modules.relu()
    for _ in range(depth):
        module = torch7_modules.sequential(torch7_modules.concat_table(module, module), torch7_modules.cadd_table())
    return {"model": module}


def test_a_shared_subtree_is_refused_at_once(tmp_path):
    path = write_t7(tmp_path / "diamond.t7", diamond(30))
    assert path.stat().st_size < 25_000
    # In a child process: before the fix this walk ran for hours.
    script = "import sys; from cvstyle.cli import main; sys.exit(main(['models', 'info', sys.argv[1]]))"
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 3 and "appears twice in the network" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_module_nesting_and_count_are_bounded():
    module = torch7_modules.relu()
    for _ in range(100):
        module = torch7_modules.sequential(module)
    with pytest.raises(ModelError, match="nested deeper than 64 levels"):
        module_list(module)
    wide = torch7_modules.sequential(*(torch7_modules.relu() for _ in range(10_001)))
    with pytest.raises(ModelError, match="more than 10000 modules"):
        module_list(wide)


def conv_field(name: str, value):
    def mutate(checkpoint):
        layers(checkpoint)[1].fields[name] = value
    return mutate


def padding(value):
    def mutate(checkpoint):
        layers(checkpoint)[0].fields.update(pad_l=value, pad_r=value, pad_t=value, pad_b=value)
    return mutate


def norm_field(name: str, value):
    def mutate(checkpoint):
        layers(checkpoint)[2].fields[name] = value
    return mutate


def one_channel_output(checkpoint):
    last = [m for m in layers(checkpoint) if m.class_name == "nn.SpatialConvolution"][-1]
    last.fields.update(nOutputPlane=1, weight=last.fields["weight"][:1], bias=last.fields["bias"][:1])


def unequal_branches(checkpoint):
    layers(checkpoint)[10].children[0].children[1].fields["size"] = 3


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (padding(100_000), f"'pad_t' is 100000, outside 0..{MAX_PADDING}"),
        (padding(-2), "'pad_t' is -2, outside 0..256"),
        (conv_field("padW", 100_000), "'padW' is 100000, outside 0..256"),
        (conv_field("kW", 0), "'kW' is 0, outside 1..63"),
        (conv_field("dH", 10**9), "'dH' is 1000000000, outside 1..16"),
        (conv_field("nInputPlane", 4), "'nInputPlane' is 4, but its input has 3 channels"),
        (conv_field("nOutputPlane", 10**6), "'nOutputPlane' is 1000000, outside 1..4096"),
        (conv_field("nOutputPlane", 31), "'weight' has 3888 elements, expected 7533"),
        (conv_field("kH", 3.5), "'kH' is 3.5, not an integer"),
        (conv_field("kH", "9"), "'kH' is '9', not an integer"),
        (norm_field("eps", float("nan")), "'eps' is nan"),
        (norm_field("weight", np.ones(3, np.float32)), "'weight' has 3 elements, expected 16"),
        (one_channel_output, "outputs 1 channels, not 3"),
        (unequal_branches, "adds branches whose outputs differ in channels or size"),
    ],
)
def test_fields_are_checked_against_the_architecture(tmp_path, capsys, mutate, problem):
    checkpoint = build_checkpoint("instance_norm", seed=2)
    mutate(checkpoint)
    with pytest.raises(ModelError) as error:
        validate_tree(checkpoint)
    assert problem in str(error.value)
    line = refusal(capsys, "models", "info", str(write_t7(tmp_path / "bad.t7", checkpoint)))
    assert problem in line and len(line) < 300


def test_the_fixture_families_pass_validation():
    for family in ("eccv16", "instance_norm"):
        modules = validate_tree(build_checkpoint(family, seed=0))
        assert modules[0][0] == "model" and len(modules) == 71


def test_growth_and_channels_per_pixel_are_bounded():
    conv = torch7_modules.convolution(np.zeros((512, 3, 1, 1)), np.zeros(512))
    up = torch7_modules.full_convolution(np.zeros((512, 512, 1, 1)), np.zeros(512), stride=2, pad=0, adj=0)
    with pytest.raises(ModelError, match="2048 values per input pixel, beyond 1024"):
        validate_tree(torch7_modules.sequential(conv, up))
    pads = [torch7_modules.reflection_padding(200, 200, 200, 200) for _ in range(12)]
    with pytest.raises(ModelError, match="gains or loses more than 4096 pixels"):
        validate_tree(torch7_modules.sequential(*pads))


def test_a_huge_string_is_quoted_briefly(tmp_path, capsys):
    """The class version string of a module, 3 MB of binary."""
    junk = bytes(range(256)) * 12_000
    data = struct.pack("<ii", 4, 1) + struct.pack("<i", len(junk) + 2) + b"V " + junk
    path = tmp_path / "junk.t7"
    path.write_bytes(data)
    line = refusal(capsys, "models", "info", str(path))
    assert "bad class version" in line and len(line) < 300 and line.isprintable()


# ---------------------------------------------------------------- ONNX graphs


def graph(nodes, initializers, output_dims=(1, 3, None, None), opset=17):
    proto = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_dims))], initializers,
    )
    return helper.make_model(proto, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def negative_dims_graph():
    """The graph that made OpenCV abort ("corrupted size vs. prev_size", exit 134):
    an initializer with a negative dimension."""
    mask = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "mask")
    mask.dims[:] = [1, -3, 1, 1]
    return graph([helper.make_node("Mul", ["input", "mask"], ["output"])], [mask])


def test_negative_dimensions_are_refused_before_opencv(tmp_path, capsys):
    path = tmp_path / "negative.onnx"
    path.write_bytes(negative_dims_graph().SerializeToString())
    assert "initializer mask: dimension -3 outside 0.." in refusal(capsys, "models", "info", str(path))
    with pytest.raises(ModelError, match="dimension -3"):
        validate_graph(negative_dims_graph())


def test_opencv_does_abort_on_that_graph(tmp_path):
    """Why the graph is refused beforehand: OpenCV takes the interpreter down on it."""
    path = tmp_path / "negative.onnx"
    path.write_bytes(negative_dims_graph().SerializeToString())
    script = (
        "import sys, cv2, numpy as np\n"
        "net = cv2.dnn.readNetFromONNX(sys.argv[1])\n"
        "net.setInput(np.zeros((1, 3, 8, 8), np.float32)); net.forward()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=120)
    assert result.returncode != 0  # -6 (SIGABRT) or a cv2.error, by OpenCV version


def test_data_that_does_not_match_its_dimensions_is_refused():
    weights = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    weights.dims[:] = [3, 3, 4, 4]
    model = graph([helper.make_node("Conv", ["input", "w"], ["output"], kernel_shape=[4, 4])], [weights])
    with pytest.raises(ModelError, match=r"dimensions \[3, 3, 4, 4\] need 144 elements, the file holds 9"):
        validate_graph(model)


def test_data_that_is_not_whole_elements_is_refused():
    pads = numpy_helper.from_array(np.zeros(1, np.int64), "pads")
    pads.raw_data = bytes(9)
    with pytest.raises(ModelError, match="initializer pads: its data is not a whole number of elements"):
        validate_graph(graph([helper.make_node("Pad", ["input", "pads"], ["output"])], [pads]))


@pytest.mark.parametrize(
    "nodes, initializers, problem",
    [
        ([helper.make_node("Pad", ["input", "pads"], ["output"], mode="reflect")],
         [numpy_helper.from_array(np.array([0, 0, 100_000, 0, 0, 0, 0, 0], np.int64), "pads")],
         "shape entry 100000 outside -256..256"),
        ([helper.make_node("Conv", ["input", "w"], ["output"], kernel_shape=[1, 1], pads=[100_000] * 4)],
         [numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")], "pads 100000 outside 0..256"),
        ([helper.make_node("Relu", ["loop"], ["output"]), helper.make_node("Relu", ["output"], ["loop"])],
         [], "reads 'loop' before any node writes it"),
        ([helper.make_node("Identity", ["input"], ["output"]), helper.make_node("Identity", ["input"], ["output"])],
         [], "writes 'output', which already exists"),
    ],
)
def test_graph_fields_and_structure_are_checked(nodes, initializers, problem):
    with pytest.raises(ModelError) as error:
        validate_graph(graph(nodes, initializers))
    assert problem in str(error.value)


@pytest.mark.parametrize("dims, problem", [((1, 1, None, None), "1 channels, not 3"), ((1, 3), "rank 2, not an NCHW image")])
def test_outputs_that_are_not_images_are_refused(dims, problem):
    with pytest.raises(ModelError, match=problem):
        validate_graph(graph([helper.make_node("Identity", ["input"], ["output"])], [], output_dims=dims))


def test_a_malformed_opset_field_is_one_line(tmp_path, capsys):
    data = graph([helper.make_node("Identity", ["input"], ["output"])], []).SerializeToString()
    # Field 8 (opset_import) whose version (field 2) is length-delimited instead of a varint.
    opset = b"\x12\x03abc"
    path = tmp_path / "opset.onnx"
    path.write_bytes(data + b"\x42" + bytes([len(opset)]) + opset)
    line = refusal(capsys, "models", "info", str(path))
    assert line.endswith("not an ONNX model (the opset version of ai.onnx is not an integer)")


# ---------------------------------------------------------------- images


def corrupt_jpeg() -> bytes:
    jpeg = bytearray((SAMPLES / "rocket.jpg").read_bytes())
    scan = jpeg.find(b"\xff\xda") + 600
    jpeg[scan : scan + 400] = bytes(i * 37 % 251 for i in range(400))  # no 0xFF: no marker
    return bytes(jpeg)


def test_a_jpeg_with_corrupt_scan_data_is_refused_in_one_line(capfd):
    with pytest.raises(ImageError) as error:
        decode_image(corrupt_jpeg(), "rocket.jpg")
    assert str(error.value).startswith("rocket.jpg: corrupt JPEG data (Corrupt JPEG data:")
    assert capfd.readouterr().err == ""


def test_the_web_api_answers_400_to_a_corrupt_jpeg(tmp_path):
    httpx = pytest.importorskip("httpx")
    web = pytest.importorskip("cvstyle.web")
    from servers import running_server

    from cvstyle.testing import write_fixture_model

    model = write_fixture_model(tmp_path / "wave.t7", "instance_norm", 5)
    app = web.create_app([web.file_model(model, "test/wave")], workers=1, queue_size=2)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post(
            "/api/stylize", files={"image": ("rocket.jpg", corrupt_jpeg(), "image/jpeg")}, data={"model": "test/wave"}
        )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("rocket.jpg: corrupt JPEG data")


def test_a_png_with_a_bad_crc_is_refused_without_libpng_printing(capfd):
    image = np.zeros((16, 16, 3), np.uint8)
    png = bytearray(cv2.imencode(".png", image)[1].tobytes())
    chunk = png.find(b"IDAT")
    (length,) = struct.unpack(">I", png[chunk - 4 : chunk])
    png[chunk + 4 + length] ^= 0xFF  # the first byte of IDAT's CRC
    with pytest.raises(ImageError) as error:
        decode_image(bytes(png), "bad.png")
    assert str(error.value) == "bad.png: cannot decode the PNG data (libpng error: IDAT: CRC error)"
    assert capfd.readouterr().err == ""


# ---------------------------------------------------------------- engines' own output


@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_an_engine_refusing_a_graph_prints_only_cvstyles_line(tmp_path, capfd, engine):
    """An operator neither engine knows: OpenCV printed its own [ERROR] lines and ONNX
    Runtime its own log line before cvstyle's message."""
    path = tmp_path / "unknown.onnx"
    path.write_bytes(graph([helper.make_node("NoSuchOperator", ["input"], ["output"])], []).SerializeToString())
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 48, 3), 128, np.uint8))
    assert main(["apply", "-m", str(path), str(photo), "-o", str(tmp_path / "out.png"), "--engine", engine]) == 3
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cvstyle: error: {path}: "), err
    assert not (tmp_path / "out.png").exists()


def test_an_inference_failure_prints_only_cvstyles_line(tmp_path, capfd):
    """Residual branches whose sizes differ once run: ONNX Runtime logged the failure
    itself before cvstyle's one line."""
    shave = [numpy_helper.from_array(np.array(v, np.int64), n) for v, n in
             (([1, 1], "starts"), ([-1, -1], "ends"), ([2, 3], "axes"))]
    nodes = [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["shaved"]),
             helper.make_node("Sum", ["input", "shaved"], ["output"])]
    path = tmp_path / "mismatch.onnx"
    path.write_bytes(graph(nodes, shave).SerializeToString())
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((32, 48, 3), 128, np.uint8))
    assert main(["apply", "-m", str(path), str(photo), "-o", str(tmp_path / "out.png"), "--engine", "onnxruntime"]) == 3
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cvstyle: error: {path}: "), err
