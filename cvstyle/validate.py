"""Check a model against the architecture it claims before any engine sees it.

OpenCV and ONNX Runtime trust the numbers in a model: a padding of 100000 makes them
allocate gigabytes, a negative tensor dimension corrupts OpenCV's heap and aborts the
interpreter. Every field a style network needs is checked here, within bounds that
leave the published networks a wide margin (the README's Reliability section lists
them), and a violation raises :class:`~cvstyle.errors.ModelError` with one line naming
the module (``model.12.1.3``, 1-based as in Lua) or the graph node and the problem.
Both formats' checks live here, one walk each, so that the limits are in one place; that
is why the module is a little over the usual size.

:func:`validate_tree` takes a parsed Torch7 checkpoint, :func:`validate_graph` an ONNX
model (``onnx.ModelProto``, its bytes, or :class:`~cvstyle.onnx_reader.OnnxModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import ModelError, quote
from .onnx_reader import ELEMENT_TYPES, MAX_TENSOR_RANK, Node, OnnxModel, Tensor, ValueInfo, read_model
from .torch7 import TorchObject

# Published networks: 9x9 kernels, stride 2, padding 40, 128 channels, ~70 modules
# nested 4 deep; a 1-megapixel tile needs at most 32 activation values per pixel.
MAX_KERNEL = 63
MAX_STRIDE = 16
MAX_PADDING = 256
MAX_CHANNELS = 4096
MAX_MODULES = 10_000
MAX_MODULE_DEPTH = 64
MAX_BRANCHES = 64
MAX_VALUES_PER_PIXEL = 1024  # channels x (resolution relative to the input)^2
MAX_SCALE = 16  # of an activation's height or width relative to the input's
MAX_BORDER = 4096  # pixels an activation's height or width gains or loses
IMAGE_CHANNELS = 3

MAX_NODES = 20_000
MAX_MODEL_BYTES = 1 << 30  # of an ONNX file (a Torch7 file's limit is torch7.MAX_FILE_BYTES)
MAX_DIMENSION = 1 << 31  # of one tensor dimension; images are bounded by their pixel count
MAX_OPSET = 100
MAX_DILATION = 64

# Module types OpenCV 4's Torch importer and the ONNX converter turn into layers (those
# the checkpoints use).
SUPPORTED_MODULES = frozenset(
    "nn." + name
    for name in (
        "Sequential ConcatTable CAddTable Identity ShaveImage SpatialReflectionPadding "
        "SpatialZeroPadding SpatialConvolution SpatialConvolutionMM SpatialFullConvolution "
        "SpatialBatchNormalization InstanceNormalization ReLU Tanh MulConstant "
        "TotalVariation"
    ).split()
)


def module_list(root: TorchObject) -> list[tuple[str, TorchObject]]:
    """``(position, module)`` of every module under ``root`` in execution order, each
    once: a tree that contains itself, reaches one module twice (which would make every
    walk exponential), nests deeper than :data:`MAX_MODULE_DEPTH` or holds more than
    :data:`MAX_MODULES` modules is refused."""
    found: list[tuple[str, TorchObject]] = []
    seen: set[int] = set()
    stack: list[tuple[str, object, tuple[int, ...]]] = [("model", root, ())]
    while stack:
        where, module, ancestors = stack.pop()
        if not isinstance(module, TorchObject):
            raise ModelError(f"{where}: a {type(module).__name__} where an nn module belongs")
        if id(module) in ancestors:
            raise ModelError(f"{where}: {quote(module.class_name, 60)} contains itself")
        if id(module) in seen:
            raise ModelError(f"{where}: {quote(module.class_name, 60)} appears twice in the network")
        seen.add(id(module))
        found.append((where, module))
        if len(found) > MAX_MODULES:
            raise ModelError(f"more than {MAX_MODULES} modules")
        children = module.children
        if children and len(ancestors) >= MAX_MODULE_DEPTH:
            raise ModelError(f"{where}: modules nested deeper than {MAX_MODULE_DEPTH} levels")
        inner = (*ancestors, id(module))
        stack.extend((f"{where}.{i}", child, inner) for i, child in reversed(list(enumerate(children, 1))))
    return found


@dataclass(frozen=True)
class _Shape:
    """An activation: its channels, and each side as ``scale * input side + offset``."""

    channels: int
    scale_h: Fraction = Fraction(1)
    offset_h: Fraction = Fraction(0)
    scale_w: Fraction = Fraction(1)
    offset_w: Fraction = Fraction(0)

    def resized(self, scale_h, offset_h, scale_w, offset_w, channels=None) -> "_Shape":
        """Each side ``s`` becomes ``scale * s + offset``."""
        return _Shape(
            self.channels if channels is None else channels,
            self.scale_h * scale_h, self.offset_h * scale_h + offset_h,
            self.scale_w * scale_w, self.offset_w * scale_w + offset_w,
        )


class _Module:
    """Typed, bounded access to one module's fields; errors name the module."""

    def __init__(self, where: str, module: TorchObject):
        self.where, self.module = where, module

    def error(self, problem: str) -> ModelError:
        return ModelError(f"{quote(self.module.class_name, 60)} at {self.where}: {problem}")

    def int(self, key: str, low: int, high: int, default: object = None) -> int:
        value = self.module.fields.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"field {key!r} is {quote(repr(value), 40)}, not an integer")
        if not low <= value <= high:
            raise self.error(f"field {key!r} is {value}, outside {low}..{high}")
        return value

    def number(self, key: str, low: float = -1e30, high: float = 1e30) -> float:
        value = self.module.fields.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.error(f"field {key!r} is {quote(repr(value), 40)}, not a number in {low:g}..{high:g}")
        return float(value)

    def tensor(self, key: str, size: int, optional: bool = False) -> np.ndarray | None:
        value = self.module.fields.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise self.error(f"field {key!r} is missing or not a float tensor")
        if value.size != size:
            raise self.error(f"field {key!r} has {value.size} elements, expected {size}")
        if not np.isfinite(value).all():
            raise self.error(f"field {key!r} holds infinite or NaN values")
        return value

    def channels(self, key: str, x: _Shape) -> int:
        value = self.int(key, 1, MAX_CHANNELS)
        if value != x.channels:
            raise self.error(f"field {key!r} is {value}, but its input has {x.channels} channels")
        return value


