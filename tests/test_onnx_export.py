"""Torch7 -> ONNX conversion: the converted graph computes what the .t7 computes.

ONNX Runtime and OpenCV's ONNX importer on the converted graph are compared with
OpenCV's Torch importer on the .t7 and with the float64 NumPy reference; malformed
and foreign models must fail with one clear ModelError, also under fuzzing.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_net
from conftest import needs_torch_importer
from cvstyle import onnx_export, torch7_modules, torch7
from cvstyle.cli import main
from cvstyle import surgery
from cvstyle.engines import load_runner
from cvstyle.engines.opencv import read_torch
from cvstyle.errors import ModelError
from cvstyle.modelinfo import SUPPORTED_MODULES
from cvstyle.runner import VGG_MEAN_BGR
from cvstyle.torch7 import TorchObject

pytest.importorskip("onnx", reason="the converter needs the onnx package (cvstyle[onnx])")
ORT_REASON = "ONNX Runtime is not installed (cvstyle[onnx])"

SIZES = [(47, 61), (199, 301)]  # (height, width), neither a multiple of 4
BUILTIN_SKETCH = Path(onnx_export.__file__).with_name("data") / "sketch.t7"


@pytest.fixture(scope="session")
def converted(model_dir, eccv16_model, instance_norm_model) -> dict:
    """family -> (.t7 path, converted .onnx path)."""
    return {
        family: (t7, onnx_export.convert(t7, model_dir / f"{family}_converted.onnx"))
        for family, t7 in [("eccv16", eccv16_model), ("instance_norm", instance_norm_model)]
    }


@pytest.fixture(params=["eccv16", "instance_norm"])
def family_files(request, converted):
    return converted[request.param]


def _resized(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def test_converter_covers_every_supported_module():
    assert onnx_export.CONVERTIBLE_MODULES == SUPPORTED_MODULES


@needs_torch_importer
@pytest.mark.parametrize("height,width", SIZES)
def test_onnxruntime_matches_opencv_torch_importer(family_files, cat_bgr, height, width):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    t7, converted_onnx = family_files
    image = _resized(cat_bgr, height, width)
    expected = load_runner(t7, "opencv", "cpu")(image)
    result = load_runner(converted_onnx, "onnxruntime", "cpu")(image)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert _max_diff(result, expected) <= 1


@needs_torch_importer
@pytest.mark.parametrize("height,width", SIZES)
def test_opencv_onnx_importer_matches_torch_importer(family_files, cat_bgr, height, width):
    # What OpenCV 5 runs; OpenCV 4's ONNX importer stands in for it here.
    t7, converted_onnx = family_files
    image = _resized(cat_bgr, height, width)
    expected = load_runner(t7, "opencv", "cpu")(image)
    result = load_runner(converted_onnx, "opencv", "cpu")(image)
    assert _max_diff(result, expected) <= 1


@pytest.mark.parametrize("height,width", SIZES)
def test_opencv_runs_the_converted_graph_like_onnxruntime(family_files, cat_bgr, height, width):
    # OpenCV 5 runs every .t7 this way; there ONNX Runtime and the float64 reference
    # (below, and tests/test_runner.py) are the oracles.
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    _, converted_onnx = family_files
    image = _resized(cat_bgr, height, width)
    result = load_runner(converted_onnx, "opencv", "cpu")(image)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert _max_diff(result, load_runner(converted_onnx, "onnxruntime", "cpu")(image)) <= 1


def _unrounded(runner, image: np.ndarray) -> np.ndarray:
    """A runner's output pixels before rounding to uint8."""
    height, width = image.shape[:2]
    raw = runner.infer(runner.preprocess(image))[0, :, :height, :width].transpose(1, 2, 0)
    return np.clip(raw + np.asarray(VGG_MEAN_BGR), 0, 255)


