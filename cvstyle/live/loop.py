"""The live loop: read a frame, stylize it, show and record it, answer the keys."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .keys import Action, LiveState, handle_key
from .meter import Meter, RunReport
from .painter import Painter
from .sinks import VideoRecorder, Window, save_snapshot
from .sources import Frame, FrameSource
from .view import draw_overlay, render, status_line

HELP_SECONDS = 5.0  # how long the key help stays on screen

log = logging.getLogger("cvstyle.live")


def run(
    source: FrameSource,
    painter: Painter,
    state: LiveState | None = None,
    window: Window | None = None,
    recorder: VideoRecorder | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[Meter], None] | None = None,
    notify: Callable[[str], None] = log.info,
) -> RunReport:
    """Stylize ``source`` until it ends, ``q``/Esc, ``max_frames`` or Ctrl-C.

    Opening and closing the source, window and recorder is the caller's job (use them
    as context managers so a recording is finished whatever happens, or call
    :func:`~cvstyle.live.stylize_stream`, which does); errors of the source propagate.
    ``on_frame`` is called after each new frame (progress bars), ``notify`` with
    messages such as a snapshot's file name (default: the ``cvstyle.live`` logger).
    """
    state = state or LiveState(styles=len(painter.stylizers))
    painter.warm_up(source.frame_size)
    meter = Meter()
    help_until = time.monotonic() + HELP_SECONDS
    frame: Frame | None = None
    view, labels, rendered_look = None, [], None
    interrupted = False
    try:
        while max_frames is None or meter.frames < max_frames:
            fresh = frame is None or not state.paused
            if fresh:
                frame = source.read()
                if frame is None:
                    break
            if fresh or state.look() != rendered_look:
                view, labels = render(painter, frame.image, state)
                rendered_look = state.look()
            now = time.monotonic()
            if fresh:
                meter.update(frame, now)
                if on_frame is not None:
                    on_frame(meter)
            # A live recording follows the wall clock, so it holds a paused picture;
            # a file's recording has each of its frames once.
            if recorder is not None and (fresh or source.live):
                recorder.write(view, at=now)
            if window is None:
                continue
            window.show(draw_overlay(view, status_line(meter, state), labels, now < help_until))
            state, action = handle_key(state, window.poll_key(_wait_ms(source, state, meter)))
            if action is Action.QUIT:
                break
            if action is Action.SNAPSHOT:
                notify(f"saved {save_snapshot(view)}")
            elif action is Action.HELP:
                help_until = time.monotonic() + HELP_SECONDS
    except KeyboardInterrupt:
        interrupted = True
    return meter.report(interrupted, live=source.live)


def _wait_ms(source: FrameSource, state: LiveState, meter: Meter) -> int:
    """How long to wait for a key: a paused loop idles; a file plays no faster than
    its frame rate (a frame's processing time counts towards its interval); a live
    source goes straight on to the newest frame."""
    if state.paused:
        return 30
    if source.live:
        return 1
    return max(1, int((1.0 / source.fps - meter.latency) * 1000))
