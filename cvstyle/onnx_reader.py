"""A small protobuf reader for ONNX models: the outline of a ModelProto without the
``onnx`` package, for describing a model and checking it before an engine loads it.

It decodes what :mod:`cvstyle.validate` and ``models info`` need (header, opsets,
inputs and outputs with their shapes, nodes with their attributes, initializers with
their dimensions and stored element count) and never trusts a length or a count: a
malformed file raises :class:`~cvstyle.errors.ModelError` ("not an ONNX model (...)").
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import ModelError, quote

# TensorProto.DataType numbers, with the size of one element (0: not fixed-width).
ELEMENT_TYPES = {
    1: ("float32", 4), 2: ("uint8", 1), 3: ("int8", 1), 4: ("uint16", 2), 5: ("int16", 2),
    6: ("int32", 4), 7: ("int64", 8), 8: ("string", 0), 9: ("bool", 1), 10: ("float16", 2),
    11: ("float64", 8), 12: ("uint32", 4), 13: ("uint64", 8), 16: ("bfloat16", 2),
}
MAX_TENSOR_RANK = 8
# TensorProto fields holding elements: float_data, int32_data, string_data, int64_data,
# double_data, uint64_data; raw_data is 9.
_TYPED_DATA = {4: 4, 5: 4, 6: 0, 7: 8, 10: 8, 11: 8}


class OnnxFormatError(ModelError):
    def __init__(self, problem: str):
        super().__init__(f"not an ONNX model ({problem})")


@dataclass
class Tensor:
    """An initializer or a Constant node's value."""

    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    stored: int = 0  # elements present in the file (raw_data bytes / element size, or typed entries)
    external: bool = False
    raw: bytes = b""  # raw_data, for small integer constants (pads, shapes)
    ints: list[int] = field(default_factory=list)  # int32_data / int64_data


@dataclass
class ValueInfo:
    name: str = ""
    element_type: int = 0
    dims: list[int | str | None] | None = None  # None: rank unknown; a dim is a size, a name or unknown

    def describe(self) -> str:
        kind = ELEMENT_TYPES.get(self.element_type, (f"type {self.element_type}",))[0] if self.element_type else "?"
        dims = ", ".join("?" if d is None else str(d) for d in self.dims or [])
        return f"{self.name} {kind} [{dims}]"


@dataclass
class Node:
    op_type: str = ""
    domain: str = ""
    name: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ints: dict[str, list[int]] = field(default_factory=dict)  # int and ints attributes
    floats: dict[str, list[float]] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    subgraphs: list[str] = field(default_factory=list)  # names of graph attributes


@dataclass
class OnnxModel:
    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    initializers: list[Tensor] = field(default_factory=list)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    value_info: list[ValueInfo] = field(default_factory=list)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise OnnxFormatError("a varint runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of one protobuf message: an int for varints
    and fixed-width fields, the bytes for length-delimited ones."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OnnxFormatError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise OnnxFormatError(f"wire type {wire}")
        if pos > len(data):
            raise OnnxFormatError("a field runs past the end")
        yield number, value


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: int | bytes, what: str) -> int:
    if not isinstance(value, int):
        raise OnnxFormatError(f"{what} is not an integer")
    return _signed(value)


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field's entries, packed or not."""
    if isinstance(value, int):
        return [_signed(value)]
    numbers, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        numbers.append(_signed(number))
    return numbers


def _count(value: int | bytes, width: int) -> int:
    """Entries of a repeated field: one if unpacked, else packed bytes over ``width``
    (0: varints, counted)."""
    if isinstance(value, int):
        return 1
    return len(value) // width if width else len(_ints(value))


def read_tensor(data: bytes) -> Tensor:
    tensor = Tensor()
    for number, value in fields(data):
        if number == 1:
            tensor.dims += _ints(value)
        elif number == 2:
            tensor.data_type = _int(value, "a tensor's data type")
        elif number == 8:
            tensor.name = _text(value)
        elif number == 9 and isinstance(value, bytes):
            tensor.raw = value
        elif number == 14:
            tensor.external = tensor.external or _int(value, "data_location") == 1
        elif number == 13:
            tensor.external = True  # external_data entries
        elif number in _TYPED_DATA:
            tensor.stored += _count(value, _TYPED_DATA[number])
            if number in (5, 7):
                tensor.ints += _ints(value)
    if tensor.raw and tensor.data_type in ELEMENT_TYPES:  # raw_data may precede data_type
        width = max(ELEMENT_TYPES[tensor.data_type][1], 1)
        # A partial element makes the count wrong on purpose: the tensor is refused.
        tensor.stored = len(tensor.raw) // width if len(tensor.raw) % width == 0 else -1
    return tensor


