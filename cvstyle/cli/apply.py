"""``cvstyle apply``: stylize photos and folders of photos."""

from __future__ import annotations

import click
from tqdm import tqdm

from .. import batch
from ..errors import CvstyleError
from ..imageio import WRITE_EXTENSIONS
from ..memory import parse_size
from ..stylizer import Stylizer, parse_model_spec
from ..tiling import tile_settings
from . import cli
from .options import (
    OptionError, device_option, echo_engines, echo_note, engine_option, input_format_option, manifest_option,
    median_filter_option, model_option,
)


def _option_value(convert):
    """A click callback turning an option's value with ``convert``; its error is an
    option error (exit 2), not a failure of the run."""

    def callback(ctx: click.Context, param: click.Parameter, value):
        try:
            return convert(value)
        except CvstyleError as error:
            raise OptionError(f"{param.opts[0]}: {error}", ctx) from None

    return callback


class _TileBar:
    """A bar under the jobs' bar for the tiles of the photo being painted: a single large
    photo takes minutes. Shown on a terminal only, like every bar."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None or done <= self.bar.n:  # a new photo, or the next model of a mix
            self.close()
            self.bar = tqdm(total=total, desc="tiles", unit="tile", leave=False, disable=None)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@cli.command("apply")
@click.argument("inputs", nargs=-1, required=True)
@model_option(
    help="Catalogue name (candy, eccv16/starry_night), path to a .t7 or .onnx, or a weighted mix "
    "such as candy:0.7+udnie:0.3. Repeat for one output per model. The default 'sketch' "
    "is the built-in hand-made pencil-sketch network (untrained, needs no download).",
)
@click.option(
    "-o", "--output", type=click.Path(), default=None,
    help="Output directory (default: the current one), or a file name for a single "
    f"output; its extension ({', '.join(sorted(WRITE_EXTENSIONS))}) picks the format.",
)
@click.option(
    "--size", type=click.IntRange(min=1), default=None,
    help="Process at this longer side in pixels; the output has that size too. "
    "Default: the input's full resolution.",
)
@median_filter_option
@click.option("--preserve-colors", is_flag=True, help="Keep the photo's colours; take only the painting's light and texture.")
@click.option("--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True, help="0 = the photo, 1 = the full style.")
@click.option(
    "--tile", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
    help="Process in overlapping tiles: auto does so above about 2 megapixels, which keeps "
    "memory bounded and avoids OpenCV's crash on large inputs.",
)
@click.option(
    "--tile-size", type=click.IntRange(min=64), default=None, callback=_option_value(tile_settings), metavar="INTEGER",
    help="Largest tile side in pixels, a multiple of 4 (default 1024; 768 above 64 MP).",
)
@click.option(
    "--statistics", type=click.Choice(["exact", "estimate"]), default="exact", show_default=True,
    help="Tiled instance_norm models: exact whole-image normalisation statistics (the "
    "network's own result), or estimated on a 0.26 MP copy (see README, Large photos).",
)
@click.option("--exact-statistics", is_flag=True, hidden=True, help="The former spelling of --statistics exact.")
@click.option(
    "--max-memory", default=None, metavar="SIZE", callback=_option_value(lambda size: parse_size(size) if size else None),
    help="Memory a large photo may use, such as 1.5G or 800M (default: half the memory "
    "available); beyond it exact statistics keep activations in temporary files "
    "($CVSTYLE_TMP or the system's temporary folder).",
)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@device_option
@engine_option
@input_format_option
@click.option("-v", "--verbose", is_flag=True, help="Say which engine and device run each model.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Refuse inputs with more pixels than this (decompression-bomb guard).")
@manifest_option
@click.option("--fetch", is_flag=True, help="Download (and verify) catalogue models that are not there yet.")
def apply_command(
    inputs, models, output, size, median_filter, preserve_colors, strength, tile, tile_size,
    statistics, exact_statistics, max_memory, quality, device, engine, input_format, verbose, max_pixels, manifest, fetch,
):
    """Stylize INPUTS (image files, directories or glob patterns).

    Writes <stem>_<model>.jpg per input and model (.png for inputs with transparency).
    """
    if fetch:
        from ..download import FetchSettings, ensure_model  # requests is imported only when fetching

        for model in models:
            for name, _ in parse_model_spec(model):
                ensure_model(name, manifest, FetchSettings(notify=echo_note))
    sources, failures = batch.expand_inputs(inputs)
    stylizers = [
        Stylizer(model, device=device, manifest=manifest, engine=engine, input_format=input_format)
        for model in models
    ]
    if verbose:
        echo_engines(stylizers)
    jobs = batch.plan_outputs(sources, stylizers, output) if sources else []
    options = dict(
        size=size, median_filter=median_filter, preserve_colors=preserve_colors, strength=strength,
        tile=tile, statistics="exact" if exact_statistics else statistics,
        tile_settings=tile_size,  # a TileSettings, made by the option's callback
        max_memory=max_memory,  # bytes, from the option's callback
        progress=(tiles := _TileBar()),
    )
    # disable=None: a bar only on a terminal, never in a log.
    with tqdm(total=len(jobs), unit="image", disable=True if len(jobs) < 2 else None, leave=False) as bar:

        def done(job: batch.Job, error: CvstyleError | None) -> None:
            bar.update(1)
            if error is None:
                tqdm.write(f"wrote {job.target}")

        report = batch.run_jobs(jobs, options, quality, max_pixels, done)
    tiles.close()
    failures += report.failures
    if not failures:
        return 0
    if len(failures) == 1 and not report.written:
        raise failures[0].error
    total = len(jobs) + len(failures) - len(report.failures)
    click.echo(f"cvstyle: {len(failures)} of {total} jobs failed:", err=True)
    for failure in failures:
        click.echo(f"  {failure.error}", err=True)
    return max(failure.error.exit_code for failure in failures)
