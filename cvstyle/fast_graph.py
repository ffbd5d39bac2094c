"""Rewrites of an ONNX style graph that compute the same thing faster on the CPU engines.

Profiled per operator (benchmarks/bench.py --only precision), the slowest single
node of every fast-neural-style network is its last convolution: a 9x9 kernel at full
resolution with only 3 output channels, which ONNX Runtime's and OpenVINO's blocked
convolution kernels pad to a whole vector of output channels (16), wasting most of the
work. Rearranging each 2x2 pixel block into channels (SpaceToDepth) turns it into a
convolution with 4x the output channels at half the resolution, which those kernels run
at full width; DepthToSpace puts the pixels back. Only the order of the additions
changes, so the results agree to float32 rounding.

Rewrites tried and dropped because they measured slower on both engines: transposed
convolutions as a convolution plus DepthToSpace (16 taps instead of 9 per output block),
and InstanceNormalization spelled out with GlobalAveragePool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .onnx_export import require_onnx

if TYPE_CHECKING:
    import onnx

BLOCK = 2
NARROW_OUTPUT = 4  # convolutions with at most this many output channels are rewritten


def _taps(kernel: int) -> np.ndarray:
    """For output phase r, input phase p and block offset a: the kernel index
    ``BLOCK*a + p - r`` it takes, or ``kernel`` (a zero weight) where that is outside."""
    count = -(-(kernel + BLOCK - 1) // BLOCK)
    r, p, a = np.meshgrid(range(BLOCK), range(BLOCK), range(count), indexing="ij")
    index = BLOCK * a + p - r
    return np.where((index >= 0) & (index < kernel), index, kernel)


def space_to_depth_weight(weight: np.ndarray) -> np.ndarray:
    """The (out*B*B, B*B*in, Th, Tw) weight of the half-resolution convolution that
    computes, per 2x2 block, what ``weight`` (out, in, kh, kw) computes per pixel."""
    out, inp, kh, kw = weight.shape
    padded = np.zeros((out, inp, kh + 1, kw + 1), np.float32)
    padded[:, :, :kh, :kw] = weight
    rows, cols = _taps(kh), _taps(kw)
    # -> (out, in, rh, ph, ah, rw, pw, aw)
    gathered = padded[:, :, rows[:, :, :, None, None, None], cols[None, None, None]]
    # SpaceToDepth orders channels (ph, pw, in); DepthToSpace (CRD) reads (out, rh, rw).
    ordered = gathered.transpose(0, 2, 5, 3, 6, 1, 4, 7)
    return np.ascontiguousarray(ordered.reshape(out * BLOCK * BLOCK, BLOCK * BLOCK * inp, rows.shape[2], cols.shape[2]))


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
    new_weight = space_to_depth_weight(weight)
    taps = np.array(new_weight.shape[2:], np.int64)
    r = _Rewriter(onnx, node)
    inputs = [r.constant("s2d_weight", new_weight)]
    if len(node.input) > 2 and node.input[2]:
        bias = onnx.numpy_helper.to_array(weights[node.input[2]]).astype(np.float32)
        inputs.append(r.constant("s2d_bias", np.repeat(bias, BLOCK * BLOCK)))
    # The output is H + top + bottom - kh + 1 high; the padded input must cover whole
    # blocks of it plus the taps, so it gets (-output) mod BLOCK more zero rows at the end.
    size = r.add("Shape", [node.input[0]], "s2d_size", start=2, end=4)
    out_size = r.add("Add", [size, r.constant("s2d_grow", np.array([top + bottom - kh + 1, left + right - kw + 1], np.int64))], "s2d_out_size")
    short = r.add("Mod", [r.add("Neg", [out_size], "s2d_neg"), r.constant("s2d_block", np.full(2, BLOCK, np.int64))], "s2d_short")
    spare = BLOCK * (taps - 1) - np.array([kh - 1, kw - 1], np.int64) + np.array([bottom, right], np.int64)
    ends = r.add("Add", [short, r.constant("s2d_spare", spare)], "s2d_ends")
    pads = r.add("Concat", [r.constant("s2d_starts", np.array([0, 0, top, left, 0, 0], np.int64)), ends], "s2d_pads", axis=0)
    padded = r.add("Pad", [node.input[0], pads], "s2d_padded", mode="constant")
    blocks = r.add("SpaceToDepth", [padded], "s2d_blocks", blocksize=BLOCK)
    convolved = r.add("Conv", [blocks, *inputs], "s2d_conv", kernel_shape=[int(t) for t in taps])
    pixels = r.add("DepthToSpace", [convolved], "s2d_pixels", blocksize=BLOCK, mode="CRD")
    zeros, axes = r.constant("s2d_zero", np.zeros(2, np.int64)), r.constant("s2d_axes", np.array([2, 3], np.int64))
    r.add("Slice", [pixels, zeros, out_size, axes], "", output=node.output[0])
    return r.nodes, r.initializers


def faster_graph(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """``model`` with its narrow full-resolution convolutions computed block-wise.

    Tensor names are kept, so outputs chosen by name (tiling statistics) still exist.
    """
    onnx = require_onnx()
    weights = {init.name: init for init in model.graph.initializer}
    targets = [node for node in model.graph.node if _is_narrow_convolution(onnx, node, weights)]
    if not targets:
        return model
    result = type(model)()
    result.CopyFrom(model)
    nodes, replaced = [], set()
    for node in result.graph.node:
        if node.op_type == "Conv" and any(node.output[0] == t.output[0] for t in targets):
            new_nodes, initializers = _rewrite(onnx, node, weights)
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