def _value_info(data: bytes) -> ValueInfo:
    info = ValueInfo()
    for number, value in fields(data):
        if number == 1:
            info.name = _text(value)
        elif number == 2 and isinstance(value, bytes):  # TypeProto
            for tn, tv in fields(value):
                if tn == 1 and isinstance(tv, bytes):  # tensor_type
                    for fn, fv in fields(tv):
                        if fn == 1:
                            info.element_type = _int(fv, "an element type")
                        elif fn == 2 and isinstance(fv, bytes):  # shape
                            info.dims = [_dimension(dv) for dn, dv in fields(fv) if dn == 1]
    return info


def _dimension(data: int | bytes) -> int | str | None:
    if not isinstance(data, bytes):
        raise OnnxFormatError("a malformed dimension")
    dim: int | str | None = None
    for number, value in fields(data):
        if number == 1:
            dim = _int(value, "a dimension")
        elif number == 2:
            dim = _text(value)
    return dim


def _attribute(node: Node, data: bytes) -> None:
    name, kind, parts = "", 0, []
    for number, value in fields(data):
        if number == 1:
            name = _text(value)
        elif number == 20:
            kind = _int(value, "an attribute type")
        else:
            parts.append((number, value))
    for number, value in parts:
        if number in (3, 8):  # i, ints
            node.ints.setdefault(name, []).extend(_ints(value))
        elif number == 2 and isinstance(value, int):  # f
            node.floats.setdefault(name, []).append(_float32(value))
        elif number == 7:  # floats (packed fixed32 or one)
            raw = value.to_bytes(4, "little") if isinstance(value, int) else value
            node.floats.setdefault(name, []).extend(
                _float32(int.from_bytes(raw[i : i + 4], "little")) for i in range(0, len(raw) - 3, 4)
            )
        elif number == 4:  # s
            node.strings[name] = _text(value)
        elif number == 5 and isinstance(value, bytes):  # t
            node.tensors[name] = read_tensor(value)
        elif number in (6, 11, 22):  # g, graphs, type_protos... a subgraph or more
            node.subgraphs.append(name)
    if kind in (5, 10):  # GRAPH, GRAPHS without a value still name a subgraph
        node.subgraphs.append(name)


def _float32(bits: int) -> float:
    return struct.unpack("<f", (bits & 0xFFFFFFFF).to_bytes(4, "little"))[0]


def _node(data: bytes) -> Node:
    node = Node()
    for number, value in fields(data):
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 3:
            node.name = _text(value)
        elif number == 4:
            node.op_type = _text(value)
        elif number == 7:
            node.domain = _text(value)
        elif number == 5 and isinstance(value, bytes):
            _attribute(node, value)
    return node


def read_model(data: bytes) -> OnnxModel:
    """The outline of the serialised ModelProto ``data``; :class:`OnnxFormatError` if it
    is not one (no graph, no IR version, a malformed field)."""
    model = OnnxModel()
    graph = None
    for number, value in fields(data):
        if number == 1:
            model.ir_version = _int(value, "the IR version")
        elif number == 2:
            model.producer = quote(_text(value), 80)
        elif number == 7 and isinstance(value, bytes):
            graph = value
        elif number == 8:
            if not isinstance(value, bytes):
                raise OnnxFormatError("a malformed opset entry")
            domain, version = "", 0
            for on, ov in fields(value):
                if on == 1:
                    domain = quote(_text(ov), 80)
                elif on == 2:
                    version = _int(ov, f"the opset version of {domain or 'ai.onnx'}")
            model.opsets[domain] = version
    if graph is None or not model.ir_version:
        raise OnnxFormatError("no graph" if model.ir_version else "no IR version")
    for number, value in fields(graph):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            model.nodes.append(_node(value))
        elif number == 5:
            model.initializers.append(read_tensor(value))
        elif number in (11, 12, 13):
            info = _value_info(value)
            {11: model.inputs, 12: model.outputs, 13: model.value_info}[number].append(info)
    return model
