"""``cvstyle live``: stylize a webcam, a stream or a video file in real time."""

from __future__ import annotations

import os

import click
from tqdm import tqdm

from .. import live
from ..errors import CvstyleError
from ..stylizer import DEFAULT_MODEL, Stylizer
from . import cli
from .options import (
    device_option, echo_engines, engine_option, input_format_option, log_to_stderr, manifest_option,
    precision_option,
)

_KEYS = "\n".join(f"  {keys:8s} {what}" for keys, what in live.KEY_HELP)


class _FrameBar:
    """A progress bar of frames on stderr, drawn once the source is open (so that an
    error opening it stays the only line)."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def update(self, done: int, total: int | None) -> None:
        if self._bar is None:
            self._bar = tqdm(total=total, unit="frame", leave=False)
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> _FrameBar:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()


@cli.command("live", epilog=f"\b\nKeys in the window:\n{_KEYS}")
@click.option(
    "-m", "--model", "models", multiple=True, default=[DEFAULT_MODEL], show_default=True,
    help="Model(s), comma-separated or repeated, shown together in a grid: catalogue "
    "names, .t7 or .onnx paths, or weighted mixes such as candy:0.7+udnie:0.3.",
)
@click.option(
    "-s", "--source", default="0", show_default=True,
    help="Camera index, video file, or stream URL (rtsp://, http://...).",
)
@click.option(
    "--size", type=click.IntRange(min=1), default=None,
    help="Processing size (longer side in pixels); smaller is faster. Default: the source's.",
)
@device_option
@engine_option
@precision_option
@input_format_option
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None,
    help="Record the stylized stream (no overlay) to this video file: "
    f"{', '.join(live.CODECS)}.",
)
@click.option(
    "--no-window", is_flag=True,
    help="Run headless with a progress bar (needs --output); a video file is processed "
    "frame by frame; Ctrl-C stops and keeps the frames so far.",
)
@click.option("--preserve-colors", is_flag=True, help="Start with the photo's colours kept (key c).")
@click.option("--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True, help="Start strength (keys + and -).")
@click.option(
    "--stabilize", is_flag=True,
    help="Less flicker: blend each painting with the previous one along the motion "
    "(optical flow), repainting where it is unreliable and at scene cuts.",
)
@manifest_option
def live_command(
    models, source, size, device, engine, precision, input_format, output, no_window, preserve_colors,
    strength, stabilize, manifest,
):
    """Stylize a camera, stream or video file live, in a window and/or to a file.

    Several models are shown side by side in a grid, with the frame rate and the
    latency (capture to display) in the corner. For cameras and streams the newest
    frame is always the one processed: a slow model drops frames rather than lag.
    """
    # FFmpeg's own log would add lines such as "moov atom not found" before our
    # one-line error; it is read when FFmpeg is first used in this process.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if no_window and output is None:
        raise CvstyleError("--no-window needs --output FILE: nothing would be shown or saved")
    names = [name.strip() for value in models for name in value.split(",") if name.strip()]
    if not names:
        raise CvstyleError("no model given")
    if output is not None:
        live.check_video_path(output)  # before models load or a camera opens
    log_to_stderr(verbose=False)  # such as fast running exact
    stylizers = [
        Stylizer(
            name, device=device, manifest=manifest, engine=engine, input_format=input_format,
            precision=precision,
        )
        for name in names
    ]
    echo_engines(stylizers)  # once, before the loop: where each model runs
    with _FrameBar() as bar:
        report = live.stylize_stream(
            source, stylizers, output=output, window=not no_window, size=size,
            preserve_colors=preserve_colors, strength=strength, stabilize=stabilize,
            progress=bar.update if no_window else None, notify=tqdm.write,
        )
    summary = (
        f"{report.frames} frames, {report.fps:.1f} FPS, "
        f"mean latency {report.mean_latency * 1000:.0f} ms"
    )
    if report.dropped:
        summary += f", {report.dropped} camera frames dropped"
    if output is not None:
        summary += f"; wrote {report.recorded}" if report.recorded else "; nothing recorded"
    if report.interrupted:
        click.echo(f"cvstyle: stopped by Ctrl-C: {summary}", err=True)
        # Ctrl-C is how a camera session ends; for a file it cut the job short.
        return 0 if report.live else 130
    click.echo(summary, err=True)
    return 0
