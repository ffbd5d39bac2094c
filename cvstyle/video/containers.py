"""Which files are videos (by their first bytes, as photos are recognised) and which
containers cvstyle writes. Imports nothing heavy: the batch code asks this of every input.
"""

from __future__ import annotations

import os
import stat

# Extensions a folder's videos are listed by (single files and globs are sniffed; not
# .ts, which folders of TypeScript sources are full of).
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".mpg", ".mpeg", ".3gp", ".flv", ".ogv"}
)
# Output extension -> FFmpeg muxer. H.264 plays in browsers from MP4 (the default) and MOV.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_SUFFIX = ".mp4"
# ISO base media brands that are still pictures (HEIF, AVIF), not videos.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})
# Enough for every magic below, MPEG-TS's second sync byte included.
SNIFF_BYTES = 200


def sniff_container(head: bytes) -> str | None:
    """The video container that ``head`` (a file's first :data:`SNIFF_BYTES`) opens, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mov"  # QuickTime files from before ftyp
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    # MPEG-TS: a 0x47 sync byte every 188 bytes (M2TS: every 192, after a 4-byte prefix).
    if len(head) > 188 and head[0] == head[188] == 0x47:
        return "mpegts"
    if len(head) > 196 and head[4] == head[196] == 0x47:
        return "mpegts"
    return None


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable file whose content opens as a video container."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # opening a FIFO would block
        with open(path, "rb") as file:
            return sniff_container(file.read(SNIFF_BYTES)) is not None
    except OSError:
        return False
