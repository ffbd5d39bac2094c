"""Options shared by several commands, defined once."""

from __future__ import annotations

import click

from .. import presets
from ..engines import ENGINES
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
    help="auto: ONNX Runtime where installed (faster on the CPU, CUDA where present), else OpenCV.",
)

input_format_option = click.option(
    "--input-format", type=_OneLineChoice(list(presets.PRESETS), "input format"), default=None,
    help="How a model file given by path (an .onnx) wants its pixels: vgg (the default, what "
    "the .t7 models take: BGR 0-255 minus the ImageNet mean), rgb255 (RGB 0-255, no mean: "
    "the PyTorch example trainer's models) or rgb01 (RGB 0-1). Catalogue models use their "
    "line's input= setting.",
)


def echo_engines(stylizers) -> None:
    """One stderr line per model: which engine and device run it."""
    for stylizer in stylizers:
        click.echo(f"{stylizer.name}: {stylizer.engine} on {stylizer.device}", err=True)
