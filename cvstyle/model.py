"""A model file, loaded once: its path, its parsed network (a Torch7 tree or an ONNX
graph) and its pre-processing. Engines, tiling, conversion and ``models info`` take
this object, so a file is read, checked and converted once per process.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from . import onnx_export, surgery
from .errors import CvstyleError, ModelError
from .files import FileStamp, file_stamp, write_atomically
from .modelinfo import ModelInfo, OnnxInfo, inspect_checkpoint, inspect_onnx, is_onnx
from .runner import VGG, Preprocessing
from .torch7 import Torch7Error, TorchObject, load as load_torch7

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class ModelKey:
    """What identifies a loaded model in caches: the file's version and pre-processing."""

    path: Path
    stamp: FileStamp
    preprocessing: Preprocessing


class Model:
    """A checked model file. ``tree`` is the network of a `.t7` (None for `.onnx`);
    :attr:`graph` its ONNX graph, converted (and kept beside the file) on first use."""

    def __init__(self, key: ModelKey, tree: TorchObject | None, info: ModelInfo | OnnxInfo):
        self.key = key
        self.path = key.path
        self.name = str(key.path)  # what errors call it
        self.preprocessing = key.preprocessing
        self.tree = tree
        self.is_onnx = tree is None
        self.info = info

    @functools.cached_property
    def graph(self) -> "onnx.ModelProto":
        """The network as an ONNX graph taking any height and width."""
        if self.is_onnx:
            onnx = onnx_export.require_onnx()
            try:
                return surgery.any_size(onnx.load(os.fspath(self.path)))
            except Exception as error:  # protobuf's own decode errors
                raise ModelError(f"{self.path}: not a readable ONNX graph ({type(error).__name__})") from None
        cached = cached_onnx(self.path, self.tree)
        return onnx_export.require_onnx().load(os.fspath(cached))

    @functools.cached_property
    def normalisations(self) -> int:
        """How many instance normalisations (per-image statistics) the network has."""
        return len(surgery.normalisation_inputs(self.graph))


def open_model(path: str | os.PathLike, preprocessing: Preprocessing = VGG) -> Model:
    """The model at ``path``, read and checked once per file version (cached)."""
    resolved = Path(path).resolve()
    try:
        stamp = file_stamp(resolved)
    except OSError as error:
        raise ModelError(f"{path}: no such model file" if isinstance(error, FileNotFoundError)
                         else f"{path}: cannot read the model ({error.strerror or error})") from None
    return _open(ModelKey(resolved, stamp, preprocessing))


@functools.lru_cache(maxsize=16)
def _open(key: ModelKey) -> Model:
    if is_onnx(key.path):
        return Model(key, None, inspect_onnx(key.path))
    try:
        checkpoint = load_torch7(key.path)
    except Torch7Error as error:
        raise ModelError(f"{key.path}: {error}") from None
    except OSError as error:
        raise ModelError(f"{key.path}: cannot read the model ({error.strerror or error})") from None
    info, tree = inspect_checkpoint(checkpoint, key.path)
    return Model(key, tree, info)


def clear_model_cache() -> None:
    _open.cache_clear()


def _cache_folders(model: Path) -> list[Path]:
    """Where converted graphs are kept: next to the model, else the user's cache folder."""
    return [model.parent, Path(platformdirs.user_cache_dir("cvstyle")) / "onnx"]


def cached_onnx(t7_path: str | os.PathLike, tree: TorchObject | None = None) -> Path:
    """The ONNX conversion of the `.t7` model at ``t7_path`` (whose parsed network
    ``tree`` may be given), converting it on first use.

    It is saved as ``<model stem>.<sha256[:16]>.onnx`` next to the model (or in the user
    cache folder if that one is read-only): keyed by the file's digest, an edited or
    replaced model is never run from a stale conversion.
    """
    path = Path(t7_path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as error:
        raise ModelError(f"{path}: cannot read the model ({error.strerror or error})") from None
    name = f"{path.stem}.{digest}.onnx"
    for folder in _cache_folders(path):
        if (folder / name).is_file():
            return folder / name
    graph = onnx_export.to_onnx(tree, name=path.stem) if tree is not None else onnx_export.model_proto(path)
    data = graph.SerializeToString()
    problems = []
    for folder in _cache_folders(path):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / name, data)
            return folder / name
        except OSError as error:
            problems.append(f"{folder}: {error.strerror or error}")
    raise CvstyleError(f"cannot save the ONNX conversion of {path} ({'; '.join(problems)})")
