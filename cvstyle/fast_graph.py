"""Rewrites of an ONNX style graph that compute the same thing faster on the CPU engines.

Profiled per operator (benchmarks/bench.py --only precision), the slowest single
node of every fast-neural-style network is its last convolution: a 9x9 kernel at full
resolution with only 3 output channels, which ONNX Runtime's and OpenVINO's blocked
convolution kernels pad to a whole vector of output channels (16), wasting most of the
work. One convolution with stride 2 computes all four pixels of each 2x2 block at once
(its kernel one larger, each of its 4x3 outputs one pixel of the block), which those
kernels run at 12 of 16 lanes; DepthToSpace puts the pixels back. Only the order of the
additions changes, so the results agree to float32 rounding.

For OpenVINO only, :func:`winograd_residuals` computes the residual trunk of the eccv16
networks (unpadded 3x3 convolutions, batch normalisation, the shortcut cropped) with two
thirds of its multiplications: a one-dimensional Winograd F(2,3) along the rows, on the
trunk kept as its even and odd rows throughout, so that no convolution has to split or
interleave rows. ONNX Runtime runs it slower than the plain trunk.

Rewrites tried and dropped because they measured slower or no faster
(benchmarks/graph_rewrites.py and docs/benchmarks.md): the same block computed after
rearranging the input with SpaceToDepth (the form before this one), transposed
convolutions as a convolution plus DepthToSpace, InstanceNormalization spelled out with
GlobalAveragePool, the last convolution as a separable pair, two-dimensional Winograd,
and Winograd along the rows with the rows split and interleaved at every convolution.
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
WINOGRAD_OPSET = 13  # Slice, Split and Unsqueeze with their parameters as inputs


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
    """Who produces and who consumes each tensor of a graph."""

    def __init__(self, model):
        self.producer = {output: node for node in model.graph.node for output in node.output}
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {value.name for value in model.graph.output}

    def only_consumer(self, name: str):
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
        if node.op_type != "Conv" or id(node) in taken:
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
            taken.update(id(n) for n in nodes)
            trunks.append((nodes, convolutions, source, output))
    return trunks


def _phase_convolution(r: _Rewriter, even: str, odd: str, convolution: _Convolution, index: int) -> tuple[str, str]:
    """Winograd F(2,3) along the rows of an unpadded 3x3 convolution whose input is
    given as its ``even`` and ``odd`` rows: the output's even and odd rows.

    Output rows 2j and 2j+1 read input rows 2j..2j+3 (d0..d3): with t0 = d0-d2,
    t1 = d1+d2, t2 = d2-d1, t3 = d1-d3, each convolved along the row with one
    combination of the kernel's rows (m0..m3), row 2j is m0+m1+m2 and row 2j+1 m1-m2-m3."""
    axis, first, second, last, end = (r.shared(name) for name in ("axis", "first", "second", "last", "end"))
    d0, d2 = r.add("Slice", [even, first, last, axis], f"wr{index}_d0"), r.add("Slice", [even, second, end, axis], f"wr{index}_d2")
    d1, d3 = r.add("Slice", [odd, first, last, axis], f"wr{index}_d1"), r.add("Slice", [odd, second, end, axis], f"wr{index}_d3")
    t = [r.add("Sub", [d0, d2], f"wr{index}_t0"), r.add("Add", [d1, d2], f"wr{index}_t1"),
         r.add("Sub", [d2, d1], f"wr{index}_t2"), r.add("Sub", [d1, d3], f"wr{index}_t3")]
    g0, g1, g2 = (convolution.weight[:, :, row:row + 1] for row in range(3))
    # m3 is taken with -g2, so that each output row is one convolution plus one sum.
    kernels = [g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, -g2]
    bias = r.constant(f"wr{index}_bias", convolution.bias.astype(np.float32))

    def convolve(j: int, *extra: str) -> str:
        weight = r.constant(f"wr{index}_g{j}", kernels[j].astype(np.float32))
        return r.add("Conv", [t[j], weight, *extra], f"wr{index}_m{j}", kernel_shape=[1, 3])

    m1, m2 = convolve(1), convolve(2)
    rows = [r.add("Add", [convolve(0, bias), r.add("Add", [m1, m2], f"wr{index}_sum")], f"wr{index}_even"),
            r.add("Add", [convolve(3, bias), r.add("Sub", [m1, m2], f"wr{index}_difference")], f"wr{index}_odd")]
    if convolution.relu:
        rows = [r.add("Relu", [row], f"{row}_relu") for row in rows]
    return rows[0], rows[1]