def _convolution(m: _Module, x: _Shape, transposed: bool) -> _Shape:
    n_in = m.channels("nInputPlane", x)
    n_out = m.int("nOutputPlane", 1, MAX_CHANNELS)
    k_h, k_w = m.int("kH", 1, MAX_KERNEL), m.int("kW", 1, MAX_KERNEL)
    d_h, d_w = m.int("dH", 1, MAX_STRIDE), m.int("dW", 1, MAX_STRIDE)
    # Old checkpoints stored one `padding` for both axes.
    pad_w = m.int("padW", 0, MAX_PADDING, m.module.fields.get("padding", 0))
    pad_h = m.int("padH", 0, MAX_PADDING, pad_w)
    m.tensor("weight", n_out * n_in * k_h * k_w)
    m.tensor("bias", n_out, optional=True)
    if not transposed:
        # (side + 2 pad - kernel) / stride + 1, rounded down by the engine.
        return x.resized(
            Fraction(1, d_h), Fraction(2 * pad_h - k_h, d_h) + 1,
            Fraction(1, d_w), Fraction(2 * pad_w - k_w, d_w) + 1, n_out,
        )
    adj_h = m.int("adjH", 0, d_h - 1, 0)
    adj_w = m.int("adjW", 0, d_w - 1, 0)
    # (side - 1) stride - 2 pad + kernel + adj
    return x.resized(d_h, k_h + adj_h - d_h - 2 * pad_h, d_w, k_w + adj_w - d_w - 2 * pad_w, n_out)


def _normalisation(m: _Module, x: _Shape) -> _Shape:
    if m.module.class_name == "nn.InstanceNormalization":
        m.channels("nOutput", x)
    else:
        m.tensor("running_mean", x.channels)
        if (m.tensor("running_var", x.channels) < 0).any():
            raise m.error("negative running variance")
    m.number("eps", 0.0, 1.0)
    m.tensor("weight", x.channels, optional=True)
    m.tensor("bias", x.channels, optional=True)
    return x


