"""Convert fast-neural-style Torch7 checkpoints to ONNX.

OpenCV 5 has no Torch7 importer and ONNX Runtime (the way to CUDA from pip) reads only
ONNX, so every module type the checkpoints use is mapped onto standard ONNX operators.
The graph takes and returns exactly what the Torch network does: an NCHW float32 blob
in the model's pre-processing (for fast-neural-style "vgg": BGR, 0-255, ImageNet mean
subtracted), with batch, height and width left dynamic.

``onnx`` is imported lazily so that the rest of cvstyle works without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import torch7
from .files import write_atomically
from .errors import CvstyleError, ModelError
from .modelinfo import inspect_model
from .torch7 import TorchObject

if TYPE_CHECKING:
    import onnx

# Reflect Pad, InstanceNormalization and ConvTranspose's output_padding all predate
# opset 18; ONNX Runtime 1.31 and OpenCV 4.14's readNetFromONNX load this graph at opsets
# 17 to 23 alike, and 18 keeps ONNX Runtime >= 1.14 (IR version 8) able to read it.
OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_MISSING = "converting to ONNX needs the onnx package: pip install -e . (or pip install onnx)"

Value = str | list[str]  # a tensor name, or the list of them that a ConcatTable produces


def require_onnx():
    """The onnx module, or an error that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise CvstyleError(ONNX_MISSING) from None
    return onnx


class _Graph:
    """Accumulates nodes and initializers while the module tree is walked."""

    def __init__(self):
        self.onnx = require_onnx()
        self.nodes: list = []
        self.initializers: list = []
        self.counter = 0

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        output = self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


class _Module:
    """One module being converted: typed access to its fields with errors naming it."""

    def __init__(self, module: TorchObject, where: str):
        self.module = module
        self.where = where

    def error(self, problem: str) -> ModelError:
        return ModelError(f"{self.module.class_name} at {self.where}: {problem}")

    def int(self, key: str, default: int | None = None) -> int:
        value = self.module.fields.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31:
            raise self.error(f"field {key!r} is {value!r}, not an integer")
        return value

    def float(self, key: str) -> float:
        value = self.module.fields.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise self.error(f"field {key!r} is {value!r}, not a number")
        return float(value)

    def tensor(self, key: str, size: int | None = None, default: float | None = None) -> np.ndarray:
        """A float32 parameter; ``size`` elements if given (``default`` fills a missing one)."""
        value = self.module.fields.get(key)
        if value is None and default is not None and size is not None:
            return np.full(size, default, np.float32)
        if not isinstance(value, np.ndarray) or value.size == 0 or value.dtype.kind != "f":
            raise self.error(f"field {key!r} is missing or not a float tensor")
        if size is not None and value.size != size:
            raise self.error(f"field {key!r} has {value.size} elements, expected {size}")
        return np.ascontiguousarray(value, dtype=np.float32)

    def tensor_input(self, value: Value) -> str:
        if isinstance(value, list):
            raise self.error("receives a table of tensors (a ConcatTable output) where it needs one")
        return value


def _sequence(graph: _Graph, m: _Module, x: Value) -> Value:
    for index, child in enumerate(m.module.children, start=1):
        x = _convert(graph, child, f"{m.where}.{index}", x)
    return x


def _concat_table(graph: _Graph, m: _Module, x: Value) -> Value:
    children = m.module.children
    if not children:
        raise m.error("has no branches")
    return [
        m.tensor_input(_convert(graph, child, f"{m.where}.{index}", x))
        for index, child in enumerate(children, start=1)
    ]


def _cadd_table(graph: _Graph, m: _Module, x: Value) -> Value:
    if not isinstance(x, list):
        raise m.error("needs a table of tensors (a ConcatTable output)")
    return graph.node("Sum", x)


def _identity(graph: _Graph, m: _Module, x: Value) -> Value:
    # TotalVariation only adds a regularising gradient during training.
    return x


def _shave_image(graph: _Graph, m: _Module, x: Value) -> Value:
    size = m.int("size")
    if size < 0:
        raise m.error(f"negative size {size}")
    if size == 0:
        return x
    # nn.ShaveImage crops `size` pixels from every side.
    starts = graph.constant("shave_starts", np.array([size, size], np.int64))
    ends = graph.constant("shave_ends", np.array([-size, -size], np.int64))
    axes = graph.constant("shave_axes", np.array([2, 3], np.int64))
    return graph.node("Slice", [m.tensor_input(x), starts, ends, axes])