class _PhaseRewriter(_Rewriter):
    """A rewriter with the integer constants the phase form uses, each stored once."""

    CONSTANTS = {
        "axis": [2], "two": [2], "first": [0], "second": [1], "last": [-1], "end": [END],
        # The shortcut crop: one even and one odd row at the top and bottom, CROP columns at the sides.
        "crop_starts": [CROP // 2, CROP], "crop_ends": [-(CROP // 2), -CROP], "crop_axes": [2, 3],
    }

    def __init__(self, onnx, node):
        super().__init__(onnx, node)
        self.names: dict[str, str] = {}

    def shared(self, key: str) -> str:
        if key not in self.names:
            self.names[key] = self.constant(f"wr_{key}", np.array(self.CONSTANTS[key], np.int64))
        return self.names[key]


def _winograd_trunk(onnx, node, source: str, output: str, convolutions: list[_Convolution]) -> tuple[list, list]:
    r = _PhaseRewriter(onnx, node)
    axis, two, first, second, end = (r.shared(name) for name in ("axis", "two", "first", "second", "end"))
    rows = r.add("Shape", [source], "wr_rows", start=2, end=3)
    # An odd number of rows gets one more, whose outputs the last slice drops.
    pads = r.add("Concat", [r.constant("wr_pads_before", np.zeros(6, np.int64)), r.add("Mod", [rows, two], "wr_rows_odd"),
                            r.constant("wr_pads_after", np.zeros(1, np.int64))], "wr_pads", axis=0)
    padded = r.add("Pad", [source, pads], "wr_padded", mode="constant")
    even = r.add("Slice", [padded, first, end, axis, two], "wr_even")
    odd = r.add("Slice", [padded, second, end, axis, two], "wr_odd")
    crop = [r.shared(name) for name in ("crop_starts", "crop_ends", "crop_axes")]
    for block in range(len(convolutions) // 2):
        inner = _phase_convolution(r, even, odd, convolutions[2 * block], 2 * block)
        outer_even, outer_odd = _phase_convolution(r, *inner, convolutions[2 * block + 1], 2 * block + 1)
        even = r.add("Add", [r.add("Slice", [even, *crop], f"wr{block}_even_shortcut"), outer_even], f"wr{block}_even_out")
        odd = r.add("Add", [r.add("Slice", [odd, *crop], f"wr{block}_odd_shortcut"), outer_odd], f"wr{block}_odd_out")
    pair_axis = r.constant("wr_pair_axis", np.array([3], np.int64))
    pairs = r.add("Concat", [r.add("Unsqueeze", [even, pair_axis], "wr_even_pairs"),
                             r.add("Unsqueeze", [odd, pair_axis], "wr_odd_pairs")], "wr_pairs", axis=3)
    shape = r.add("Concat", [r.add("Shape", [source], "wr_nc", start=0, end=2), r.constant("wr_any", np.array([-1], np.int64)),
                             r.add("Shape", [even], "wr_columns", start=3, end=4)], "wr_shape", axis=0)
    interleaved = r.add("Reshape", [pairs, shape], "wr_interleaved")
    shrink = r.constant("wr_shrink", np.array([2 * CROP * (len(convolutions) // 2)], np.int64))
    r.add("Slice", [interleaved, first, r.add("Sub", [rows, shrink], "wr_out_rows"), axis], "", output=output)
    return r.nodes, r.initializers


def winograd_residuals(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """``model`` with each run of residual blocks (unpadded 3x3 convolutions, optional
    batch normalisation, the shortcut cropped by two pixels: eccv16's trunk) computed as
    a one-dimensional Winograd F(2,3) along the rows, on even and odd rows kept apart
    through the run; ``model`` itself where it has none. The run's output keeps its name;
    the tensors inside it are gone."""
    onnx = require_onnx()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < WINOGRAD_OPSET:
        return model
    weights = {init.name: init for init in model.graph.initializer}
    trunks = _residual_trunks(onnx, model, weights)
    if not trunks:
        return model
    result = type(model)()
    result.CopyFrom(model)
    removed = {name for nodes, *_ in trunks for node in nodes for name in node.output}
    last_nodes = {trunk[0][-1].output[0]: trunk for trunk in trunks}
    nodes = []
    for node in result.graph.node:
        if node.output[0] in last_nodes:
            trunk_nodes, convolutions, source, output = last_nodes[node.output[0]]
            new_nodes, initializers = _winograd_trunk(onnx, node, source, output, convolutions)
            nodes += new_nodes
            result.graph.initializer.extend(initializers)
        elif node.output[0] not in removed:
            nodes.append(node)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in result.graph.initializer if init.name in still_used]
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
    result = type(model)()
    result.CopyFrom(model)
    nodes, replaced = [], set()
    for node in result.graph.node:
        if matches(onnx, node, weights):
            new_nodes, initializers = rewrite(onnx, node, weights)
            nodes += new_nodes
            result.graph.initializer.extend(initializers)
            replaced.update(node.input[1:])
        else:
            nodes.append(node)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    still_used = {name for node in nodes for name in node.input}
    kept = [init for init in result.graph.initializer if init.name not in replaced or init.name in still_used]
    del result.graph.initializer[:]
    result.graph.initializer.extend(kept)
    return result
