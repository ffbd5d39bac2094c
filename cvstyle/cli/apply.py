"""``cvstyle apply``: stylize photos and folders of photos."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

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
    OptionError, device_option, echo_engines, echo_note, engine_option, input_format_option, log_to_stderr,
    manifest_option, median_filter_option, model_option, precision_option,
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
    f"output; its extension ({', '.join(sorted(WRITE_EXTENSIONS))}, or .mp4, .mov, .mkv for a video) picks the format.",
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
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True,
    help="JPEG/WebP quality; for videos, mapped to H.264's CRF (95 -> 18, 75 -> 25).",
)
@click.option(
    "--stabilize", is_flag=True,
    help="Videos: blend each painted frame with the previous one along the motion "
    "(optical flow), repainting where it is unreliable and at scene cuts: less flicker.",
)
@device_option
@engine_option
@precision_option
@input_format_option
@click.option("-v", "--verbose", is_flag=True, help="Say which engine, device and precision run each model (and why auto chose it).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help="Refuse inputs with more pixels than this (decompression-bomb guard).")
@manifest_option
@click.option("--fetch", is_flag=True, help="Download (and verify) catalogue models that are not there yet.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that exist already as they are: a re-run finishes an interrupted job.")
@click.option(
    "--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
    help="Run on a Ray cluster (pip install -e '.[ray]'): at ADDRESS, or auto ($RAY_ADDRESS, else a "
    "local Ray). Inputs may be URIs (s3://...); inputs, outputs and model files must be where every node sees them.",
)
@click.option("--actors-per-node", type=click.IntRange(min=1), default=None, help="With --ray: actors per node (default: one per GPU, else one).")
@click.option("--cpus-per-actor", type=click.FloatRange(min=0, min_open=True), default=None, help="With --ray: CPUs per actor (default: 1 with GPUs, else a whole node's).")
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0, help="With --ray: GPUs per actor.")
def apply_command(
    inputs, models, output, size, median_filter, preserve_colors, strength, tile, tile_size,
    statistics, exact_statistics, max_memory, quality, stabilize, device, engine, precision, input_format,
    verbose, max_pixels, manifest, fetch, skip_existing, ray_address, actors_per_node, cpus_per_actor,
    gpus_per_actor,
):
    """Stylize INPUTS (image and video files, directories or glob patterns).

    Writes <stem>_<model>.jpg per input and model (.png for inputs with transparency,
    .mp4 for videos, with their sound and timing).
    """
    if ray_address is None and (actors_per_node or cpus_per_actor or gpus_per_actor):
        raise OptionError("--actors-per-node, --cpus-per-actor and --gpus-per-actor go with --ray")
    if fetch:
        from ..download import FetchSettings, ensure_model  # requests is imported only when fetching

        for model in models:
            for name, _ in parse_model_spec(model):
                ensure_model(name, manifest, FetchSettings(notify=echo_note))
    options = dict(
        size=size, median_filter=median_filter, preserve_colors=preserve_colors, strength=strength,
        tile=tile, statistics="exact" if exact_statistics else statistics,
        tile_settings=tile_size,  # a TileSettings, made by the option's callback
        max_memory=max_memory,  # bytes, from the option's callback
    )
    if ray_address is not None:
        from .. import distributed  # Ray is imported only for --ray

        with contextlib.ExitStack() as bars:
            report = distributed.apply_on_ray(
                inputs, output,
                distributed.ModelSettings(models, device, engine, input_format, manifest, fetch, precision),
                distributed.ClusterSettings(ray_address, actors_per_node, cpus_per_actor, gpus_per_actor),
                options, quality, max_pixels, skip_existing, functools.partial(_progress, bars),
            )
        total = report.planned + report.listing_failures
        return _summarise(report.failures, report.written, total, len(report.skipped))
    sources, failures = batch.expand_inputs(inputs)
    log_to_stderr(verbose)
    streams = batch.streams_for(sources, len(models))
    stylizers = [
        Stylizer(
            model, device=device, manifest=manifest, engine=engine, input_format=input_format,
            precision=precision, streams=streams,
        )
        for model in models
    ]
    if verbose:
        echo_engines(stylizers)
    planned = batch.plan_outputs(sources, stylizers, output) if sources else []
    jobs = [job for job in planned if not (skip_existing and job.existing_output())]
    with contextlib.ExitStack() as bars:
        frames = bars.enter_context(_FrameBar())
        video = batch.VideoSettings(stabilize, frames.update)
        tiles = _TileBar()
        bars.callback(tiles.close)
        report = batch.run_jobs(
            jobs, {**options, "progress": tiles}, quality, max_pixels, _progress(bars, len(jobs)), video
        )
    return _summarise(failures + report.failures, report.written, len(jobs) + len(failures), len(planned) - len(jobs))


def _progress(bars: contextlib.ExitStack, total: int) -> Callable[[batch.Job, CvstyleError | None], None]:
    """A progress bar over ``total`` outputs, closed with ``bars``; the function returned
    moves it and says each output written."""
    # disable=None: a bar only on a terminal, never in a log.
    bar = bars.enter_context(tqdm(total=total, unit="image", disable=True if total < 2 else None, leave=False))

    def done(job: batch.Job, error: CvstyleError | None) -> None:
        bar.update(1)
        if error is None:
            tqdm.write(f"wrote {job.target}")

    return done


def _summarise(failures: list[batch.Failure], written: list, total: int, skipped: int) -> int:
    """The end-of-job lines on stderr; the exit code."""
    if skipped:
        click.echo(f"cvstyle: {skipped} outputs exist already, left as they are", err=True)
    if not failures:
        return 0
    if len(failures) == 1 and not written:
        raise failures[0].error
    click.echo(f"cvstyle: {len(failures)} of {total} jobs failed:", err=True)
    for failure in failures:
        click.echo(f"  {failure.error}", err=True)
    return max(failure.error.exit_code for failure in failures)


class _FrameBar:
    """One progress bar per video (frames, FPS, ETA), on a terminal only."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.job: batch.Job | None = None

    def update(self, job: batch.Job, done: int, total: int | None) -> None:
        if job is not self.job:
            self.close()
            self.job = job
            self.bar = tqdm(
                total=total, unit="frame", desc=job.source.name, leave=False,
                disable=None, dynamic_ncols=True,
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.job = None

    def __enter__(self) -> _FrameBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
