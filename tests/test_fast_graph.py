"""fast_graph.faster_graph computes what the graph computes, at every size."""

from __future__ import annotations

import numpy as np
import pytest

from cvstyle import fast_graph, onnx_export, surgery

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


def _kernels(model) -> list[list[int]]:
    return [next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "kernel_shape")
            for node in model.graph.node if node.op_type == "Conv"]


@pytest.mark.parametrize("leading_pad", [True, False])
def test_eccv16_trunk_in_winograd_rows_is_equal_at_every_size(eccv16_model, leading_pad):
    """Both parities of the trunk's rows (the graph without its leading padding, as
    tiles run it, gives odd ones) and odd image sizes."""
    model = fast_graph.faster_graph(onnx_export.model_proto(eccv16_model))
    if not leading_pad:
        model = surgery.without_leading_pad(model)
    winograd = fast_graph.winograd_residuals(model)
    assert _kernels(model).count([3, 3]) == 12 and _kernels(winograd).count([3, 3]) == 2  # the two strided ones stay
    assert _kernels(winograd).count([1, 3]) == 60  # six products per trunk convolution
    assert [o.name for o in winograd.graph.output] == [o.name for o in model.graph.output]
    sizes = [(52, 76), (61, 47), (44, 44)] if leading_pad else [(84, 90), (92, 101), (100, 88)]
    for height, width in sizes:
        blob = np.random.default_rng(height).normal(0, 60, (1, 3, height, width)).astype(np.float32)
        expected = _run(model, blob)
        result = _run(winograd, blob)
        assert result.shape == expected.shape
        assert np.abs(result - expected).max() < 0.01  # grey levels


def _residual_blocks(batch_norm: bool, crop: int = fast_graph.CROP, blocks: int = 2, output_inside: bool = False):
    """``blocks`` residual blocks of 8 channels: conv, [batch norm], relu, conv,
    [batch norm], plus the input cropped by ``crop``."""
    helper, rng = onnx.helper, np.random.default_rng(3)
    nodes, initializers, source = [], [], "x"

    def constant(name, array):
        initializers.append(onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    for block in range(blocks):
        tensor = source
        for index, relu in enumerate((True, False)):
            name = f"b{block}c{index}"
            weight = constant(f"{name}_w", rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32))
            bias = constant(f"{name}_b", rng.normal(0, 1, 8).astype(np.float32))
            nodes.append(helper.make_node("Conv", [tensor, weight, bias], [f"{name}_conv"], kernel_shape=[3, 3]))
            tensor = f"{name}_conv"
            if batch_norm:
                parameters = [constant(f"{name}_{p}", value.astype(np.float32)) for p, value in
                              zip("gbmv", (rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8), rng.normal(0, 1, 8), rng.uniform(0.5, 2, 8)))]
                nodes.append(helper.make_node("BatchNormalization", [tensor, *parameters], [f"{name}_bn"], epsilon=1e-5))
                tensor = f"{name}_bn"
            if relu:
                nodes.append(helper.make_node("Relu", [tensor], [f"{name}_relu"]))
                tensor = f"{name}_relu"
        crop_parameters = [constant(f"b{block}_{p}", np.array(v, np.int64)) for p, v in
                           (("starts", [crop, crop]), ("ends", [-crop, -crop]), ("axes", [2, 3]))]
        nodes.append(helper.make_node("Slice", [source, *crop_parameters], [f"b{block}_shortcut"]))
        nodes.append(helper.make_node("Add", [tensor, f"b{block}_shortcut"], [f"b{block}_out"]))
        source = f"b{block}_out"
    outputs = [helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, None)]
    if output_inside:
        outputs.append(helper.make_tensor_value_info("b0_out", onnx.TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, None, None])],
                              outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)], ir_version=8)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_residual_blocks_with_or_without_batch_norm_are_rewritten_and_equal(batch_norm):
    model = _residual_blocks(batch_norm)
    winograd = fast_graph.winograd_residuals(model)
    assert _kernels(winograd) == [[1, 3]] * 24
    assert "BatchNormalization" not in {node.op_type for node in winograd.graph.node}
    for height, width in [(23, 30), (14, 9), (40, 41)]:
        blob = np.random.default_rng(width).normal(0, 10, (1, 8, height, width)).astype(np.float32)
        expected = _run(model, blob)
        assert np.abs(_run(winograd, blob) - expected).max() <= 1e-4 * np.abs(expected).max()


def test_residual_blocks_whose_inside_is_read_stop_there_and_others_are_left_alone():
    # The first block's output is also a graph output: each block is a run of its own.
    split = fast_graph.winograd_residuals(_residual_blocks(True, output_inside=True))
    assert {o.name for o in split.graph.output} == {"b0_out", "b1_out"}
    assert [node.op_type for node in split.graph.node].count("Reshape") == 2  # two runs, each interleaved once
    blob = np.random.default_rng(0).normal(0, 10, (1, 8, 30, 30)).astype(np.float32)
    session = ort.InferenceSession(split.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = ort.InferenceSession(_residual_blocks(True, output_inside=True).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(["b0_out", "b1_out"], {"x": blob})
    for result, wanted in zip(session.run(["b0_out", "b1_out"], {"x": blob}), expected):
        assert np.abs(result - wanted).max() <= 1e-4 * np.abs(wanted).max()
    other_crop = _residual_blocks(True, crop=1)
    assert fast_graph.winograd_residuals(other_crop) is other_crop


def test_instance_norm_networks_are_left_alone(instance_norm_model):
    model = fast_graph.faster_graph(onnx_export.model_proto(instance_norm_model))
    assert fast_graph.winograd_residuals(model) is model
