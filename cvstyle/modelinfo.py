"""What a model file is: check it, describe it, and load a `.t7` into OpenCV.

Every `.t7` goes through the project's own Torch7 reader before OpenCV's importer sees
it, because the importer can crash the interpreter on malformed input. An `.onnx` file
is read with a small protobuf reader of its own (:func:`inspect_onnx`), so checking and
describing one needs no ``onnx`` package.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import torch7
from .errors import ModelError
from .torch7 import TorchObject

# Module types OpenCV 4's Torch importer turns into layers (those the checkpoints use).
SUPPORTED_MODULES = frozenset(
    "nn." + name
    for name in (
        "Sequential ConcatTable CAddTable Identity ShaveImage SpatialReflectionPadding "
        "SpatialZeroPadding SpatialConvolution SpatialConvolutionMM SpatialFullConvolution "
        "SpatialBatchNormalization InstanceNormalization ReLU Tanh MulConstant "
        "TotalVariation"
    ).split()
)
CONTAINERS = frozenset({"nn.Sequential", "nn.ConcatTable"})


@dataclass
class ModelInfo:
    path: Path
    family: str  # eccv16, instance_norm or custom
    modules: list[str]  # class names in execution order, containers included
    parameters: int
    arch: str | None
    size_bytes: int

    def summary(self, input_format: str | None = None) -> str:
        counts = Counter(name.removeprefix("nn.") for name in self.modules)
        layers = ", ".join(f"{count} x {name}" for name, count in counts.most_common())
        lines = [
            f"file:          {self.path}",
            f"size:          {self.size_bytes:,} bytes",
            f"family:        {self.family}",
            f"parameters:    {self.parameters:,}",
            f"modules:       {len(self.modules)} ({layers})",
            "preprocessing: BGR 0-255, subtract mean B 103.939 G 116.779 R 123.680 "
            "(no channel swap); the mean is added back to the output",
        ]
        if input_format and input_format != "vgg":  # declared otherwise on its catalogue line
            from . import presets

            lines[-1] = f"preprocessing: {presets.describe(input_format)}"
        if self.arch:
            lines.insert(3, f"architecture:  {self.arch}")
        return "\n".join(lines)


def _root_module(checkpoint: object) -> TorchObject:
    if isinstance(checkpoint, TorchObject):
        return checkpoint
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), TorchObject):
        return checkpoint["model"]
    raise torch7.Torch7Error("no nn module at the root of the file (expected {model = ...})")


def _walk(module: TorchObject, found: list[TorchObject]) -> None:
    found.append(module)
    for child in module.children:
        if not isinstance(child, TorchObject):
            raise torch7.Torch7Error(f"{module.class_name} holds a {type(child).__name__}")
        _walk(child, found)


def inspect_model(path: str | os.PathLike) -> ModelInfo:
    """Read and check a `.t7` model; raise :class:`ModelError` naming the file if it is unusable."""
    path = Path(path)
    try:
        checkpoint = torch7.load(path)
    except torch7.Torch7Error as error:
        raise ModelError(f"{path}: {error}") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
    return inspect_checkpoint(checkpoint, path)[0]


def inspect_checkpoint(checkpoint: object, path: Path) -> tuple[ModelInfo, TorchObject]:
    """Check a loaded `.t7` checkpoint (read from ``path``); return what it is and its
    network. Raises :class:`ModelError` naming the file if it is unusable."""
    try:
        root = _root_module(checkpoint)
        modules: list[TorchObject] = []
        _walk(root, modules)
    except torch7.Torch7Error as error:
        raise ModelError(f"{path}: {error}") from None
    unsupported = sorted({m.class_name for m in modules} - SUPPORTED_MODULES)
    if unsupported:
        raise ModelError(f"{path}: module types OpenCV cannot run: {', '.join(unsupported)}")
    names = [m.class_name for m in modules]
    family = (
        "instance_norm" if "nn.InstanceNormalization" in names
        else "eccv16" if "nn.SpatialBatchNormalization" in names
        else "custom"
    )
    parameters = sum(
        m.fields[key].size
        for m in modules
        for key in ("weight", "bias")
        if isinstance(m.fields.get(key), np.ndarray)
    )
    opt = checkpoint.get("opt") if isinstance(checkpoint, dict) else None
    arch = opt.get("arch") if isinstance(opt, dict) and isinstance(opt.get("arch"), str) else None
    return ModelInfo(path, family, names, int(parameters), arch, path.stat().st_size), root


def describe(path: str | os.PathLike, input_format: str | None = None) -> str:
    """A human-readable architecture summary of a `.t7` or `.onnx` model; for an ONNX
    one, ``input_format`` is the preset it is declared to take (the file does not say)."""
    if is_onnx(path):
        return inspect_onnx(path).summary(input_format)
    return inspect_model(path).summary(input_format)


def model_family(path: str | os.PathLike) -> str:
    """``eccv16``, ``instance_norm`` or ``custom`` for a `.t7`; ``onnx`` for an ONNX file.
    Raises :class:`ModelError` for a file that is neither."""
    if is_onnx(path):
        inspect_onnx(path)
        return "onnx"
    return inspect_model(path).family


# ---------------------------------------------------------------- ONNX


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


# TensorProto.DataType numbers, for the element types a style network's inputs may have.
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 16: "bfloat16"}


class _ProtoError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _ProtoError("a varint runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of one protobuf message: an int for varints
    (and fixed-width fields), the bytes for length-delimited ones."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _ProtoError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise _ProtoError(f"wire type {wire}")
        if pos > len(data):
            raise _ProtoError("a field runs past the end")
        yield number, value


def _text(value: int | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ints(value: int | bytes) -> list[int]:
    """A repeated int64 field's entries, packed or not."""
    if isinstance(value, int):
        return [value]
    numbers, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        numbers.append(number - (1 << 64) if number >= 1 << 63 else number)
    return numbers


