"""A whole live session in one call: open the source and the sinks, run the loop, and
close everything whatever happens (what ``cvstyle live`` does)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import CvstyleError
from ..stylizer import Stylizer
from .keys import LiveState
from .loop import log, run
from .meter import Meter, RunReport
from .painter import Painter, StylizerLike
from .sinks import VideoRecorder, Window, check_video_path
from .sources import open_source


def stylize_stream(
    source: str | int | os.PathLike,
    models: Sequence[str | StylizerLike],
    *,
    output: str | os.PathLike | None = None,
    window: bool = True,
    size: int | None = None,
    preserve_colors: bool = False,
    strength: float = 1.0,
    stabilize: bool = False,
    max_frames: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    notify: Callable[[str], None] = log.info,
) -> RunReport:
    """Stylize a camera (``0``), a stream URL or a video file with ``models``
    (:class:`~cvstyle.Stylizer` objects, or model names loaded with the defaults).

    ``window``: show the styles in a window, with the keys of
    :data:`~cvstyle.live.keys.KEY_HELP`; ``output``: record the stylized frames (no
    overlay) to this video file, playable even if the run fails or is stopped.
    A window-less run without ``output`` only measures (see the returned report).
    ``stabilize``: less flicker, each painting blended with the previous one along the
    motion (:class:`Painter`).
    ``progress(done, total)`` is called once the source is open (``done`` 0) and after
    each frame; ``total`` is the file's frame count, None for cameras and streams.
    The report's ``recorded`` is the video written, None if no frame was.
    """
    if output is not None:
        check_video_path(output)  # before models load or a camera opens
    stylizers = [Stylizer(model) if isinstance(model, str) else model for model in models]
    painter = Painter(stylizers, size, stabilize)
    with contextlib.ExitStack() as stack:
        frames = stack.enter_context(open_source(source))
        recorder = None
        if output is not None:
            # A live source's recording is paced to play in real time (see VideoRecorder).
            recorder = stack.enter_context(VideoRecorder(output, frames.fps, paced=frames.live))
        shown = None
        if window:
            shown = Window(f"cvstyle live - {', '.join(painter.names)}")
            stack.callback(shown.close)
        state = LiveState(styles=len(stylizers), preserve_colors=preserve_colors, strength=strength)
        if progress is not None:
            progress(0, frames.frame_count)

        def on_frame(meter: Meter) -> None:
            if progress is not None:
                progress(meter.frames, frames.frame_count)

        try:
            report = run(frames, painter, state, shown, recorder, max_frames, on_frame, notify)
        except CvstyleError as error:
            if recorder is not None and recorder.frames:
                # Still one line: the failure, and where the recording so far is kept
                # (the ExitStack closes it on the way out).
                error.args = (f"{error}; the recording so far is in {recorder.path}",)
            raise
    recorded = recorder.path if recorder is not None and recorder.frames else None
    return replace(report, recorded=recorded)
