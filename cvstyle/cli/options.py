"""Options shared by several commands, defined once."""

from __future__ import annotations

import logging
import sys

import click

from .. import presets
from ..engines import ENGINES, PRECISIONS
from ..errors import CvstyleError


class _OneLineChoice(click.Choice):
    """A choice whose wrong value is one ``cvstyle: error:`` line (exit 1), not click's
    usage block."""

    def __init__(self, choices, what: str):
        super().__init__(choices)
        self.what = what

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise CvstyleError(
                f"unknown {self.what} {value!r}: choose one of {', '.join(self.choices)}"
            ) from None


engine_option = click.option(
    "--engine", type=_OneLineChoice(ENGINES, "engine"), default="auto", show_default=True,
    help="auto: ONNX Runtime with CUDA where present; on the CPU the installed engine that "
    "measured fastest here (timed once, see README Engines).",
)

precision_option = click.option(
    "--precision", type=_OneLineChoice(PRECISIONS, "precision"), default="exact", show_default=True,
    help="exact: float32 on every engine. fast: bfloat16 (OpenVINO, CPUs with AVX512-BF16 or "
    "AMX), about 1 grey level off on average (README Engines); says so where nothing is faster.",
)

input_format_option = click.option(
    "--input-format", type=_OneLineChoice(list(presets.PRESETS), "input format"), default=None,
    help="How a model file given by path (an .onnx) wants its pixels: vgg (the default, what "
    "the .t7 models take: BGR 0-255 minus the ImageNet mean), rgb255 (RGB 0-255, no mean: "
    "the PyTorch example trainer's models) or rgb01 (RGB 0-1). Catalogue models use their "
    "line's input= setting.",
)


def echo_engines(stylizers) -> None:
    """One stderr line per model: which engine, device and precision run it."""
    for stylizer in stylizers:
        click.echo(f"{stylizer.name}: {stylizer.engine} on {stylizer.device}, {stylizer.precision}", err=True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (commands may run more than once per
    process, as in tests, with stderr replaced in between)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("cvstyle: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_stderr_handler = _StderrHandler()


def log_to_stderr(verbose: bool) -> None:
    """Library messages on stderr, one line each: warnings always (such as ``fast``
    running exact), with ``verbose`` also what ``auto`` decided and why."""
    logger = logging.getLogger("cvstyle")
    if _stderr_handler not in logger.handlers:
        logger.addHandler(_stderr_handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
