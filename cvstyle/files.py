"""File-system idioms used across cvstyle: atomic writes and cache stamps."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

FileStamp = tuple[int, int]  # (mtime in ns, size): changes when a file is edited or replaced


def file_stamp(path: str | os.PathLike) -> FileStamp:
    """What cache keys record of a file, so that an edited file is never served stale."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def write_atomically(target: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``target``
    through a temporary file in the same folder, renamed over ``target`` once complete:
    readers never see half a file and concurrent writers do not interleave.

    The file is created with mode 0o666 less the umask, like any new file (``mkstemp``
    would make it private to its owner). OSError propagates; the temporary file is
    removed on any failure, KeyboardInterrupt included.
    """
    with temporary_sibling(target) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with open(descriptor, "wb") as out:
            if callable(data):
                data(out)
            else:
                out.write(data)


@contextlib.contextmanager
def temporary_sibling(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``target``'s folder for the block to write (for writers that
    open files by name, such as FFmpeg's); when the block succeeds the file is synced
    and renamed over ``target``, on any failure (KeyboardInterrupt included) removed.
    """
    target = Path(target)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # on disk before the rename makes it visible
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
