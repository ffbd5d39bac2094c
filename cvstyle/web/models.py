"""The styles a server offers: what clients may name, and the Stylizer behind each name.

Clients only ever name a model from the server's list (``GET /api/models``); the file
behind each name is decided here, and never shown.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from .. import effects, presets, store
from ..catalogue import load_catalogue
from ..errors import CvstyleError, ModelError
from ..modelinfo import model_family
from ..stylizer import Stylizer, split_model_spec

log = logging.getLogger("cvstyle.web")

# A server path in a library's message ("/srv/m/x.t7", "C:\\m\\x.t7", "~/m/x"): two
# separators at least, not inside a word, a URL or a model name.
SERVER_PATH = re.compile(r"""(?<![\w.:/\\~-])(?:~|[A-Za-z]:)?[/\\][^\s'"`]*[/\\][^\s'"`]*""")
# A model name as the catalogue spells it (family/name) or a bare built-in name. Parts
# start with a letter or digit, so "..", "/etc" and "~" can never match.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
# A model spec as clients may send it: names, each with an optional weight, joined by +.
_PART = rf"\s*{NAME.pattern}\s*(:\s*[-+]?[0-9.]+(e[-+]?[0-9]+)?\s*)?"
SPEC = re.compile(rf"{_PART}(\+{_PART})*", re.IGNORECASE)
MAX_MIXES = 32  # mixes kept loaded; each holds references to the cached networks only


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


@dataclass(frozen=True)
class Choice:
    """What a client asked for: one offered model or a weighted mix of them."""

    parts: tuple[tuple[WebModel, float], ...]

    @property
    def name(self) -> str:
        """``instance_norm/candy``, or ``sketch:0.5+instance_norm/candy:0.5`` for a mix."""
        if len(self.parts) == 1 and self.parts[0][1] == 1.0:
            return self.parts[0][0].name
        return "+".join(f"{model.name}:{weight:g}" for model, weight in self.parts)

    @property
    def short_name(self) -> str:
        """``candy``, ``sketch+candy``: the style as ``cvstyle apply`` names its outputs."""
        return "+".join(model.name.rpartition("/")[2] for model, _ in self.parts)


class ModelRegistry:
    """The offered models by name; each Stylizer is built once, on first use, and kept."""

    def __init__(
        self, models: Iterable[WebModel], device: str, manifest: str | os.PathLike | None,
        engine: str = "auto", precision: str = "exact",
    ):
        self.models = {model.name: model for model in models}
        self.device = device
        self.engine = engine
        self.precision = precision
        self.manifest = manifest
        self._stylizers: OrderedDict[str, Stylizer] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, spec: str) -> Choice:
        """The model or mix a client named, as the CLI reads a model spec (short names,
        ``name:weight+name:weight``) but never as a path; HTTP errors otherwise."""
        if not SPEC.fullmatch(spec):
            raise HTTPException(
                422,
                "model must be a style name from GET /api/models, or a mix such as "
                f"sketch:0.5+candy:0.5, not {shown(spec)}",
            )
        try:
            parts = split_model_spec(spec)
            effects.normalise_weights([weight for _, weight in parts])  # the CLI's checks
        except CvstyleError as error:
            raise HTTPException(422, str(error)) from None
        return Choice(tuple((self.lookup(name), weight) for name, weight in parts))

    def lookup(self, name: str) -> WebModel:
        """The offered model a client named, by its name or the catalogue's short name."""
        if not NAME.fullmatch(name):
            raise HTTPException(
                422, f"model must be a style name from GET /api/models, not {shown(name)}"
            )
        if name in self.models:
            return self.models[name]
        try:
            entry = load_catalogue(self.manifest).lookup(name)  # what the CLI accepts
        except ModelError as error:
            raise HTTPException(404, str(error).replace("`cvstyle models`", "GET /api/models")) from None
        if entry.name not in self.models:
            raise HTTPException(404, f"unknown model {shown(name)} (GET /api/models lists the styles)")
        return self.models[entry.name]

    def public_message(self, choice: Choice, error: Exception) -> str:
        """``error``'s message as clients may read it: the model's name for its file, and
        only the last part of any other server path."""
        message = str(error)
        for model, _ in choice.parts:
            if model.source != model.name:  # a file offered under a name
                message = message.replace(model.source, model.name)
        return SERVER_PATH.sub(lambda found: re.split(r"[/\\]", found.group())[-1], message)

    def available(self, model: WebModel) -> bool:
        try:
            store.resolve_model(model.source, self.manifest)
        except ModelError:
            return False
        return True

    def stylizer(self, choice: Choice) -> Stylizer:
        # Runs on a worker thread; the lock makes concurrent first requests load once.
        with self._lock:
            if choice.name not in self._stylizers:
                files = [model for model, _ in choice.parts if model.source != model.name]
                formats = {model.input_format for model in files}
                if len(formats) > 1:
                    raise CvstyleError("cannot mix model files that take different input formats")
                stylizer = Stylizer(
                    [(model.source, weight) for model, weight in choice.parts], self.device,
                    self.manifest, self.engine, formats.pop() if formats else None, self.precision,
                )
                log.info(
                    "model %s loaded: %s on %s, %s", choice.name, stylizer.engine, stylizer.device,
                    stylizer.precision,
                )
                self._stylizers[choice.name] = stylizer
                if len(self._stylizers) > MAX_MIXES + len(self.models):
                    self._stylizers.popitem(last=False)
            self._stylizers.move_to_end(choice.name)
            return self._stylizers[choice.name]


def shown(text: str, limit: int = 60) -> str:
    """A client's text, quoted and cut short, for an error message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
