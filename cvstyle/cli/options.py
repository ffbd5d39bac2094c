"""Options and helpers shared by several commands, defined once."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from tqdm import tqdm

from .. import effects, presets
from ..engines import DEVICES, ENGINES, PRECISIONS
from ..errors import CvstyleError, unknown_choice
from ..stylizer import DEFAULT_MODEL, check_options, parse_model_spec


class OptionError(click.UsageError):
    """A command-line value that cannot work: one ``cvstyle: error:`` line, exit 2 (the
    code of every option error), without click's usage block."""


class _OneLineChoice(click.Choice):
    """A choice whose wrong value is one line naming the choices."""

    def __init__(self, choices, what: str):
        super().__init__(choices)
        self.what = what

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise OptionError(str(unknown_choice(self.what, value, self.choices)), ctx) from None


def _check_median_filter(ctx: click.Context, param: click.Parameter, value: int) -> int:
    try:
        check_options(median_filter=value)
    except CvstyleError as error:
        raise OptionError(f"--median-filter: {error}", ctx) from None
    return value


def _check_model_specs(ctx: click.Context, param: click.Parameter, specs: tuple[str, ...]) -> tuple[str, ...]:
    """Mixes are checked before any model loads: a bad weight is an option error."""
    for spec in specs:
        try:
            effects.normalise_weights([weight for _, weight in parse_model_spec(spec)])
        except CvstyleError as error:
            raise OptionError(f"--model {spec}: {error}", ctx) from None
    return specs


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

device_option = click.option(
    "--device", type=_OneLineChoice(DEVICES, "device"), default="auto", show_default=True,
    help="Where the network runs; auto takes CUDA where the engine has it (the pip OpenCV never does).",
)

manifest_option = click.option(
    "--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
    help="An extra model catalogue for this run (same format as models.txt); it adds to and "
    "overrides the bundled one and those added with `cvstyle models add`.",
)

median_filter_option = click.option(
    "--median-filter", type=int, default=0, callback=_check_median_filter,
    help="Median filter of this odd size on the result (the reference runner uses 3).",
)


def model_option(help: str):
    """``-m/--model``, repeatable, default the built-in sketch; mixes checked up front."""
    return click.option(
        "-m", "--model", "models", multiple=True, default=[DEFAULT_MODEL], show_default=True,
        callback=_check_model_specs, help=help,
    )


input_format_option = click.option(
    "--input-format", type=_OneLineChoice(list(presets.PRESETS), "input format"), default=None,
    help="How a model file given by path (an .onnx) wants its pixels: vgg (the default, what "
    "the .t7 models take: BGR 0-255 minus the ImageNet mean), rgb255 (RGB 0-255, no mean: "
    "the PyTorch example trainer's models) or rgb01 (RGB 0-1). Catalogue models use their "
    "line's input= setting.",
)


def echo_engines(stylizers) -> None:
    """One stderr line per model: which engine, device and precision run it (and how
    many forwards at once, where more than one)."""
    for stylizer in stylizers:
        streams = f", {stylizer.streams} streams" if stylizer.streams > 1 else ""
        click.echo(f"{stylizer.name}: {stylizer.engine} on {stylizer.device}, {stylizer.precision}{streams}", err=True)


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


def echo_note(message: str) -> None:
    """A ``cvstyle:`` line on stderr, written between progress bars rather than through them."""
    tqdm.write(f"cvstyle: {message}", file=sys.stderr)
