"""Inputs of a Ray job: local paths as ``apply`` expands them, and URIs of pyarrow filesystems."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .. import batch
from ..errors import CvstyleError, ImageError, first_line
from ..imageio import READ_EXTENSIONS, Picture, decode_image

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
# What pyarrow raises for a missing file or bucket, a bad URI, a filesystem it was built without.
_FILESYSTEM_ERRORS = (OSError, ValueError, NotImplementedError)


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def expand_sources(inputs: Iterable[str | os.PathLike]) -> tuple[list[str], list[batch.Failure]]:
    """:func:`cvstyle.batch.expand_inputs` for local arguments; a URI (``s3://...``) is
    listed through its pyarrow filesystem: a file, a folder's images, or a glob."""
    found: list[str] = []
    failures: list[batch.Failure] = []
    for argument in inputs:
        text = os.fspath(argument)
        if is_uri(text):
            sources, problem = list_uri(text)
        else:
            paths, missing = batch.expand_inputs([text])
            sources, problem = [str(p) for p in paths], missing[0].error if missing else None
        found += sources
        if problem is not None:
            failures.append(batch.Failure(Path(text), problem))
    return list(dict.fromkeys(found)), failures


def list_uri(uri: str) -> tuple[list[str], CvstyleError | None]:
    """The image URIs ``uri`` names (itself, its folder's images, or a glob's matches),
    or the error saying why there are none."""
    from pyarrow import fs as pafs

    folder, _, last = uri.rstrip("/").rpartition("/")
    pattern = last if any(c in last for c in "*?[") else None
    try:
        filesystem, path = pafs.FileSystem.from_uri(folder if pattern else uri)
        kind = filesystem.get_file_info(path).type
        if kind == pafs.FileType.File and not pattern:
            return [uri], None
        if kind != pafs.FileType.Directory:
            return [], ImageError(f"{uri}: {'no file matches' if pattern else 'no such file or directory'}")
        folder = folder if pattern else uri.rstrip("/")
        entries = filesystem.get_file_info(pafs.FileSelector(path))
    except _FILESYSTEM_ERRORS as error:
        return [], ImageError(f"{uri}: cannot list ({first_line(error)})")
    names = sorted(
        entry.base_name for entry in entries
        if entry.type == pafs.FileType.File and (
            fnmatch.fnmatchcase(entry.base_name, pattern) if pattern
            else Path(entry.base_name).suffix.lower() in READ_EXTENSIONS
        )
    )
    if not names:
        return [], ImageError(f"{uri}: {'no file matches' if pattern else 'no images in this directory'}")
    return [f"{folder}/{name}" for name in names], None


def read_uri(uri: str, max_pixels: int | None = None) -> Picture:
    """:func:`cvstyle.imageio.read_image` for a URI of a pyarrow filesystem."""
    from pyarrow import fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except _FILESYSTEM_ERRORS as error:
        raise ImageError(f"{uri}: cannot read ({first_line(error)})") from None
    return decode_image(data, uri, max_pixels)

