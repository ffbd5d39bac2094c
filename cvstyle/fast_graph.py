"""Rewrites of an ONNX style graph that compute the same thing faster on the CPU engines.

Profiled per operator (benchmarks/bench.py --only precision), the slowest single
node of every fast-neural-style network is its last convolution: a 9x9 kernel at full
resolution with only 3 output channels, which ONNX Runtime's and OpenVINO's blocked
convolution kernels pad to a whole vector of output channels (16), wasting most of the
work. One convolution with stride 2 computes all four pixels of each 2x2 block at once
(its kernel one larger, each of its 4x3 outputs one pixel of the block), which those
kernels run at 12 of 16 lanes; DepthToSpace puts the pixels back. Only the order of the
additions changes, so the results agree to float32 rounding.

For OpenVINO's models compiled per shape, :func:`winograd_residuals` computes the
residual trunk of the eccv16 networks (unpadded 3x3 convolutions, batch normalisation,
the shortcut cropped) with about half of its multiplications: a one-dimensional Winograd
F(4,3) along the rows, on the trunk kept as four phases of its rows throughout, so that
no convolution has to split or interleave rows. Its additions and slices cost less than
the multiplications saved in OpenVINO, not in ONNX Runtime; it takes OpenVINO longer to
compile, which one forward does not win back.

Rewrites tried and dropped because they measured slower or no faster
(benchmarks/graph_rewrites.py and docs/benchmarks.md): the same block computed after
rearranging the input with SpaceToDepth (the form before this one), transposed
convolutions as a convolution plus DepthToSpace, InstanceNormalization spelled out with
GlobalAveragePool, the last convolution as a separable pair, two-dimensional Winograd,
Winograd F(2,3) along the rows with the rows split and interleaved at every convolution,
and F(2,3) on even and odd rows kept apart (faster than the plain trunk, slower than F(4,3)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .onnx_export import require_onnx

if TYPE_CHECKING:
    import onnx

BLOCK = 2
NARROW_OUTPUT = 4  # convolutions with at most this many output channels are rewritten
CROP = 2  # the residual blocks' shortcut loses this many pixels at each side
END = 2**62  # a Slice end past any size
BATCH_NORM_EPSILON = 1e-5  # ONNX's default
WINOGRAD_OPSET = 13  # Slice and Unsqueeze with their parameters as inputs
# Winograd F(4,3) (Lavin and Gray, 2016): four outputs of a 3-tap convolution from six
# inputs with six products instead of twelve. The input's rows combined (B^T), the
# kernel's rows combined (G), the products combined into output rows (A^T).
TILE = 4
INPUT_TRANSFORM = np.array([
    [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1],
], np.float64)
KERNEL_TRANSFORM = np.array([
    [1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1],
])
OUTPUT_TRANSFORM = np.array([
    [1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1],
], np.float64)


def block_weight(weight: np.ndarray) -> np.ndarray:
    """The (out*B*B, in, kh+B-1, kw+B-1) weight of the stride-B convolution that
    computes, per BxB block, what ``weight`` (out, in, kh, kw) computes per pixel: output
    channel (o, r, c) is pixel (r, c) of the block, in DepthToSpace's CRD order."""
    out, inp, kh, kw = weight.shape
    blocked = np.zeros((out, BLOCK, BLOCK, inp, kh + BLOCK - 1, kw + BLOCK - 1), np.float32)
    for row in range(BLOCK):
        for col in range(BLOCK):
            blocked[:, row, col, :, row:row + kh, col:col + kw] = weight
    return blocked.reshape(out * BLOCK * BLOCK, inp, kh + BLOCK - 1, kw + BLOCK - 1)