def _padding(m: _Module, x: _Shape) -> _Shape:
    low = 0 if m.module.class_name == "nn.SpatialReflectionPadding" else -MAX_PADDING
    top, bottom, left, right = (m.int(key, low, MAX_PADDING) for key in ("pad_t", "pad_b", "pad_l", "pad_r"))
    return x.resized(1, top + bottom, 1, left + right)


def _layer(m: _Module, x: _Shape) -> _Shape:
    """The output of one non-container module for input ``x``."""
    name = m.module.class_name
    if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM", "nn.SpatialFullConvolution"):
        return _convolution(m, x, transposed=name == "nn.SpatialFullConvolution")
    if name in ("nn.SpatialBatchNormalization", "nn.InstanceNormalization"):
        return _normalisation(m, x)
    if name in ("nn.SpatialReflectionPadding", "nn.SpatialZeroPadding"):
        return _padding(m, x)
    if name == "nn.ShaveImage":
        size = m.int("size", 0, MAX_PADDING)
        return x.resized(1, -2 * size, 1, -2 * size)
    if name == "nn.MulConstant":
        m.number("constant_scalar")
    return x  # ReLU, Tanh, Identity, TotalVariation


def _check_size(m: _Module, x: _Shape) -> None:
    scales = (x.scale_h, x.scale_w)
    if not all(Fraction(1, MAX_SCALE) <= s <= MAX_SCALE for s in scales):
        raise m.error(f"its output is {float(max(scales)):g} times the input's size, beyond {MAX_SCALE}")
    if max(abs(x.offset_h), abs(x.offset_w)) > MAX_BORDER:
        raise m.error(f"its output gains or loses more than {MAX_BORDER} pixels a side")
    if x.channels * x.scale_h * x.scale_w > MAX_VALUES_PER_PIXEL:
        raise m.error(
            f"its output holds {float(x.channels * x.scale_h * x.scale_w):g} values per input pixel, "
            f"beyond {MAX_VALUES_PER_PIXEL}"
        )


def _run(where: str, module: TorchObject, x: _Shape | list[_Shape]) -> _Shape | list[_Shape]:
    """Propagate the activation ``x`` through ``module`` (already walked by module_list)."""
    m = _Module(where, module)
    name = module.class_name
    if name == "nn.Sequential":
        for index, child in enumerate(module.children, 1):
            x = _run(f"{where}.{index}", child, x)
        return x
    if name == "nn.ConcatTable":
        children = module.children
        if not 1 <= len(children) <= MAX_BRANCHES:
            raise m.error(f"has {len(children)} branches, not 1..{MAX_BRANCHES}")
        return [_single(m, _run(f"{where}.{i}", child, x)) for i, child in enumerate(children, 1)]
    if name == "nn.CAddTable":
        if not isinstance(x, list):
            raise m.error("needs a table of tensors (a ConcatTable output)")
        if any(branch != x[0] for branch in x):
            raise m.error("adds branches whose outputs differ in channels or size")
        return x[0]
    y = _layer(m, _single(m, x))
    _check_size(m, y)
    return y


def _single(m: _Module, x: _Shape | list[_Shape]) -> _Shape:
    if isinstance(x, list):
        raise m.error("receives a table of tensors (a ConcatTable output) where it needs one")
    return x


def validate_tree(checkpoint: object) -> list[tuple[str, TorchObject]]:
    """Check a Torch7 checkpoint (``{model=...}`` or a bare module) as a style network:
    a finite tree, every field in bounds and consistent with its input, and an output of
    three channels. Returns :func:`module_list` of its network; raises ModelError."""
    root = checkpoint.get("model") if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(root, TorchObject):
        raise ModelError("no nn module at the root of the file (expected {model = ...})")
    modules = module_list(root)
    unsupported = sorted({quote(m.class_name, 60) for _, m in modules} - SUPPORTED_MODULES)
    if unsupported:
        raise ModelError(f"module types OpenCV cannot run: {', '.join(unsupported)}")
    # _run recurses once per container level: module_list bounded the depth.
    output = _run("model", root, _Shape(IMAGE_CHANNELS))
    if isinstance(output, list):
        raise ModelError("the network ends in a table of tensors, not an image")
    if output.channels != IMAGE_CHANNELS:
        raise ModelError(f"the network outputs {output.channels} channels, not {IMAGE_CHANNELS} (an image)")
    return modules