def _value_info(data: bytes) -> str:
    """``name type [dims]`` of a ValueInfoProto; symbolic dims by name, unknown ones as ?."""
    name, kind, dims = "", "?", []
    for number, value in _fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2 and isinstance(value, bytes):  # TypeProto
            for tn, tv in _fields(value):
                if tn == 1 and isinstance(tv, bytes):  # tensor_type
                    for fn, fv in _fields(tv):
                        if fn == 1:
                            kind = _ONNX_TYPES.get(fv, f"type {fv}")
                        elif fn == 2 and isinstance(fv, bytes):  # shape
                            for dn, dv in _fields(fv):
                                if dn == 1 and isinstance(dv, bytes):
                                    dim = dict(_fields(dv))
                                    dims.append(str(dim[1]) if 1 in dim else _text(dim[2]) if 2 in dim else "?")
    return f"{name} {kind} [{', '.join(dims)}]"


@dataclass
class OnnxInfo:
    path: Path
    size_bytes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: list[str]  # "name type [dims]"
    outputs: list[str]
    ops: list[str] = field(default_factory=list)  # node types in graph order
    parameters: int = 0  # elements of the initializers

    def summary(self, input_format: str | None = None) -> str:
        from . import presets  # presets imports the runner, which this module need not

        counts = Counter(self.ops)
        opsets = ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in self.opsets.items())
        lines = [
            f"file:          {self.path}",
            f"size:          {self.size_bytes:,} bytes",
            f"format:        ONNX (IR version {self.ir_version}, opset {opsets or '?'}"
            + (f", made by {self.producer})" if self.producer else ")"),
            f"inputs:        {'; '.join(self.inputs) or '-'}",
            f"outputs:       {'; '.join(self.outputs) or '-'}",
            f"parameters:    {self.parameters:,}",
            f"nodes:         {len(self.ops)} ("
            + ", ".join(f"{count} x {name}" for name, count in counts.most_common()) + ")",
        ]
        if input_format:
            lines.append(f"preprocessing: {presets.describe(input_format)}")
        else:
            lines.append(
                "preprocessing: not stored in the file: declare it with input= on its catalogue "
                f"line or --input-format ({', '.join(presets.PRESETS)}; default {presets.DEFAULT})"
            )
        return "\n".join(lines)


def inspect_onnx(path: str | os.PathLike) -> OnnxInfo:
    """Read an ONNX model's header and graph outline; :class:`ModelError` naming the file
    if it is not an ONNX model (not a protobuf ModelProto with a graph)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
    info = OnnxInfo(path, len(data), 0, "", {}, [], [])
    graph = None
    try:
        for number, value in _fields(data):
            if number == 1 and isinstance(value, int):
                info.ir_version = value
            elif number == 2 and isinstance(value, bytes):
                info.producer = _text(value)
            elif number == 7 and isinstance(value, bytes):
                graph = value
            elif number == 8 and isinstance(value, bytes):
                opset = dict(_fields(value))
                info.opsets[_text(opset.get(1, b""))] = int(opset.get(2, 0))
        if graph is None or not info.ir_version:
            raise _ProtoError("no graph" if info.ir_version else "no IR version")
        initializers = set()
        for number, value in _fields(graph):
            if number == 1 and isinstance(value, bytes):  # NodeProto
                info.ops += [_text(v) for n, v in _fields(value) if n == 4]
            elif number == 5 and isinstance(value, bytes):  # TensorProto
                dims, name = [], ""
                for n, v in _fields(value):
                    if n == 1:
                        dims += _ints(v)
                    elif n == 8:
                        name = _text(v)
                initializers.add(name)
                count = 1
                for dim in dims:
                    count *= dim
                info.parameters += count
            elif number in (11, 12) and isinstance(value, bytes):
                described = _value_info(value)
                if number == 12:
                    info.outputs.append(described)
                elif described.split(" ")[0] not in initializers:  # old exporters list weights too
                    info.inputs.append(described)
    except _ProtoError as error:
        raise ModelError(f"{path}: not an ONNX model ({error})") from None
    return info
