"""Silence OpenCV's own log around a call whose failure cvstyle reports itself."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import cv2

# cv2.utils.logging in recent 4.x, top-level functions in older 4.x releases.
_cv_logging = getattr(getattr(cv2, "utils", None), "logging", cv2)
_LOG_LEVEL_SILENT = 0  # cv::utils::logging::LOG_LEVEL_SILENT
_quiet_lock = threading.Lock()
_quiet_users = 0
_saved_log_level = 0


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's log during a codec call: our own message says what failed.

    The level is process-wide, so overlapping calls from several threads share one
    silent period and the last one out restores the previous level.
    """
    global _quiet_users, _saved_log_level
    with _quiet_lock:
        if _quiet_users == 0:
            _saved_log_level = _cv_logging.getLogLevel()
            _cv_logging.setLogLevel(_LOG_LEVEL_SILENT)
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                _cv_logging.setLogLevel(_saved_log_level)
