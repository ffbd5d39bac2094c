"""Live stylization of a camera, a stream or a video file, in pieces usable from Python.

One module per job:

* :mod:`.sources`: :class:`VideoFileSource` (every frame, in order) and
  :class:`LatestFrameSource` (cameras and stream URLs: only the newest frame is kept, so
  a slow model drops frames instead of falling behind); :func:`open_source` picks one.
* :mod:`.painter`: :class:`Painter` runs one or more Stylizers at the processing size.
* :mod:`.view`: :func:`compose` tiles views in a grid, :func:`render` composes a frame's
  styles, :func:`draw_overlay` adds the FPS, latency, tile labels and key help shown in
  the window (never recorded).
* :mod:`.sinks`: :class:`Window` (``cv2.imshow``) and :class:`VideoRecorder`
  (``cv2.VideoWriter`` writing to a temporary name, renamed when closed, so it is
  playable after errors too).
* :mod:`.keys`: :func:`handle_key`, a pure state machine over :class:`LiveState`, and
  :data:`KEY_HELP`.
* :mod:`.meter`: :class:`Meter` (FPS, latency, dropped frames) and :class:`RunReport`.
* :mod:`.loop`: :func:`run` joins them into the loop.
* :mod:`.session`: :func:`stylize_stream` opens a source and the sinks, runs the loop
  and closes them: ``cvstyle live`` in one call.
"""

from __future__ import annotations

from .keys import KEY_ESC, KEY_HELP, NO_KEY, STRENGTH_STEP, Action, LiveState, handle_key
from .loop import HELP_SECONDS, run
from .meter import Meter, RunReport
from .painter import Painter, StylizerLike
from .session import stylize_stream
from .sinks import CODECS, VideoRecorder, Window, check_video_path, letterbox, save_snapshot
from .sources import (
    DEFAULT_FPS,
    FIRST_FRAME_TIMEOUT,
    STALL_TIMEOUT,
    Frame,
    FrameSource,
    LatestFrameSource,
    VideoFileSource,
    open_camera,
    open_source,
    open_stream,
)
from .view import compose, draw_overlay, grid_shape, render, status_line

__all__ = [
    "CODECS", "DEFAULT_FPS", "FIRST_FRAME_TIMEOUT", "HELP_SECONDS", "KEY_ESC", "KEY_HELP",
    "NO_KEY", "STALL_TIMEOUT", "STRENGTH_STEP", "Action", "Frame", "FrameSource",
    "LatestFrameSource", "LiveState", "Meter", "Painter", "RunReport", "StylizerLike",
    "VideoFileSource", "VideoRecorder", "Window", "check_video_path", "compose",
    "draw_overlay", "grid_shape", "handle_key", "letterbox", "open_camera", "open_source",
    "open_stream", "render", "run", "save_snapshot", "status_line", "stylize_stream",
]
