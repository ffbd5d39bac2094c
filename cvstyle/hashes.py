"""Digests of model files: ``ALGO:HEX`` strings, streaming hashers, file verification.

Three algorithms, because that is what is published for the pretrained models:

- ``sha256`` for people's own models,
- ``sha1`` of the raw file (OpenCV's test-data script),
- ``gitsha1``: the Git blob id, SHA-1 of ``b"blob <length>\\0" + data`` (what
  ``git hash-object`` prints). The length is part of the hashed header, so the digest
  also pins the file's exact size, and the hasher must know that size up front.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import unknown_choice

CHUNK_SIZE = 1 << 20

# Algorithm name -> number of hex digits in its digest.
ALGORITHMS = {"sha256": 64, "sha1": 40, "gitsha1": 40}


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Digest:
    """An expected digest, e.g. ``Digest("gitsha1", "69e37b...")``."""

    algo: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algo}:{self.hexdigest}"

    def of_file(self, path: str | os.PathLike) -> Digest:
        """The digest of ``path`` with this digest's algorithm."""
        return Digest(self.algo, file_hexdigest(path, self.algo))


def parse_digest(text: str) -> Digest:
    """Parse ``ALGO:HEX``; raise ValueError with a readable reason if it is not one."""
    algo, sep, hexdigest = text.partition(":")
    algo, hexdigest = algo.strip().lower(), hexdigest.strip().lower()
    if not sep:
        raise ValueError(f"digest {text!r} is not of the form ALGO:HEX (ALGO one of {', '.join(ALGORITHMS)})")
    if algo not in ALGORITHMS:
        raise ValueError(str(unknown_choice("digest algorithm", algo, ALGORITHMS)))
    width = ALGORITHMS[algo]
    if len(hexdigest) != width or not set(hexdigest) <= set(string.hexdigits.lower()):
        raise ValueError(f"a {algo} digest is {width} hex digits, not {hexdigest!r}")
    return Digest(algo, hexdigest)


def new_hasher(algo: str, size: int) -> Hasher:
    """A hashlib object for ``algo``; gitsha1 is primed with the Git blob header for ``size``."""
    if algo == "gitsha1":
        hasher = hashlib.sha1()
        hasher.update(b"blob %d\0" % size)
        return hasher
    if algo not in ALGORITHMS:
        raise ValueError(str(unknown_choice("digest algorithm", algo, ALGORITHMS)))
    return hashlib.new(algo)


def file_hexdigest(path: str | os.PathLike, algo: str) -> str:
    """Hash ``path`` in chunks (model files are megabytes; never read them whole)."""
    path = Path(path)
    with path.open("rb") as stream:
        hasher = new_hasher(algo, os.fstat(stream.fileno()).st_size)
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
    return hasher.hexdigest()
