"""What a `.t7` file is: check it, describe it, and load it into OpenCV.

Every file goes through the project's own Torch7 reader before OpenCV's importer sees
it, because the importer can crash the interpreter on malformed input.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
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
OPENCV5_MESSAGE = (
    "this OpenCV ({version}) has no Torch7 importer (OpenCV 5 removed "
    "cv2.dnn.readNetFromTorch): install OpenCV 4 with  pip install 'opencv-python<5'"
)


@dataclass
class ModelInfo:
    path: Path
    family: str  # eccv16, instance_norm or custom
    modules: list[str]  # class names in execution order, containers included
    parameters: int
    arch: str | None
    size_bytes: int

    def summary(self) -> str:
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
        modules: list[TorchObject] = []
        _walk(_root_module(checkpoint), modules)
    except torch7.Torch7Error as error:
        raise ModelError(f"{path}: {error}") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
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
    return ModelInfo(path, family, names, int(parameters), arch, path.stat().st_size)


def describe(path: str | os.PathLike) -> str:
    """A human-readable architecture summary of a `.t7` model."""
    return inspect_model(path).summary()


def load_network(path: str | os.PathLike) -> cv2.dnn.Net:
    """Check ``path`` with the Torch7 reader, then load it with OpenCV's importer."""
    if not hasattr(cv2.dnn, "readNetFromTorch"):
        raise ModelError(OPENCV5_MESSAGE.format(version=cv2.__version__))
    inspect_model(path)
    try:
        # evaluate=True: batch normalisation uses the stored running statistics.
        return cv2.dnn.readNetFromTorch(os.fspath(path), True, True)
    except cv2.error as error:
        detail = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise ModelError(f"{path}: OpenCV cannot load this model ({detail})") from None
