"""Silence OpenCV and the codec libraries around a call whose failure cvstyle reports
itself: the user sees one line, cvstyle's."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

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


_stderr_lock = threading.Lock()


@contextlib.contextmanager
def library_messages(wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """Capture what C libraries (libjpeg, libpng) write to the process's standard error
    during the block: the lines ``wanted`` accepts are put in the yielded list (filled
    when the block ends), any other line is written back to standard error.

    Standard error is one per process, so blocks from several threads run one at a time.
    """
    messages: list[str] = []
    with _stderr_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no standard error to capture
            yield messages
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield messages
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                others = []
                for line in capture.read().decode("utf-8", "replace").splitlines():
                    (messages if wanted(line) else others).append(line)
                if others:
                    os.write(2, ("\n".join(others) + "\n").encode())
