"""The benchmark's sections, one module each, in the document's order.

A section module has ``TITLE`` (its heading, also shown by ``--list``) and
``run(context: harness.Context) -> str`` (its markdown body); one that measures in a
subprocess also has ``child(arguments: list[str]) -> None``, which the driver calls
for ``bench.py --child NAME ARGUMENTS``. Adding a section is a new module here and its
name in ``SECTIONS``: its number in the document is its place in that list.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SECTIONS = (
    "forward",
    "apply",
    "batch",
    "large",
    "live",
    "engines",
    "settings",
    "precision",
)


def load(name: str) -> ModuleType:
    """The section module called ``name`` (imported on first use: sections may need
    optional packages)."""
    return importlib.import_module(f"{__name__}.{name}")


def number(name: str) -> int:
    """The section's number in the document (1-based)."""
    return SECTIONS.index(name) + 1
