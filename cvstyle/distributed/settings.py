"""What a Ray job runs (models and their settings) and where (cluster, actor sizes)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engines import check_choice
from ..errors import CvstyleError
from ..runner import Preprocessing
from ..stylizer import ModelSpec, Stylizer, mix_display_name, open_named_model, parse_model_spec

INSTALL_COMMAND = "pip install 'cvstyle[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CvstyleError(f"--ray needs Ray Data, which is not installed: {INSTALL_COMMAND}") from None
    return ray


@dataclass(frozen=True)
class ModelSettings:
    """The models and how to run them, as ``apply`` takes them; each actor builds its own
    Stylizers from these (model files given by path must be where every node sees them)."""

    models: tuple[ModelSpec, ...] = ("sketch",)
    device: str = "auto"
    engine: str = "auto"
    input_format: str | Preprocessing | None = None
    manifest: str | None = None
    fetch: bool = False  # download missing catalogue models on each node
    precision: str = "exact"  # "fast" where a node's CPU and engine have a faster mode

    def absolute(self) -> ModelSettings:
        """The same settings with model files and the manifest as absolute paths (actors
        do not run in the driver's folder); each model as ``(name, weight)`` pairs."""
        models = tuple(
            tuple(
                (os.path.abspath(name) if Path(name).is_file() else name, weight)
                for name, weight in (
                    parse_model_spec(spec) if isinstance(spec, (str, os.PathLike)) else spec
                )
            )
            for spec in self.models
        )
        manifest = os.path.abspath(self.manifest) if self.manifest else None
        return replace(self, models=models, manifest=manifest)

    def names(self) -> list[str]:
        """Each model's name as its Stylizer would have it, without loading it (for
        settings made :meth:`absolute`)."""
        return [mix_display_name(spec) for spec in self.models]

    def _parts(self) -> list[str]:
        """The name of every model the settings mix."""
        return [name for spec in self.models for name, _ in (parse_model_spec(spec) if isinstance(spec, str) else spec)]

    def _fetch(self) -> None:
        if self.fetch:
            from ..download import ensure_model  # requests is imported only when fetching

            for name in self._parts():
                ensure_model(name, self.manifest)

    def check(self) -> None:
        """Fail here, once, where every actor would fail: a model that cannot be found
        or read, an unknown engine or precision, an engine named but not installed. No
        network is built: that takes seconds of the CPU that Ray's start and the actors'
        own loading need, and an engine that cannot compile a model fails in the actors."""
        self._fetch()
        check_choice(self.engine, self.precision, installed=True)
        for name in self._parts():
            open_named_model(name, self.manifest, self.input_format)

    def stylizers(self, device: str | None = None, streams: int = 1) -> list[Stylizer]:
        """One Stylizer per model, on ``device`` (default: the settings' own), with
        ``streams`` (:class:`~cvstyle.Stylizer`)."""
        self._fetch()
        return [
            Stylizer(
                spec, device=device or self.device, manifest=self.manifest, engine=self.engine,
                input_format=self.input_format, precision=self.precision, streams=streams,
            )
            for spec in self.models
        ]


@dataclass(frozen=True)
class ClusterSettings:
    """Where to run and how big each actor is."""

    address: str = "auto"  # auto: $RAY_ADDRESS, else a new local Ray
    actors_per_node: int | None = None  # default: as many as a node's GPUs, else one
    cpus_per_actor: float | None = None  # default: 1 with GPUs, else all of a node's CPUs
    gpus_per_actor: float = 0.0