def validate_graph(model: object) -> OnnxModel:
    """Check an ONNX model (``onnx.ModelProto``, its serialised bytes or an
    :class:`OnnxModel`) as a style network; returns its outline, raises ModelError."""
    if not isinstance(model, OnnxModel):
        data = model if isinstance(model, (bytes, bytearray, memoryview)) else model.SerializeToString()
        model = read_model(bytes(data))
    check_graph(model)
    return model


# ---------------------------------------------------------------- ONNX graphs


def _bounded(where: str, what: str, values: list[int], low: int, high: int) -> None:
    for value in values:
        if not low <= value <= high:
            raise ModelError(f"{where}: {what} {value} outside {low}..{high}")


def _check_tensor(tensor: Tensor, where: str) -> None:
    """Dimensions that are sizes, and exactly the elements they promise stored in the
    file (OpenCV reads the dimensions' count without checking it: a mismatch corrupts
    its heap)."""
    if tensor.external:
        raise ModelError(f"{where}: keeps its data in an external file, which cvstyle does not read")
    if len(tensor.dims) > MAX_TENSOR_RANK:
        raise ModelError(f"{where}: {len(tensor.dims)} dimensions, more than {MAX_TENSOR_RANK}")
    _bounded(where, "dimension", tensor.dims, 0, MAX_DIMENSION)
    if tensor.data_type not in ELEMENT_TYPES:
        raise ModelError(f"{where}: unknown element type {tensor.data_type}")
    if tensor.stored < 0:
        raise ModelError(f"{where}: its data is not a whole number of elements")
    expected = int(np.prod(tensor.dims, dtype=object)) if tensor.dims else 1
    if expected != tensor.stored:
        raise ModelError(f"{where}: dimensions {tensor.dims} need {expected} elements, the file holds {tensor.stored}")


def _check_value(info: ValueInfo, where: str) -> None:
    if info.dims is None:
        return
    if len(info.dims) > MAX_TENSOR_RANK:
        raise ModelError(f"{where}: {len(info.dims)} dimensions, more than {MAX_TENSOR_RANK}")
    _bounded(where, "dimension", [d for d in info.dims if isinstance(d, int)], 0, MAX_DIMENSION)


def _check_image(info: ValueInfo, where: str) -> None:
    """A graph input or output: a float32 NCHW image where the file says so."""
    if info.element_type not in (0, 1):
        kind = ELEMENT_TYPES.get(info.element_type, (f"type {info.element_type}",))[0]
        raise ModelError(f"{where}: {kind} elements, not float32")
    if info.dims is None:
        return
    if len(info.dims) != 4:
        raise ModelError(f"{where}: rank {len(info.dims)}, not an NCHW image (rank 4)")
    if isinstance(info.dims[1], int) and info.dims[1] != IMAGE_CHANNELS:
        raise ModelError(f"{where}: {info.dims[1]} channels, not {IMAGE_CHANNELS} (an image)")


def _integers(tensor: Tensor | None) -> list[int] | None:
    """The values of a small integer constant, or None if not one."""
    if tensor is None or tensor.data_type not in (6, 7) or tensor.stored > 64:
        return None
    if tensor.raw:
        return np.frombuffer(tensor.raw, "<i8" if tensor.data_type == 7 else "<i4").tolist()
    return tensor.ints


def _floats(tensor: Tensor | None) -> list[float] | None:
    if tensor is None or tensor.data_type != 1 or not tensor.raw or tensor.stored > 64:
        return None
    return np.frombuffer(tensor.raw, "<f4").tolist()


# Integer attributes of spatial operators: (attribute, low, high).
_SPATIAL_ATTRIBUTES = (
    ("kernel_shape", 1, MAX_KERNEL), ("strides", 1, MAX_STRIDE), ("pads", 0, MAX_PADDING),
    ("dilations", 1, MAX_DILATION), ("output_padding", 0, MAX_STRIDE - 1),
    ("group", 1, MAX_CHANNELS), ("output_shape", 0, MAX_DIMENSION),
)
_SPATIAL_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
# Operators whose second input is a shape or a count: (low, high) of its entries.
_SHAPE_INPUTS = {
    "Reshape": (-1, MAX_DIMENSION), "Expand": (0, MAX_DIMENSION),
    "ConstantOfShape": (0, MAX_DIMENSION), "Tile": (0, MAX_SCALE),
    "Pad": (-MAX_PADDING, MAX_PADDING),
}


