"""The styles a server offers: what clients may name, and the Stylizer behind each name.

Clients only ever name a model from the server's list (``GET /api/models``); the file
behind each name is decided here, and never shown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from .. import presets, store
from ..catalogue import load_catalogue
from ..errors import CvstyleError, ModelError
from ..modelinfo import model_family
from ..stylizer import Stylizer

log = logging.getLogger("cvstyle.web")

# A model name as the catalogue spells it (family/name) or a bare built-in name. Parts
# start with a letter or digit, so "..", "/etc" and "~" can never match.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


@dataclass(frozen=True)
class WebModel:
    """One style the server offers: the name clients send, and what it stands for here."""

    name: str
    title: str
    family: str
    source: str  # catalogue name or server-side file path, given to Stylizer; never shown
    input_format: str | None = None  # for a file: its pre-processing preset (None: vgg)


def default_models(manifest: str | os.PathLike | None = None) -> list[WebModel]:
    """The built-in sketch, then every catalogue model (downloaded or not)."""
    models = [WebModel("sketch", "Pencil sketch (built-in)", "builtin", "sketch")]
    models += [
        WebModel(entry.name, entry.title or entry.short_name, entry.family, entry.name)
        for entry in load_catalogue(manifest)
    ]
    return models


def file_model(
    path: str | os.PathLike, name: str | None = None, title: str | None = None,
    input_format: str | None = None,
) -> WebModel:
    """Offer a server-side `.t7` or `.onnx` file, by default as ``local/<stem>``;
    ``input_format`` is the preset it takes (see :mod:`cvstyle.presets`; default vgg)."""
    path = Path(path).resolve()
    name = name or f"local/{path.stem}"
    if not NAME.fullmatch(name):
        raise CvstyleError(f"{name!r} is not a usable model name (letters, digits, _ . - and one /)")
    if input_format is not None:
        presets.preset(input_format)  # refused now, not on the first request
    return WebModel(
        name, title or path.stem.replace("_", " "), model_family(path), str(path), input_format
    )


class ModelRegistry:
    """The offered models by name; each Stylizer is built once, on first use, and kept."""

    def __init__(
        self, models: Iterable[WebModel], device: str, manifest: str | os.PathLike | None,
        engine: str = "auto",
    ):
        self.models = {model.name: model for model in models}
        self.device = device
        self.engine = engine
        self.manifest = manifest
        self._stylizers: dict[str, Stylizer] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str) -> WebModel:
        """The model a client named; HTTP errors for paths and unknown names."""
        if not NAME.fullmatch(name):
            raise HTTPException(
                422, f"model must be a style name from GET /api/models, not {shown(name)}"
            )
        if name not in self.models:
            raise HTTPException(404, f"unknown model {shown(name)} (GET /api/models lists the styles)")
        return self.models[name]

    def available(self, model: WebModel) -> bool:
        try:
            store.resolve_model(model.source, self.manifest)
        except ModelError:
            return False
        return True

    def stylizer(self, model: WebModel) -> Stylizer:
        # Runs on a worker thread; the lock makes concurrent first requests load once.
        with self._lock:
            if model.name not in self._stylizers:
                stylizer = Stylizer(
                    model.source, self.device, self.manifest, self.engine, model.input_format
                )
                log.info("model %s loaded: %s on %s", model.name, stylizer.engine, stylizer.device)
                self._stylizers[model.name] = stylizer
            return self._stylizers[model.name]


def shown(text: str, limit: int = 60) -> str:
    """A client's text, quoted and cut short, for an error message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