def test_converted_graph_matches_float64_reference(family_files, cat_bgr):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    t7, converted_onnx = family_files
    image = _resized(cat_bgr, *SIZES[0])
    expected = reference_net.stylize(torch7.load(t7)["model"], image)
    # Exact up to float32 rounding: the graph keeps the model's instance-norm eps,
    # where OpenCV's Torch importer uses 1e-9 (~0.02 grey levels off).
    assert _max_diff(_unrounded(load_runner(converted_onnx, "onnxruntime", "cpu"), image), expected) < 0.01
    by_opencv = load_runner(converted_onnx, "opencv", "cpu")
    assert _max_diff(_unrounded(by_opencv, image), expected) < 0.05


@needs_torch_importer
def test_builtin_sketch_model_converts(tmp_path, cat_bgr):
    out = onnx_export.convert(BUILTIN_SKETCH, tmp_path / "sketch.onnx")
    image = _resized(cat_bgr, 61, 47)
    expected = load_runner(BUILTIN_SKETCH, "opencv", "cpu")(image)
    assert _max_diff(load_runner(out, "opencv", "cpu")(image), expected) <= 1


def test_graph_has_dynamic_height_and_width(converted):
    import onnx

    model = onnx.load(str(converted["instance_norm"][1]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    assert model.opset_import[0].version == onnx_export.OPSET


@pytest.mark.parametrize("replace", [False, True])
def test_intermediate_tensors_as_outputs(converted, cat_bgr, replace):
    """with_outputs exposes a normalisation's input; with replace, the graph is cut down
    to the nodes that tensor needs, and the value is the same."""
    import onnx

    ort = pytest.importorskip("onnxruntime", reason=ORT_REASON)
    model = onnx.load(str(converted["instance_norm"][1]))
    norm_inputs = [n.input[0] for n in model.graph.node if n.op_type == "InstanceNormalization"]
    second = norm_inputs[1]
    extended = surgery.with_outputs(model, [second], replace=replace)
    onnx.checker.check_model(extended)
    session = ort.InferenceSession(extended.SerializeToString(), providers=["CPUExecutionProvider"])
    blob = cv2.dnn.blobFromImage(_resized(cat_bgr, 64, 48), 1.0, None, VGG_MEAN_BGR)
    outputs = session.run(None, {"input": blob})
    full = ort.InferenceSession(
        surgery.with_outputs(model, [second]).SerializeToString(), providers=["CPUExecutionProvider"]
    ).run([second], {"input": blob})[0]
    assert np.array_equal(outputs[-1], full)
    if replace:
        # Padding, two convolutions, one normalisation and one ReLU lead to it.
        assert len(outputs) == 1 and len(extended.graph.node) <= 6
        assert len(extended.graph.initializer) < len(model.graph.initializer) // 4
    else:
        assert len(outputs) == 2 and len(extended.graph.node) == len(model.graph.node)


def _tree_with(module: TorchObject) -> TorchObject:
    return torch7_modules.sequential(torch7_modules.reflection_padding(1, 1, 1, 1), torch7_modules.sequential(torch7_modules.relu(), module))


def every_module_checkpoint() -> dict:
    """A tiny network holding every module type the converter knows, SpatialConvolutionMM
    with its matrix-shaped weight and asymmetric paddings included."""
    rng = np.random.default_rng(7)

    def conv(n_in: int, n_out: int, stride: int = 1, pad: int = 0) -> TorchObject:
        weight = rng.normal(0, (n_in * 9) ** -0.5, (n_out, n_in, 3, 3))
        return torch7_modules.convolution(weight, rng.normal(0, 0.1, n_out), stride, pad)

    def affine(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n)

    mm = conv(3, 3, 1, 1)
    mm.class_name = "nn.SpatialConvolutionMM"
    mm.fields["weight"] = mm.fields["weight"].reshape(3, 27)
    zero = torch7_modules.reflection_padding(1, 2, 0, 1)
    zero.class_name = "nn.SpatialZeroPadding"
    residual = torch7_modules.concat_table(torch7_modules.sequential(conv(4, 4), torch7_modules.instance_norm(*affine(4))), torch7_modules.shave_image(1))
    model = torch7_modules.sequential(
        torch7_modules.reflection_padding(2, 3, 1, 4), conv(3, 4, 2, 1),
        torch7_modules.batch_norm(rng.normal(0, 0.1, 4), rng.uniform(0.5, 2, 4), *affine(4)), torch7_modules.relu(),
        torch7_modules.sequential(residual, torch7_modules.cadd_table()),
        torch7_modules.sequential(torch7_modules.concat_table(torch7_modules.identity(), conv(4, 4, 1, 1)), torch7_modules.cadd_table()),
        torch7_modules.full_convolution(rng.normal(0, 0.3, (4, 3, 3, 3)), rng.normal(0, 0.1, 3), 2, 1, 1),
        zero, mm, torch7_modules.tanh(), torch7_modules.mul_constant(2.5), torch7_modules.total_variation(1e-6),
    )
    return {"model": model, "opt": {}}


def _t7_bytes(checkpoint: object) -> bytes:
    buffer = io.BytesIO()
    torch7.dump(checkpoint, buffer)
    return buffer.getvalue()


@needs_torch_importer
def test_every_module_type_matches_opencv(tmp_path):
    pytest.importorskip("onnxruntime", reason=ORT_REASON)
    import onnxruntime

    path = tmp_path / "every.t7"
    path.write_bytes(_t7_bytes(every_module_checkpoint()))
    names = {m.class_name for m in _modules(torch7.load(path)["model"])}
    assert names == onnx_export.CONVERTIBLE_MODULES
    blob = np.random.default_rng(1).normal(0, 1, (1, 3, 13, 17)).astype(np.float32)
    net = read_torch(path)
    net.enableFusion(False)
    net.setInput(blob)
    expected = net.forward()
    session = onnxruntime.InferenceSession(onnx_export.model_proto(path).SerializeToString())
    result = session.run(None, {onnx_export.INPUT_NAME: blob})[0]
    assert result.shape == expected.shape == (1, 3, 15, 21)
    assert np.abs(result - expected).max() < 1e-3


def _modules(module: TorchObject) -> list[TorchObject]:
    return [module] + [m for child in module.children for m in _modules(child)]


def test_unknown_module_is_named_with_its_position():
    unknown = TorchObject("nn.SpatialReplicationPadding", {"pad_l": 1})
    with pytest.raises(ModelError, match=r"nn\.SpatialReplicationPadding at model\.2\.2 cannot be converted"):
        onnx_export.to_onnx({"model": _tree_with(unknown)})


def test_unknown_module_in_a_file(tmp_path):
    path = tmp_path / "odd.t7"
    with path.open("wb") as out:
        torch7.dump({"model": _tree_with(TorchObject("nn.SpatialMaxPooling", {}))}, out)
    with pytest.raises(ModelError, match=r"odd\.t7.*nn\.SpatialMaxPooling"):
        onnx_export.convert(path, tmp_path / "odd.onnx")
    assert not (tmp_path / "odd.onnx").exists()


def test_inconsistent_fields_are_model_errors():
    conv = torch7_modules.convolution(np.ones((4, 3, 3, 3)), np.zeros(4))
    conv.fields["kW"] = 5  # the weight no longer holds out*in*kH*kW numbers
    with pytest.raises(ModelError, match=r"nn\.SpatialConvolution at model\.2\.2: field 'weight'"):
        onnx_export.to_onnx(_tree_with(conv))
    chained = torch7_modules.sequential(
        torch7_modules.convolution(np.ones((4, 3, 3, 3)), np.zeros(4)),
        torch7_modules.convolution(np.ones((4, 5, 3, 3)), np.zeros(4)),  # expects 5 channels, gets 4
    )
    with pytest.raises(ModelError, match="converted graph is invalid"):
        onnx_export.to_onnx(chained)
    with pytest.raises(ModelError, match="table of tensors"):
        onnx_export.to_onnx(torch7_modules.sequential(torch7_modules.concat_table(torch7_modules.identity(), torch7_modules.identity())))


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"<html><body>301 Moved Permanently</body></html>", "text file"),
        (b"\x04\x00\x00\x00\x01\x00\x00\x00\xff\xff", "truncated"),
    ],
)
def test_malformed_t7_gives_one_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.t7"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        onnx_export.convert(path, tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == [path]  # no output, no temporary file


