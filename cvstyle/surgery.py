"""Operations on a style network's ONNX graph: the variants that engines, tiling and
statistics run (free input size, chosen outputs, no leading padding, frozen
normalisation statistics).

Every function returns a new graph and leaves its argument as it was. ``onnx`` is
imported lazily so that the rest of cvstyle works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .onnx_export import require_onnx

if TYPE_CHECKING:
    import onnx

INSTANCE_NORM = "InstanceNormalization"
Statistics = list[tuple[np.ndarray, np.ndarray]]  # per normalisation: channel means, variances


def copy(graph: "onnx.ModelProto") -> "onnx.ModelProto":
    duplicate = type(graph)()
    duplicate.CopyFrom(graph)
    return duplicate


def any_size(graph: "onnx.ModelProto") -> "onnx.ModelProto":
    """``graph``, or where its input has a fixed height or width (as ``torch.onnx.export``
    writes it unless given dynamic axes) a copy with both free, so that every engine
    takes any image size."""
    dims = graph.graph.input[0].type.tensor_type.shape.dim if graph.graph.input else []
    if len(dims) != 4 or not any(dim.HasField("dim_value") for dim in dims[2:]):
        return graph
    free = copy(graph)
    for value, suffix in [(free.graph.input[0], ""), *((out, "_out") for out in free.graph.output)]:
        for dim, name in zip(value.type.tensor_type.shape.dim[2:], ("height", "width")):
            dim.dim_param = name + suffix  # replaces the fixed dim_value
    del free.graph.value_info[:]  # intermediate shapes worked out for the fixed size
    return free


def prune(graph: "onnx.ModelProto", outputs: Sequence[str]) -> "onnx.ModelProto":
    """Only the nodes and initializers that ``outputs`` need (ONNX Runtime would
    otherwise still run the whole graph)."""
    pruned = copy(graph)
    needed = set(outputs)
    kept = []
    for node in reversed(pruned.graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del pruned.graph.node[:]
    pruned.graph.node.extend(reversed(kept))
    initializers = [init for init in pruned.graph.initializer if init.name in needed]
    del pruned.graph.initializer[:]
    pruned.graph.initializer.extend(initializers)
    inputs = [value for value in pruned.graph.input if value.name in needed]
    del pruned.graph.input[:]
    pruned.graph.input.extend(inputs)
    return pruned


def with_outputs(
    graph: "onnx.ModelProto", tensors: Sequence[str], replace: bool = False
) -> "onnx.ModelProto":
    """``graph`` with the named intermediate ``tensors`` as outputs too, or with
    ``replace`` instead of its own (then pruned to what they need)."""
    onnx = require_onnx()
    extended = copy(graph)
    if replace:
        extended = prune(extended, tensors)
        del extended.graph.output[:]
    # OpenCV's importer needs each output's type and rank; the sizes may stay unknown.
    extended.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * 4)
        for name in tensors
    )
    return extended


def normalisation_inputs(graph: "onnx.ModelProto", kinds: Sequence[str] = (INSTANCE_NORM,)) -> list[str]:
    """The input tensor of each normalisation node of ``kinds``, in graph order."""
    return [node.input[0] for node in graph.graph.node if node.op_type in kinds]


def _constant(graph: "onnx.ModelProto", name: str) -> np.ndarray | None:
    onnx = require_onnx()
    for init in graph.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    return None


# Ops that read a window of their input around each pixel they compute, by kernel.
_WINDOWED = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"})
# Where a kernel's size is not in the graph: a 9x9, the widest a style network has.
_UNKNOWN_KERNEL_REACH = 4
# Resizing reads its input's neighbours: one pixel (nearest rounds either way), two (cubic).
_RESIZE_REACH = {"nearest": 1, "linear": 1, "cubic": 2}


def spatial_reach(graph: "onnx.ModelProto") -> int:
    """How far, in the pixels of their inputs and summed along the graph, the graph's
    nodes read beyond the pixel each computes: what a window of its input must hold
    beyond the outputs wanted for them to be exact (convolutions' half kernels)."""
    onnx = require_onnx()
    shapes = {init.name: tuple(init.dims) for init in graph.graph.initializer}
    reach = 0
    for node in graph.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in _WINDOWED:
            weight = shapes.get(node.input[1], ()) if len(node.input) > 1 else ()
            kernel = list(attributes.get("kernel_shape") or weight[2:])
            if not kernel:
                reach += _UNKNOWN_KERNEL_REACH
                continue
            dilations = list(attributes.get("dilations") or [1] * len(kernel))
            reach += max(-(-(k - 1) * d // 2) for k, d in zip(kernel, dilations))
        elif node.op_type in ("Resize", "Upsample"):
            mode = attributes.get("mode", b"nearest")
            reach += _RESIZE_REACH.get(mode.decode() if isinstance(mode, bytes) else mode, 2)
    return reach


def leading_border(graph: "onnx.ModelProto") -> int | None:
    """The padding of the graph's first node if it is an even reflection padding of
    height and width only (the fast-neural-style checkpoints open with 40 pixels)."""
    if not graph.graph.input or not graph.graph.node:
        return None
    first = graph.graph.node[0]
    source = graph.graph.input[0].name
    modes = [attr.s for attr in first.attribute if attr.name == "mode"]
    if first.op_type != "Pad" or modes != [b"reflect"] or list(first.input[:1]) != [source]:
        return None
    if sum(source in node.input for node in graph.graph.node) != 1 or len(first.input) < 2:
        return None
    pads = _constant(graph, first.input[1])
    if pads is None or pads.shape != (8,) or pads[[0, 1, 4, 5]].any():
        return None
    border = int(pads[2])
    return border if border > 0 and all(int(p) == border for p in pads[[2, 3, 6, 7]]) else None


def without_leading_pad(graph: "onnx.ModelProto") -> "onnx.ModelProto":
    """``graph`` without its leading reflection padding (see :func:`leading_border`):
    its input is then the already padded image."""
    if leading_border(graph) is None:
        raise ValueError("the graph does not open with an even reflection padding")
    trimmed = copy(graph)
    first = trimmed.graph.node[0]
    padded, source = first.output[0], trimmed.graph.input[0].name
    del trimmed.graph.node[0]
    for node in trimmed.graph.node:
        for index, name in enumerate(node.input):
            if name == padded:
                node.input[index] = source
    return prune(trimmed, [value.name for value in trimmed.graph.output])


def freeze_instance_norms(
    graph: "onnx.ModelProto", statistics: Statistics | Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> "onnx.ModelProto":
    """``graph`` with InstanceNormalizations turned into batch normalisations with the
    given whole-image statistics: every one, in graph order, for a list; for a mapping,
    those whose input it names (the others stay as they are)."""
    onnx = require_onnx()
    frozen = copy(graph)
    ordered = iter(statistics) if isinstance(statistics, list) else None
    for node in frozen.graph.node:
        if node.op_type != INSTANCE_NORM:
            continue
        if ordered is not None:
            mean, var = next(ordered)
        elif node.input[0] in statistics:
            mean, var = statistics[node.input[0]]
        else:
            continue
        names = [f"{node.input[0]}_frozen_mean", f"{node.input[0]}_frozen_var"]
        frozen.graph.initializer.extend(
            onnx.numpy_helper.from_array(np.asarray(array, np.float32), name)
            for array, name in zip((mean, var), names)
        )
        node.op_type = "BatchNormalization"
        node.input.extend(names)
    return frozen


@dataclass(frozen=True)
class Normalisation:
    """An InstanceNormalization node: ``source`` is its input, ``target`` its output."""

    source: str
    target: str
    scale: np.ndarray
    bias: np.ndarray
    epsilon: float


@dataclass(frozen=True)
class Stage:
    """A part of a graph that needs no whole-image statistics besides those of the
    normalisations it starts from. ``graph`` takes ``inputs`` (the graph's input, the
    outputs of ``normalisations`` or tensors kept from earlier stages) and gives
    ``outputs`` (tensors later stages or the caller need)."""

    graph: "onnx.ModelProto"
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    normalisations: tuple[Normalisation, ...]


def _normalisation(graph: "onnx.ModelProto", node) -> Normalisation:
    epsilon = next((attr.f for attr in node.attribute if attr.name == "epsilon"), 1e-5)
    scale, bias = (_constant(graph, name) for name in node.input[1:3])
    if scale is None or bias is None:
        raise ValueError(f"InstanceNormalization {node.name or node.output[0]} has non-constant parameters")
    return Normalisation(node.input[0], node.output[0], scale.astype(np.float64), bias.astype(np.float64), epsilon)


def _channel_counts(graph: "onnx.ModelProto") -> dict[str, int]:
    """Each tensor's channel count where shape inference can tell it."""
    onnx = require_onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(graph)
    except Exception:  # shape inference is a help here, not a requirement
        return {}
    counts = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            counts[value.name] = dims[1].dim_value
    return counts


def split_stages(graph: "onnx.ModelProto") -> list[Stage]:
    """Cut ``graph`` at its instance normalisations: stage ``k`` runs everything that
    depends on the first ``k`` normalisations' statistics and no later ones. Run in
    order over a whole image, each stage's normalisation statistics are known before it
    starts; the normalisations themselves are left to the caller (per-channel affine
    maps of the stored ``source`` tensors)."""
    onnx = require_onnx()
    constants = {init.name for init in graph.graph.initializer}
    channels = _channel_counts(graph)
    stage_of = {value.name: 0 for value in graph.graph.input}
    members: list[list] = [[]]
    norms: list[list[Normalisation]] = [[]]
    for node in graph.graph.node:
        level = max((stage_of[name] for name in node.input if name and name not in constants), default=0)
        if node.op_type == INSTANCE_NORM:
            level += 1
        while len(members) <= level:
            members.append([])
            norms.append([])
        if node.op_type == INSTANCE_NORM:
            norms[level].append(_normalisation(graph, node))
        else:
            members[level].append(node)
        for name in node.output:
            stage_of[name] = level
    final = {value.name for value in graph.graph.output}
    consumed_later = {
        name: max(level for level, nodes in enumerate(members) for node in nodes if name in node.input)
        for level, nodes in enumerate(members) for node in nodes for name in node.input
    }
    for level, found in enumerate(norms):
        for norm in found:
            consumed_later[norm.source] = max(consumed_later.get(norm.source, 0), level)
    stages = []
    for level, nodes in enumerate(members):
        produced = {name for node in nodes for name in node.output}
        needed = {name for node in nodes for name in node.input if name and name not in constants}
        inputs = tuple(sorted(needed - produced))
        outputs = tuple(sorted(
            name for name in produced if name in final or consumed_later.get(name, -1) > level
        ))
        initializers = [init for init in graph.graph.initializer
                        if any(init.name in node.input for node in nodes)]
        value = onnx.helper.make_tensor_value_info
        sub = onnx.helper.make_graph(
            nodes, f"stage{level}",
            # OpenCV 4's importer works out layer shapes from the inputs' channel counts.
            [value(name, onnx.TensorProto.FLOAT, ["N", channels.get(name), "H", "W"]) for name in inputs],
            [value(name, onnx.TensorProto.FLOAT, [None] * 4) for name in outputs],
            initializers,
        )
        model = onnx.helper.make_model(sub, opset_imports=graph.opset_import, ir_version=graph.ir_version)
        stages.append(Stage(model, inputs, outputs, tuple(norms[level])))
    return stages
