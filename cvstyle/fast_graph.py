"""Rewrites of an ONNX style graph that compute the same thing faster on the CPU engines.

Profiled per operator (benchmarks/bench.py --only precision), the slowest single
node of every fast-neural-style network is its last convolution: a 9x9 kernel at full
resolution with only 3 output channels, which ONNX Runtime's and OpenVINO's blocked
convolution kernels pad to a whole vector of output channels (16), wasting most of the
work. One convolution with stride 2 computes all four pixels of each 2x2 block at once
(its kernel one larger, each of its 4x3 outputs one pixel of the block), which those
kernels run at 12 of 16 lanes; DepthToSpace puts the pixels back. Only the order of the
additions changes, so the results agree to float32 rounding.

Rewrites tried and dropped because they measured slower or no faster
(benchmarks/graph_rewrites.py and docs/benchmarks.md): the same block computed after
rearranging the input with SpaceToDepth (the form before this one), transposed
convolutions as a convolution plus DepthToSpace, InstanceNormalization spelled out with
GlobalAveragePool, the last convolution as a separable pair, and Winograd convolutions
written as graph operations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .onnx_export import require_onnx

if TYPE_CHECKING:
    import onnx

BLOCK = 2
NARROW_OUTPUT = 4  # convolutions with at most this many output channels are rewritten


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