def _padding(mode: str) -> Callable[[_Graph, _Module, Value], Value]:
    def convert(graph: _Graph, m: _Module, x: Value) -> Value:
        top, left, bottom, right = (m.int(key) for key in ("pad_t", "pad_l", "pad_b", "pad_r"))
        if mode == "reflect" and min(top, left, bottom, right) < 0:
            raise m.error("negative reflection padding")  # ONNX reflects only outwards
        pads = graph.constant("pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
        return graph.node("Pad", [m.tensor_input(x), pads], mode=mode)

    return convert


def _convolution(graph: _Graph, m: _Module, x: Value) -> Value:
    n_in, n_out = m.int("nInputPlane"), m.int("nOutputPlane")
    k_h, k_w, d_h, d_w = m.int("kH"), m.int("kW"), m.int("dH"), m.int("dW")
    # Old checkpoints stored one `padding` for both axes.
    pad_w = m.int("padW", m.module.fields.get("padding", 0))
    pad_h = m.int("padH", pad_w)
    if min(n_in, n_out, k_h, k_w, d_h, d_w) < 1 or min(pad_h, pad_w) < 0:
        raise m.error("non-positive size, stride or negative padding")
    # SpatialConvolutionMM may keep its weight as a (out, in*kH*kW) matrix.
    weight = m.tensor("weight", n_out * n_in * k_h * k_w).reshape(n_out, n_in, k_h, k_w)
    inputs = [m.tensor_input(x), graph.constant("weight", weight)]
    if m.module.fields.get("bias") is not None:  # nn.SpatialConvolution:noBias() drops it
        inputs.append(graph.constant("bias", m.tensor("bias", n_out)))
    return graph.node(
        "Conv", inputs, kernel_shape=[k_h, k_w], strides=[d_h, d_w],
        pads=[pad_h, pad_w, pad_h, pad_w],
    )


def _full_convolution(graph: _Graph, m: _Module, x: Value) -> Value:
    n_in, n_out = m.int("nInputPlane"), m.int("nOutputPlane")
    k_h, k_w, d_h, d_w = m.int("kH"), m.int("kW"), m.int("dH"), m.int("dW")
    pad_h, pad_w = m.int("padH"), m.int("padW")
    adj_h, adj_w = m.int("adjH", 0), m.int("adjW", 0)
    if min(n_in, n_out, k_h, k_w, d_h, d_w) < 1 or min(pad_h, pad_w, adj_h, adj_w) < 0:
        raise m.error("non-positive size, stride or negative padding")
    if adj_h >= d_h or adj_w >= d_w:
        raise m.error("adjustment not smaller than the stride")
    # Torch's (in, out, kH, kW) weight layout is ONNX ConvTranspose's too; adj is output_padding.
    weight = m.tensor("weight", n_in * n_out * k_h * k_w).reshape(n_in, n_out, k_h, k_w)
    inputs = [m.tensor_input(x), graph.constant("weight", weight)]
    if m.module.fields.get("bias") is not None:
        inputs.append(graph.constant("bias", m.tensor("bias", n_out)))
    return graph.node(
        "ConvTranspose", inputs, kernel_shape=[k_h, k_w], strides=[d_h, d_w],
        pads=[pad_h, pad_w, pad_h, pad_w], output_padding=[adj_h, adj_w],
    )


def _norm_parameters(graph: _Graph, m: _Module, channels: int) -> list[str]:
    # Non-affine normalisations have no weight and bias: scale 1, shift 0.
    return [
        graph.constant("scale", m.tensor("weight", channels, default=1.0)),
        graph.constant("shift", m.tensor("bias", channels, default=0.0)),
    ]


def _batch_norm(graph: _Graph, m: _Module, x: Value) -> Value:
    # Inference: the stored running statistics, as readNetFromTorch(evaluate=True) does.
    mean = m.tensor("running_mean")
    variance = m.tensor("running_var", mean.size)
    if (variance < 0).any():
        raise m.error("negative running variance")
    inputs = [m.tensor_input(x), *_norm_parameters(graph, m, mean.size)]
    inputs += [graph.constant("mean", mean), graph.constant("var", variance)]
    return graph.node("BatchNormalization", inputs, epsilon=m.float("eps"))


def _instance_norm(graph: _Graph, m: _Module, x: Value) -> Value:
    # fast-neural-style's InstanceNormalization always normalises with each image's own
    # statistics (biased variance), like ONNX's; keep the model's eps, not OpenCV's 1e-9.
    channels = m.int("nOutput")
    if channels < 1:
        raise m.error(f"nOutput is {channels}")
    inputs = [m.tensor_input(x), *_norm_parameters(graph, m, channels)]
    return graph.node("InstanceNormalization", inputs, epsilon=m.float("eps"))


def _unary(op: str) -> Callable[[_Graph, _Module, Value], Value]:
    def convert(graph: _Graph, m: _Module, x: Value) -> Value:
        return graph.node(op, [m.tensor_input(x)])

    return convert


def _mul_constant(graph: _Graph, m: _Module, x: Value) -> Value:
    constant = graph.constant("constant", np.array(m.float("constant_scalar"), np.float32))
    return graph.node("Mul", [m.tensor_input(x), constant])


# Exactly modelinfo.SUPPORTED_MODULES (a test keeps the two lists equal).
_CONVERTERS: dict[str, Callable[[_Graph, _Module, Value], Value]] = {
    "nn.Sequential": _sequence,
    "nn.ConcatTable": _concat_table,
    "nn.CAddTable": _cadd_table,
    "nn.Identity": _identity,
    "nn.TotalVariation": _identity,
    "nn.ShaveImage": _shave_image,
    "nn.SpatialReflectionPadding": _padding("reflect"),
    "nn.SpatialZeroPadding": _padding("constant"),
    "nn.SpatialConvolution": _convolution,
    "nn.SpatialConvolutionMM": _convolution,
    "nn.SpatialFullConvolution": _full_convolution,
    "nn.SpatialBatchNormalization": _batch_norm,
    "nn.InstanceNormalization": _instance_norm,
    "nn.ReLU": _unary("Relu"),
    "nn.Tanh": _unary("Tanh"),
    "nn.MulConstant": _mul_constant,
}
CONVERTIBLE_MODULES = frozenset(_CONVERTERS)


def _convert(graph: _Graph, module: object, where: str, x: Value) -> Value:
    if not isinstance(module, TorchObject):
        raise ModelError(f"{where}: a {type(module).__name__} where an nn module belongs")
    converter = _CONVERTERS.get(module.class_name)
    if converter is None:
        raise ModelError(
            f"module type {module.class_name} at {where} cannot be converted to ONNX "
            f"(supported: {', '.join(sorted(CONVERTIBLE_MODULES))})"
        )
    return converter(graph, _Module(module, where), x)


def to_onnx(checkpoint: object, name: str = "cvstyle") -> "onnx.ModelProto":
    """The ONNX model of a Torch7 checkpoint (``{model=..., opt=...}``) or bare nn module.

    Module positions in errors read like ``model.12.1.3`` (1-based, as in Lua).
    """
    onnx = require_onnx()
    helper = onnx.helper
    root = checkpoint.get("model") if isinstance(checkpoint, dict) else checkpoint
    graph = _Graph()
    output = _convert(graph, root, "model", INPUT_NAME)
    if isinstance(output, list):
        raise ModelError("the network ends in a table of tensors, not an image")
    # A graph output must be produced by a node, even for an identity network.
    graph.nodes.append(helper.make_node("Identity", [output], [OUTPUT_NAME], name=OUTPUT_NAME))
    image = ["N", 3, "H", "W"]
    proto = helper.make_graph(
        graph.nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, image)],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", 3, "H_out", "W_out"])],
        graph.initializers,
    )
    opset = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        proto, opset_imports=opset, producer_name="cvstyle",
        ir_version=helper.find_min_ir_version_for(opset),
        doc_string="fast-neural-style network converted from Torch7 by cvstyle; input and "
        "output are NCHW blobs in the model's own pre-processing (vgg: BGR 0-255 minus the "
        "ImageNet mean)",
    )
    try:
        # Strict shape inference catches channel counts that do not chain up.
        onnx.checker.check_model(onnx.shape_inference.infer_shapes(model, strict_mode=True))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "invalid graph"
        raise ModelError(f"the converted graph is invalid: {detail}") from None
    return model


def model_proto(t7_path: str | os.PathLike) -> "onnx.ModelProto":
    """Check the `.t7` file at ``t7_path`` and return its ONNX model."""
    path = Path(t7_path)
    inspect_model(path)  # one-line errors for missing, truncated, HTML or foreign files
    try:
        return to_onnx(torch7.load(path), name=path.stem)
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None


def convert(t7_path: str | os.PathLike, onnx_path: str | os.PathLike) -> Path:
    """Convert the `.t7` model at ``t7_path`` to an ONNX file at ``onnx_path``; return it."""
    target = Path(onnx_path)
    data = model_proto(t7_path).SerializeToString()
    try:
        write_atomically(target, data)
    except OSError as error:
        raise CvstyleError(f"cannot write {target}: {error.strerror or error}") from None
    return target
