"""fast_graph.faster_graph computes what the graph computes, at every size."""

from __future__ import annotations

import numpy as np
import pytest

from cvstyle import fast_graph, onnx_export

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(model, blob: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: blob})[0]


def _convolution(weight: np.ndarray, pads: list[int]):
    helper = onnx.helper
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=list(weight.shape[2:]), pads=pads)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, weight.shape[1], None, None])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight, "w"),
         onnx.numpy_helper.from_array(np.arange(weight.shape[0], dtype=np.float32), "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)], ir_version=8)


@pytest.mark.parametrize("kernel,pads", [((9, 9), [4, 4, 4, 4]), ((7, 4), [1, 3, 2, 0]), ((3, 3), [0, 0, 0, 0])])
@pytest.mark.parametrize("height,width", [(31, 17), (32, 48), (9, 10)])
def test_narrow_convolution_is_rewritten_and_equal(kernel, pads, height, width):
    rng = np.random.default_rng(height * width)
    model = _convolution(rng.normal(size=(3, 8, *kernel)).astype(np.float32), pads)
    faster = fast_graph.faster_graph(model)
    convolutions = [node for node in faster.graph.node if node.op_type == "Conv"]
    assert len(convolutions) == 1
    assert {a.name: onnx.helper.get_attribute_value(a) for a in convolutions[0].attribute}["strides"] == [2, 2]
    assert [node.op_type for node in faster.graph.node].count("DepthToSpace") == 1
    assert "w" not in {init.name for init in faster.graph.initializer}  # the old weight is gone
    blob = rng.normal(0, 50, (1, 8, height, width)).astype(np.float32)
    expected, result = _run(model, blob), _run(faster, blob)
    assert result.shape == expected.shape
    assert np.abs(result - expected).max() <= 1e-3 * np.abs(expected).max()


def test_wide_or_strided_convolutions_are_left_alone():
    rng = np.random.default_rng(0)
    wide = _convolution(rng.normal(size=(16, 8, 3, 3)).astype(np.float32), [1, 1, 1, 1])
    assert fast_graph.faster_graph(wide) is wide


def test_the_converted_networks_keep_their_outputs(fixture_model):
    model = onnx_export.model_proto(fixture_model)
    faster = fast_graph.faster_graph(model)
    assert [o.name for o in faster.graph.output] == [o.name for o in model.graph.output]
    blob = np.random.default_rng(1).normal(0, 60, (1, 3, 52, 76)).astype(np.float32)
    expected = _run(model, blob)
    assert np.abs(_run(faster, blob) - expected).max() < 0.01  # grey levels: far below one