def _attributes(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _is_narrow_convolution(onnx, node, weights: dict) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
        return False
    attributes = _attributes(onnx, node)
    shape = weights[node.input[1]].dims
    plain = all(attributes.get(key, [1, 1]) == [1, 1] for key in ("strides", "dilations"))
    return (
        len(shape) == 4 and shape[0] <= NARROW_OUTPUT and min(shape[2:]) >= 3 and plain
        and attributes.get("group", 1) == 1 and attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


class _Rewriter:
    def __init__(self, onnx, node):
        self.onnx, self.node, self.nodes, self.initializers = onnx, node, [], []

    def constant(self, suffix: str, array: np.ndarray) -> str:
        name = f"{self.node.name or self.node.output[0]}_{suffix}"
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def add(self, op: str, inputs: list[str], suffix: str, output: str | None = None, **attributes) -> str:
        name = output or f"{self.node.name or self.node.output[0]}_{suffix}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name


def _rewrite(onnx, node, weights: dict) -> tuple[list, list]:
    """Nodes and initializers replacing one narrow convolution (same output name)."""
    weight = onnx.numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
    kh, kw = weight.shape[2:]
    top, left, bottom, right = _attributes(onnx, node).get("pads", [0, 0, 0, 0])
    r = _Rewriter(onnx, node)
    inputs = [node.input[0], r.constant("block_weight", block_weight(weight))]
    if len(node.input) > 2 and node.input[2]:
        bias = onnx.numpy_helper.to_array(weights[node.input[2]]).astype(np.float32)
        inputs.append(r.constant("block_bias", np.repeat(bias, BLOCK * BLOCK)))
    # BLOCK - 1 more zero rows and columns at the end: an output of odd height or width
    # gets its last block whole, and the slice below drops the pixels beyond it.
    spare = BLOCK - 1
    blocks = r.add("Conv", inputs, "block_conv", kernel_shape=[kh + spare, kw + spare], strides=[BLOCK, BLOCK],
                   pads=[top, left, bottom + spare, right + spare])
    pixels = r.add("DepthToSpace", [blocks], "block_pixels", blocksize=BLOCK, mode="CRD")
    size = r.add("Shape", [node.input[0]], "block_size", start=2, end=4)
    out_size = r.add("Add", [size, r.constant("block_grow", np.array([top + bottom - kh + 1, left + right - kw + 1], np.int64))], "block_out_size")
    zeros, axes = r.constant("block_zero", np.zeros(2, np.int64)), r.constant("block_axes", np.array([2, 3], np.int64))
    r.add("Slice", [pixels, zeros, out_size, axes], "", output=node.output[0])
    return r.nodes, r.initializers


def faster_graph(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """``model`` with its narrow full-resolution convolutions computed block-wise.

    Tensor names are kept, so outputs chosen by name (tiling statistics) still exist.
    """
    return rewrite_nodes(model, _is_narrow_convolution, _rewrite)


@dataclass
class _Convolution:
    """One 3x3 convolution of a residual block, its batch normalisation folded in."""

    weight: np.ndarray  # (out, in, 3, 3), float64
    bias: np.ndarray  # (out,)
    relu: bool


def _initializer(onnx, weights: dict, name: str) -> np.ndarray | None:
    return onnx.numpy_helper.to_array(weights[name]).astype(np.float64) if name in weights else None


def _trunk_convolution(onnx, node, weights: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Weight and bias of an unpadded 3x3 stride-1 convolution with constant weights."""
    if node.op_type != "Conv" or len(node.input) < 2:
        return None
    weight = _initializer(onnx, weights, node.input[1])
    attributes = _attributes(onnx, node)
    if (
        weight is None or weight.ndim != 4 or weight.shape[2:] != (3, 3) or weight.shape[0] != weight.shape[1]
        or any(attributes.get(key, [1, 1]) != [1, 1] for key in ("strides", "dilations"))
        or attributes.get("pads", [0, 0, 0, 0]) != [0, 0, 0, 0] or attributes.get("group", 1) != 1
        or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID")
    ):
        return None
    bias = _initializer(onnx, weights, node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(weight.shape[0])
    return (weight, bias) if bias is not None else None


def _batch_norm(onnx, node, weights: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Scale and shift of an inference-mode BatchNormalization with constant parameters."""
    parameters = [_initializer(onnx, weights, name) for name in node.input[1:5]]
    attributes = _attributes(onnx, node)
    if node.op_type != "BatchNormalization" or len(parameters) != 4 or any(p is None for p in parameters) or attributes.get("training_mode", 0):
        return None
    gamma, beta, mean, variance = parameters
    scale = gamma / np.sqrt(variance + attributes.get("epsilon", BATCH_NORM_EPSILON))
    return scale, beta - mean * scale


def _is_crop(onnx, node, weights: dict) -> bool:
    """Whether ``node`` crops ``CROP`` pixels off each side of an NCHW tensor."""
    if node.op_type != "Slice" or len(node.input) < 4:
        return False
    parameters = [_initializer(onnx, weights, name) for name in node.input[1:]]
    if any(p is None for p in parameters):
        return False
    starts, ends, axes, *steps = (p.astype(np.int64).tolist() for p in parameters)
    order = np.argsort(axes)
    return (
        sorted(axes) == [2, 3] and [starts[i] for i in order] == [CROP, CROP] and [ends[i] for i in order] == [-CROP, -CROP]
        and all(step == 1 for step in (steps[0] if steps else []))
    )


class _Graph:
    """Which nodes read each tensor of a graph, and which tensors it outputs."""

    def __init__(self, model):
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {value.name for value in model.graph.output}

    def only_consumer(self, name: str):
        """The one node that reads ``name``, if no other node reads it and it is no output."""
        consumers = self.consumers.get(name, [])
        return consumers[0] if len(consumers) == 1 and name not in self.outputs else None


def _residual_block(onnx, graph: _Graph, weights: dict, source: str) -> tuple[list, list[_Convolution], str] | None:
    """The nodes, convolutions and output of the residual block reading ``source``:
    conv, [batch norm], relu, conv, [batch norm], added to ``source`` cropped."""
    consumers = graph.consumers.get(source, [])
    convolutions = [node for node in consumers if node.op_type == "Conv"]
    crops = [node for node in consumers if _is_crop(onnx, node, weights)]
    if len(consumers) != 2 or len(convolutions) != 1 or len(crops) != 1:
        return None
    nodes, found, node = [crops[0]], [], convolutions[0]
    for relu in (True, False):
        convolution = node and _trunk_convolution(onnx, node, weights)
        if not convolution:
            return None
        weight, bias = convolution
        nodes.append(node)
        node = graph.only_consumer(node.output[0])
        if node is not None and node.op_type == "BatchNormalization":
            norm = _batch_norm(onnx, node, weights)
            if norm is None:
                return None
            scale, shift = norm
            weight, bias = weight * scale[:, None, None, None], bias * scale + shift
            nodes.append(node)
            node = graph.only_consumer(node.output[0])
        if relu:
            if node is None or node.op_type != "Relu":
                return None
            nodes.append(node)
            node = graph.only_consumer(node.output[0])
        found.append(_Convolution(weight, bias, relu))
    crop_users = graph.consumers.get(crops[0].output[0], [])
    if (
        node is None or node.op_type not in ("Add", "Sum") or len(node.input) != 2
        or crop_users != [node] or crops[0].output[0] in graph.outputs
    ):
        return None
    nodes.append(node)
    return nodes, found, node.output[0]


def _residual_trunks(onnx, model, weights: dict) -> list[tuple[list, list[_Convolution], str, str]]:
    """Runs of residual blocks: their nodes, convolutions, input and output."""
    graph, trunks, taken = _Graph(model), [], set()
    for node in model.graph.node:
        if node.op_type != "Conv" or node.output[0] in taken:
            continue
        source = node.input[0]
        nodes, convolutions, output = [], [], source
        while (block := _residual_block(onnx, graph, weights, output)) is not None:
            block_nodes, block_convolutions, output = block
            nodes += block_nodes
            convolutions += block_convolutions
            if output in graph.outputs:
                break
        if nodes:
            taken.update(n.output[0] for n in nodes)
            trunks.append((nodes, convolutions, source, output))
    return trunks


class _PhaseRewriter(_Rewriter):
    """A rewriter that numbers its nodes and stores each constant once."""

    def __init__(self, onnx, node):
        super().__init__(onnx, node)
        self.count = 0
        self.constants: dict[tuple, str] = {}

    def op(self, op: str, inputs: list[str], **attributes) -> str:
        self.count += 1
        return self.add(op, inputs, f"wr{self.count}", **attributes)

    def value(self, array: np.ndarray) -> str:
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.constants:
            self.constants[key] = self.constant(f"wr_constant{len(self.constants)}", array)
        return self.constants[key]

    def integers(self, *values: int) -> str:
        return self.value(np.array(values, np.int64))

    def combination(self, coefficients: np.ndarray, tensors: list[str]) -> str:
        """The sum of ``coefficients[i] * tensors[i]``, as element-wise operations."""
        total = None
        for coefficient, tensor in zip(coefficients, tensors):
            if coefficient == 0:
                continue
            if abs(coefficient) != 1:
                tensor = self.op("Mul", [tensor, self.value(np.array(abs(coefficient), np.float32))])
            if total is None:
                total = tensor if coefficient > 0 else self.op("Neg", [tensor])
            else:
                total = self.op("Add" if coefficient > 0 else "Sub", [total, tensor])
        return total


def _phase_convolution(r: _PhaseRewriter, phases: list[str], convolution: _Convolution) -> list[str]:
    """Winograd F(4,3) along the rows of an unpadded 3x3 convolution whose input is
    given as its rows' ``TILE`` phases (row ``TILE*j + k`` is row j of phase k): the
    output's phases.

    Output rows 4j..4j+3 read input rows 4j..4j+5 (d0..d5): the six row combinations
    of ``INPUT_TRANSFORM``, each convolved along the row with one combination of the
    kernel's rows (``KERNEL_TRANSFORM``), make the four output rows
    (``OUTPUT_TRANSFORM``)."""
    rows = r.integers(2)
    d = [r.op("Slice", [phases[i % TILE], r.integers(i // TILE), r.integers(-1 if i < TILE else END), rows])
         for i in range(TILE + 2)]
    t = [r.combination(coefficients, d) for coefficients in INPUT_TRANSFORM]
    kernels = _kernel_rows(convolution.weight)
    bias = r.value(convolution.bias.astype(np.float32))

    def convolve(k: int, scale: float = 1.0, *extra: str) -> str:
        return r.op("Conv", [t[k], r.value((scale * kernels[k]).astype(np.float32)), *extra], kernel_shape=[1, 3])

    shared = [convolve(k) for k in range(1, TILE + 1)]
    outputs = []
    for row, coefficients in enumerate(OUTPUT_TRANSFORM):
        rest = r.combination(coefficients[1:TILE + 1], shared)
        # The first and last products each feed one output row: convolved with the bias
        # and the output transform's coefficient, they take the rest as a sum.
        if row == 0:
            total = r.op("Add", [convolve(0, coefficients[0], bias), rest])
        elif row == TILE - 1:
            total = r.op("Add", [convolve(TILE + 1, coefficients[TILE + 1], bias), rest])
        else:
            total = r.op("Add", [rest, r.value(convolution.bias.astype(np.float32).reshape(1, -1, 1, 1))])
        outputs.append(r.op("Relu", [total]) if convolution.relu else total)
    return outputs


def _kernel_rows(weight: np.ndarray) -> np.ndarray:
    """The (TILE+2, out, in, 1, 3) kernels of the Winograd products: combinations of
    ``weight``'s three rows."""
    return np.einsum("ki,ociw->kocw", KERNEL_TRANSFORM, weight)[:, :, :, None, :]


def _winograd_trunk(onnx, node, source: str, output: str, convolutions: list[_Convolution]) -> tuple[list, list]:
    r = _PhaseRewriter(onnx, node)
    rows = r.op("Shape", [source], start=2, end=3)
    # Each convolution's tiles use TILE rows of its input's phases while its output is
    # only 2 rows shorter: the trunk starts with that many spare zero rows at the bottom
    # (and as many more as make whole tiles), whose outputs the last slice drops.
    spare = (TILE - 2) * len(convolutions)
    needed = r.op("Add", [rows, r.integers(spare)])
    extra = r.op("Add", [r.op("Mod", [r.op("Neg", [needed]), r.integers(TILE)]), r.integers(spare)])
    padded = r.op("Pad", [source, r.op("Concat", [r.integers(0, 0, 0, 0, 0, 0), extra, r.integers(0)], axis=0)], mode="constant")
    phases = [r.op("Slice", [padded, r.integers(k), r.integers(END), r.integers(2), r.integers(TILE)]) for k in range(TILE)]
    for block in range(len(convolutions) // 2):
        inner = _phase_convolution(r, phases, convolutions[2 * block])
        outer = _phase_convolution(r, inner, convolutions[2 * block + 1])
        # The shortcut loses CROP rows at the top: its phase k is phase k+CROP, a row
        # further down where that wraps; both keep the two convolutions' length.
        shortcut = []
        for k in range(TILE):
            first = (k + CROP) // TILE
            shortcut.append(r.op("Slice", [phases[(k + CROP) % TILE], r.integers(first, CROP), r.integers(first - 2, -CROP), r.integers(2, 3)]))
        phases = [r.op("Add", [cropped, result]) for cropped, result in zip(shortcut, outer)]
    pairs = r.op("Concat", [r.op("Unsqueeze", [phase, r.integers(3)]) for phase in phases], axis=3)
    shape = r.op("Concat", [r.op("Shape", [source], start=0, end=2), r.integers(-1), r.op("Shape", [phases[0]], start=3, end=4)], axis=0)
    interleaved = r.op("Reshape", [pairs, shape])
    out_rows = r.op("Sub", [rows, r.integers(2 * CROP * (len(convolutions) // 2))])
    r.add("Slice", [interleaved, r.integers(0), out_rows, r.integers(2)], "", output=output)
    return r.nodes, r.initializers


def winograd_residuals(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """``model`` with each run of residual blocks (unpadded 3x3 convolutions, optional
    batch normalisation, the shortcut cropped by two pixels: eccv16's trunk) computed as
    a one-dimensional Winograd F(4,3) along the rows, on the phases of its rows kept
    apart through the run; ``model`` itself where it has none. The run's output keeps
    its name; the tensors inside it are gone."""
    onnx = require_onnx()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < WINOGRAD_OPSET:
        return model
    weights = {init.name: init for init in model.graph.initializer}
    trunks = _residual_trunks(onnx, model, weights)
    if not trunks:
        return model
    ends = {trunk[0][-1].output[0]: trunk for trunk in trunks}
    removed = {node.output[0] for trunk_nodes, *_ in trunks for node in trunk_nodes}
    replaced = {name for trunk_nodes, *_ in trunks for node in trunk_nodes for name in node.input}
    nodes, initializers = [], []
    for node in model.graph.node:
        if node.output[0] in ends:
            _, convolutions, source, output = ends[node.output[0]]
            new_nodes, new_initializers = _winograd_trunk(onnx, node, source, output, convolutions)
            nodes += new_nodes
            initializers += new_initializers
        elif node.output[0] not in removed:
            nodes.append(node)
    return _with_nodes(model, nodes, initializers, replaced)


def _with_nodes(model: "onnx.ModelProto", nodes: list, initializers: list, replaced: set[str]) -> "onnx.ModelProto":
    """A copy of ``model`` whose graph has ``nodes`` and ``initializers`` besides its
    own, less the ``replaced`` weights that no node reads any more."""
    result = type(model)()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in [*result.graph.initializer, *initializers] if init.name not in replaced or init.name in still_used]
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept)
    return result


def rewrite_nodes(model: "onnx.ModelProto", matches: Callable, rewrite: Callable) -> "onnx.ModelProto":
    """``model`` with each node for which ``matches(onnx, node, weights)`` holds replaced
    by the nodes and initializers ``rewrite(onnx, node, weights)`` gives (writing the
    node's output under its name), the weights no node reads any more dropped; ``model``
    itself where no node matches."""
    onnx = require_onnx()
    weights = {init.name: init for init in model.graph.initializer}
    if not any(matches(onnx, node, weights) for node in model.graph.node):
        return model
    nodes, initializers, replaced = [], [], set()
    for node in model.graph.node:
        if matches(onnx, node, weights):
            new_nodes, new_initializers = rewrite(onnx, node, weights)
            nodes += new_nodes
            initializers += new_initializers
            replaced.update(node.input[1:])
        else:
            nodes.append(node)
    return _with_nodes(model, nodes, initializers, replaced)
