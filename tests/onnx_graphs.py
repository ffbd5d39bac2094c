"""Small ONNX graphs built with onnx.helper, for tests of `.onnx` models.

``channel_mask``: multiplies each input channel by a constant (e.g. zeroes channel 0),
which shows which colour a pre-processing puts in which channel. ``transformer_net``: the
layer structure of the PyTorch example trainer's TransformerNet (pytorch/examples
fast_neural_style: reflection padding, convolutions, instance normalisation, ReLU,
residual blocks, nearest upsampling), narrower, with seeded weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

onnx = __import__("pytest").importorskip("onnx", reason="building ONNX graphs needs onnx (cvstyle[onnx])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 17  # what torch.onnx.export writes by default in recent PyTorch releases


def save(nodes: list, initializers: list, path: Path, fixed_size: tuple[int, int] | None = None) -> Path:
    dims = [1, 3, *(fixed_size or ("height", "width"))]
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, None, None])],
        initializers,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path


def identity(path: Path) -> Path:
    return save([helper.make_node("Identity", ["input"], ["output"])], [], path)


def channel_mask(path: Path, mask=(0.0, 1.0, 1.0)) -> Path:
    """Output channel c = input channel c x mask[c]."""
    factors = numpy_helper.from_array(np.asarray(mask, np.float32).reshape(1, 3, 1, 1), "mask")
    return save([helper.make_node("Mul", ["input", "mask"], ["output"])], [factors], path)


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.weights: list = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}{self.count}"

    def constant(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], **attributes))
        return out

    def conv_layer(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, bias: float = 0.0) -> str:
        """torch's ConvLayer: ReflectionPad2d(kernel // 2), then Conv2d."""
        pad = kernel // 2
        pads = self.constant(np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64), "pads")
        x = self.node("Pad", [x, pads], "pad", mode="reflect")
        weight = self.rng.normal(0, (2 / (cin * kernel * kernel)) ** 0.5, (cout, cin, kernel, kernel))
        w = self.constant(weight.astype(np.float32), "w")
        b = self.constant((bias + self.rng.normal(0, 0.1, cout)).astype(np.float32), "b")
        return self.node("Conv", [x, w, b], "conv", kernel_shape=[kernel, kernel], strides=[stride, stride])

    def instance_norm(self, x: str, channels: int) -> str:
        scale = self.constant((1 + self.rng.normal(0, 0.1, channels)).astype(np.float32), "gamma")
        shift = self.constant(self.rng.normal(0, 0.1, channels).astype(np.float32), "beta")
        return self.node("InstanceNormalization", [x, scale, shift], "in", epsilon=1e-5)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], "relu")

    def upsample(self, x: str) -> str:
        """F.interpolate(x, mode="nearest", scale_factor=2) as torch.onnx exports it."""
        scales = self.constant(np.array([1, 1, 2, 2], np.float32), "scales")
        return self.node(
            "Resize", [x, "", scales], "up", mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor",
        )


def transformer_net(
    path: Path, seed: int = 0, width: int = 8, residuals: int = 2,
    fixed_size: tuple[int, int] | None = None, residual_kernel: int = 3,
) -> Path:
    """TransformerNet's structure with ``width`` channels where it has 32 (64 and 128
    become 2x and 4x), ``residuals`` residual blocks where it has 5, seeded weights, and
    an output around 0-255 like a trained model's. ``fixed_size``: the input's height
    and width, as torch.onnx.export writes them without dynamic axes.
    ``residual_kernel``: the residual blocks' kernel size (3 in TransformerNet)."""
    b = _Builder(seed)
    c1, c2, c3 = width, 2 * width, 4 * width
    x = b.node("Mul", ["input", b.constant(np.float32(1 / 255), "s")], "scaled")
    x = b.relu(b.instance_norm(b.conv_layer(x, 3, c1, 9), c1))
    x = b.relu(b.instance_norm(b.conv_layer(x, c1, c2, 3, 2), c2))
    x = b.relu(b.instance_norm(b.conv_layer(x, c2, c3, 3, 2), c3))
    for _ in range(residuals):
        y = b.relu(b.instance_norm(b.conv_layer(x, c3, c3, residual_kernel), c3))
        y = b.instance_norm(b.conv_layer(y, c3, c3, residual_kernel), c3)
        x = b.node("Add", [x, y], "res")
    x = b.relu(b.instance_norm(b.conv_layer(b.upsample(x), c3, c2, 3), c2))
    x = b.relu(b.instance_norm(b.conv_layer(b.upsample(x), c2, c1, 3), c1))
    x = b.conv_layer(x, c1, 3, 9)
    out = b.node("Mul", [x, b.constant(np.float32(40), "gain")], "gain")
    b.nodes.append(helper.make_node("Add", [out, b.constant(np.float32(128), "mid")], ["output"]))
    return save(b.nodes, b.weights, path, fixed_size)
