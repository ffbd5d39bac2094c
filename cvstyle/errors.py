"""Exceptions that the CLI turns into one-line messages and exit codes, and the helpers
that keep their messages to one short printable line."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A message quotes at most this much of anything it did not write itself (a file's
# bytes, an engine's error): one short line, never a screenful of binary.
MAX_QUOTE = 200


class CvstyleError(Exception):
    """A user-facing failure: bad input, missing model, failed download."""

    exit_code = 1


class ImageError(CvstyleError):
    """An input image that cannot be read, or an output that cannot be written."""

    exit_code = 2


class ModelError(CvstyleError):
    """A model file that is missing, corrupt, or not a Torch7 network."""

    exit_code = 3


class MissingPackageError(CvstyleError):
    """An engine asked for by name whose package is not installed."""

    exit_code = 2


class DownloadError(CvstyleError):
    """A model that could not be fetched or did not verify."""

    exit_code = 4


def quote(text: object, limit: int = MAX_QUOTE) -> str:
    """``text`` as one printable line of at most ``limit`` characters."""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return line if len(line) <= limit else line[: limit - 3] + "..."


# OpenCV's "OpenCV(5.0.0) /path/file.cpp:80: error: (-215:Assertion failed) what" prefix.
_OPENCV_PREFIX = re.compile(r"^.*?OpenCV\([^)]*\) \S+: error: \([^)]*\) ")


def first_line(error: BaseException | str, default: str = "unknown error", last: bool = False) -> str:
    """The first (or ``last``) line of an exception's message that says something, quoted:
    what a one-line report of a library's multi-line error shows. OpenCV's source
    location prefix is dropped."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().strip(">").strip()]
    if not lines:
        return default
    with_error = [line for line in lines if "error:" in line]
    line = (with_error or lines)[-1 if last else 0]
    return quote(_OPENCV_PREFIX.sub("", line))


def unknown_choice(
    what: str, value: object, choices: Iterable[str], prefix: str = "", kind: type[CvstyleError] = CvstyleError
) -> CvstyleError:
    """The error (of class ``kind``) for a value that is not one of ``choices``: "unknown
    engine 'x': choose one of auto, opencv, ...". ``prefix`` says where the value came
    from (``FILE:LINE: ``)."""
    return kind(f"{prefix}unknown {what} {quote(repr(value))}: choose one of {', '.join(choices)}")
