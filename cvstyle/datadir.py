"""Where cvstyle keeps its per-user data: the model store and the registered manifests.

``<home>`` is ``$CVSTYLE_HOME`` or the platform's per-user data directory
(``~/.local/share/cvstyle`` on Linux); downloaded models live in ``<home>/models`` and
manifests added with ``cvstyle models add`` in ``<home>/manifests``.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_HOME = "CVSTYLE_HOME"


def home() -> Path:
    """The cvstyle data directory: ``$CVSTYLE_HOME`` or the platform's per-user data dir."""
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("cvstyle", appauthor=False))


def models_dir() -> Path:
    return home() / "models"


def manifests_dir() -> Path:
    return home() / "manifests"