def test_truncated_checkpoint(tmp_path, instance_norm_model):
    path = tmp_path / "cut.t7"
    path.write_bytes(instance_norm_model.read_bytes()[:-1000])
    with pytest.raises(ModelError, match=r"cut\.t7: not a Torch7 model: truncated"):
        onnx_export.model_proto(path)


def test_convert_command(tmp_path, instance_norm_model, capsys):
    out = tmp_path / "style.onnx"
    assert main(["convert", str(instance_norm_model), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert cv2.dnn.readNetFromONNX(str(out)) is not None
    broken = tmp_path / "broken.t7"
    broken.write_bytes(b"<html>moved</html>")
    assert main(["convert", str(broken), "-o", str(tmp_path / "x.onnx")]) == ModelError.exit_code
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a Torch7 model" in error


# ---------------------------------------------------------------- fuzzing

# A small checkpoint with every module type: many examples per second, every converter.
SEED_BYTES = _t7_bytes(every_module_checkpoint())
# Byte values that turn lengths, sizes, tags and indices into edge cases.
_byte = st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x7F, 0x80, 0xFE, 0xFF]) | st.integers(0, 255)
_mutations = st.lists(st.tuples(st.integers(0, len(SEED_BYTES) - 1), _byte), min_size=1, max_size=6)


