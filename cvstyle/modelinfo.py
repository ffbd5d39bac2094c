"""What a model file is: check it (:mod:`cvstyle.validate`) and describe it.

Every `.t7` goes through the project's own Torch7 reader before OpenCV's importer sees
it, because the importer can crash the interpreter on malformed input. An `.onnx` file
is read with a small protobuf reader of its own (:func:`inspect_onnx`), so checking and
describing one needs no ``onnx`` package.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import torch7
from .errors import ModelError, quote
from .onnx_reader import read_model
from .torch7 import TorchObject
from .validate import MAX_MODEL_BYTES, SUPPORTED_MODULES, validate_graph, validate_tree


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
    """Check a loaded `.t7` checkpoint (read from ``path``) with
    :func:`cvstyle.validate.validate_tree`; return what it is and its network. Raises
    :class:`ModelError` naming the file if it is unusable."""
    try:
        modules = [module for _, module in validate_tree(checkpoint)]
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None
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
    return ModelInfo(path, family, names, int(parameters), arch, path.stat().st_size), modules[0]


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
    """Read and check an ONNX model (see :func:`cvstyle.validate.validate_graph`) and
    outline it; :class:`ModelError` naming the file if it is unusable."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MODEL_BYTES + 1)
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: larger than {MAX_MODEL_BYTES >> 20} MiB")
    try:
        model = validate_graph(read_model(data))
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None
    initializers = {tensor.name for tensor in model.initializers}
    parameters = 0
    for tensor in model.initializers:
        parameters += tensor.stored
    return OnnxInfo(
        path, len(data), model.ir_version, model.producer, dict(model.opsets),
        # Old exporters list the weights among the inputs too.
        [info.describe() for info in model.inputs if info.name not in initializers],
        [info.describe() for info in model.outputs],
        [quote(node.op_type, 40) for node in model.nodes], parameters,
    )