def _check_node(node: Node, where: str, constants: dict[str, Tensor]) -> None:
    if node.subgraphs:
        raise ModelError(f"{where}: control flow (subgraph {quote(node.subgraphs[0], 40)}) is not supported")
    for name, tensor in node.tensors.items():
        _check_tensor(tensor, f"{where} attribute {quote(name, 40)}")
    if node.op_type in _SPATIAL_OPS:
        for name, low, high in _SPATIAL_ATTRIBUTES:
            _bounded(where, name, node.ints.get(name, []), low, high)
    if node.op_type == "Pad":
        _bounded(where, "pads", node.ints.get("pads", []), -MAX_PADDING, MAX_PADDING)
    limits = _SHAPE_INPUTS.get(node.op_type)
    position = 0 if node.op_type == "ConstantOfShape" else 1
    if limits and len(node.inputs) > position:
        _bounded(where, "shape entry", _integers(constants.get(node.inputs[position])) or [], *limits)
    if node.op_type in ("Resize", "Upsample"):
        for index in (1, 2):  # roi/scales (Resize 11+), scales (Upsample, Resize 10)
            scales = _floats(constants.get(node.inputs[index])) if len(node.inputs) > index else None
            if scales and not all(0 < s <= MAX_SCALE for s in scales):
                raise ModelError(f"{where}: scale outside 0..{MAX_SCALE}")
        sizes = _integers(constants.get(node.inputs[3])) if len(node.inputs) > 3 else None
        _bounded(where, "size", sizes or [], 0, MAX_DIMENSION)


def check_graph(model: OnnxModel) -> None:
    """Raise ModelError unless ``model`` is a bounded, acyclic graph from one float32
    image to a three-channel float32 image (where the file states the shapes)."""
    for domain, version in model.opsets.items():
        if not 1 <= version <= MAX_OPSET:
            raise ModelError(f"opset {quote(domain or 'ai.onnx', 40)} version {version} outside 1..{MAX_OPSET}")
    if len(model.nodes) > MAX_NODES or len(model.initializers) > MAX_NODES:
        raise ModelError(f"more than {MAX_NODES} nodes or initializers")
    constants: dict[str, Tensor] = {}
    for tensor in model.initializers:
        _check_tensor(tensor, f"initializer {quote(tensor.name, 60)}")
        constants[tensor.name] = tensor
    for info in model.inputs + model.outputs + model.value_info:
        _check_value(info, f"tensor {quote(info.name, 60)}")
    images = [info for info in model.inputs if info.name not in constants]
    if len(images) != 1:
        raise ModelError(f"the graph takes {len(images)} inputs, not one image")
    _check_image(images[0], f"input {quote(images[0].name, 60)}")
    if not model.outputs:
        raise ModelError("the graph has no output")
    _check_image(model.outputs[0], f"output {quote(model.outputs[0].name, 60)}")
    written = {"", *constants, *(info.name for info in model.inputs)}
    for index, node in enumerate(model.nodes, 1):
        where = f"node {index} ({quote(' '.join(filter(None, (node.op_type, node.name))), 80)})"
        for name in node.inputs:
            if name not in written:
                raise ModelError(f"{where}: reads {quote(repr(name), 60)} before any node writes it (a cycle or a missing tensor)")
        if node.op_type == "Constant" and "value" in node.tensors and node.outputs:
            constants[node.outputs[0]] = node.tensors["value"]
        _check_node(node, where, constants)
        for name in node.outputs:
            if name in written and name:
                raise ModelError(f"{where}: writes {quote(repr(name), 60)}, which already exists")
            written.add(name)
    missing = [info.name for info in model.outputs if info.name not in written]
    if missing:
        raise ModelError(f"output {quote(missing[0], 60)} is written by no node")