def _parse_and_convert(data: bytes) -> None:
    """The property: reading and converting any bytes gives a ModelProto or a ModelError."""
    try:
        checkpoint = torch7.loads(data)
    except ModelError:  # Torch7Error is one
        return
    try:
        onnx_export.to_onnx(checkpoint)
    except ModelError:
        pass


def _mutated(mutations: list[tuple[int, int]]) -> bytes:
    data = bytearray(SEED_BYTES)
    for position, value in mutations:
        data[position] = value
    return bytes(data)


# deadline: a hang (or a quadratic blow-up) fails the test instead of stalling it.
@settings(max_examples=300, deadline=2000)
@given(_mutations)
def test_fuzz_mutated_checkpoint(mutations):
    _parse_and_convert(_mutated(mutations))


@pytest.mark.slow
@settings(max_examples=20_000, deadline=2000)
@given(_mutations, st.integers(0, len(SEED_BYTES)))
def test_fuzz_mutated_and_truncated_checkpoint_long(mutations, length):
    _parse_and_convert(_mutated(mutations)[:length])


@settings(max_examples=150, deadline=2000)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _parse_and_convert(b"\x03\x00\x00\x00" + data)  # a table tag gets past the first check
    _parse_and_convert(data)


@settings(max_examples=30, deadline=2000)
@given(st.floats(0, 1))
def test_fuzz_truncated_fixture(instance_norm_model, fraction):
    data = instance_norm_model.read_bytes()
    _parse_and_convert(data[: int(len(data) * fraction)])


def _tensor_bytes(sizes: list[int], strides: list[int]) -> bytes:
    """A FloatTensor of the given sizes and strides over a 4-element storage."""

    def string(text: str) -> bytes:
        return struct.pack("<i", len(text)) + text.encode()

    head = struct.pack("<ii", torch7.TYPE_TORCH, 1) + string("V 1") + string("torch.FloatTensor")
    shape = struct.pack(f"<i{len(sizes)}q{len(strides)}qq", len(sizes), *sizes, *strides, 1)
    storage = struct.pack("<ii", torch7.TYPE_TORCH, 2) + string("V 1") + string("torch.FloatStorage")
    return head + shape + storage + struct.pack("<q", 4) + bytes(16)


# Found by the fuzzer: zero or huge strides let a tensor claim far more elements than
# its storage holds; the reader must refuse them rather than materialise them.
@pytest.mark.parametrize(
    "sizes,strides", [([2**40], [0]), ([2**20, 2**20], [0, 0]), ([2**62, 4], [0, 0]), ([1, 2], [2**62, 1])]
)
def test_reader_rejects_tensors_larger_than_their_storage(sizes, strides):
    with pytest.raises(torch7.Torch7Error):
        torch7.loads(_tensor_bytes(sizes, strides))
