"""``cvstyle convert``: write a Torch7 style model as an ONNX graph."""

from __future__ import annotations

from pathlib import Path

import click

from ..onnx_export import OPSET, convert
from . import cli
from .options import manifest_option


@cli.command("convert")
@click.argument("model")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None,
    help="The ONNX file to write (default: the model's name with .onnx, in the current directory).",
)
@manifest_option
def convert_command(model: str, output: str | None, manifest: Path | None) -> None:
    """Convert MODEL (a .t7 file or a downloaded catalogue model) to ONNX.

    The graph runs on OpenCV 5, ONNX Runtime or any ONNX runtime. Like the .t7 it takes
    an NCHW float32 blob, height and width free: BGR 0-255 minus the ImageNet mean
    (B 103.939, G 116.779, R 123.680); add the mean back to its output.
    """
    from ..store import resolve_model  # the catalogue is read only when a model is named

    source = resolve_model(model, manifest)
    target = convert(source, output or Path(source.stem + ".onnx"))
    click.echo(f"wrote {target} (ONNX opset {OPSET}, from {source})")
