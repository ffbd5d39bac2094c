"""Whole-image activation maps kept between the stages of a tiled run: in RAM within a
budget, in files beyond it (read and written through short-lived memory maps, so the
process's resident memory stays bounded), all removed when the run ends."""

from __future__ import annotations

import math
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import CvstyleError
from .geometry import ceil_to

TEMP_VARIABLE = "CVSTYLE_TMP"
DISK_HEADROOM = 64 * 1024**2  # left free on the disk besides what a run needs
ALIGNMENT = 64  # bytes: each map in RAM starts on a cache line
POPULATED = (
    {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE} if hasattr(mmap, "MAP_POPULATE") else {}
)


def temporary_folder() -> Path:
    """Where spilled activations go: ``$CVSTYLE_TMP``, else the system's temporary folder."""
    return Path(os.environ.get(TEMP_VARIABLE) or tempfile.gettempdir())


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB"


class Lifetime(NamedTuple):
    """A map of ``shape`` (channels, rows, cols), written from stage ``first`` and read
    up to stage ``last``."""

    name: str
    shape: tuple[int, int, int]
    first: int
    last: int

    @property
    def size(self) -> int:
        return 4 * math.prod(self.shape)


@dataclass
class Layout:
    """Where each map lives: at a byte offset in one block of RAM, or in a file."""

    maps: dict[str, Lifetime]
    offsets: dict[str, int]  # the maps in RAM
    ram: int  # bytes of the block
    disk: int  # bytes of the maps in files

    @classmethod
    def plan(cls, maps: list[Lifetime], ram_budget: int | None = None) -> "Layout":
        """Maps whose lifetimes overlap get disjoint bytes, the others share them, so
        the block is about as large as the most bytes of maps alive at once, and each
        page of it is faulted in once per run (fresh memory is slow to fault in on VMs,
        docs/benchmarks.md). Largest maps first, each at the lowest offset free over its
        lifetime (TensorFlow Lite's greedy-by-size planner); a map that would end beyond
        ``ram_budget`` goes to a file."""
        placed: list[tuple[int, Lifetime]] = []
        offsets, disk = {}, 0
        for lifetime in sorted(maps, key=lambda kept: (-kept.size, kept.first)):
            size = ceil_to(lifetime.size, ALIGNMENT)
            busy = sorted((offset, offset + other.size) for offset, other in placed
                          if other.first <= lifetime.last and lifetime.first <= other.last)
            offset = 0
            for start, stop in busy:
                if start - offset >= size:
                    break
                offset = max(offset, ceil_to(stop, ALIGNMENT))
            if ram_budget is not None and offset + size > ram_budget:
                disk += lifetime.size
                continue
            placed.append((offset, lifetime))
            offsets[lifetime.name] = offset
        ram = max((offset + lifetime.size for offset, lifetime in placed), default=0)
        return cls({kept.name: kept for kept in maps}, offsets, ram, disk)

    def unused_after(self, name: str) -> list[tuple[int, int]]:
        """The byte ranges of map ``name`` in RAM that no map written after its last
        reading takes: memory the run can hand back when ``name`` is freed."""
        freed, start = self.maps[name], self.offsets[name]
        ranges, stop = [], start + freed.size
        for other_start, other_stop in sorted(
            (self.offsets[other], self.offsets[other] + self.maps[other].size)
            for other in self.offsets if self.maps[other].first > freed.last
        ):
            if other_start > start:
                ranges.append((start, min(other_start, stop)))
            start = max(start, other_stop)
            if start >= stop:
                break
        if start < stop:
            ranges.append((start, stop))
        return ranges


class ActivationStore:
    """Named float32 maps of shape (channels, rows, cols), placed as ``layout`` says. Use
    as a context manager: the files are removed on leaving it, after an error or an
    interrupt too."""

    def __init__(self, layout: Layout, folder: Path | None = None):
        self.layout = layout
        self.arrays: dict[str, np.ndarray] = {}
        self.files: dict[str, tuple[Path, tuple[int, int, int]]] = {}
        self.folder: Path | None = None
        self.spilled = 0  # files made so far, which names the next
        # Faulting the pages in at once, where the system can, costs less than page by
        # page at the maps' first writes (docs/benchmarks.md); freed maps' pages that no
        # later map takes are handed back (:meth:`free`).
        try:
            self.memory = mmap.mmap(-1, layout.ram, **POPULATED) if layout.ram else None
        except OSError as error:
            raise CvstyleError(f"cannot get {_gib(layout.ram)} of memory for this photo's activation maps "
                               f"({error.strerror or error}): lower --max-memory") from None
        self.block = np.frombuffer(self.memory, np.float32) if self.memory is not None else np.empty(0, np.float32)
        if layout.disk:
            parent = folder or temporary_folder()
            try:
                free = shutil.disk_usage(parent).free
            except OSError as error:
                raise CvstyleError(f"cannot use {parent} for temporary files ({error.strerror or error}); set {TEMP_VARIABLE}") from None
            if free < layout.disk + DISK_HEADROOM:
                raise CvstyleError(
                    f"this photo needs {_gib(layout.disk)} of temporary disk space in {parent} "
                    f"beyond the memory budget, and {_gib(free)} is free: free some, set "
                    f"{TEMP_VARIABLE} to another folder, or raise --max-memory"
                )
            self.folder = Path(tempfile.mkdtemp(prefix="cvstyle-activations-", dir=parent))

    def __enter__(self) -> "ActivationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.arrays.clear()
        self.files.clear()
        self.block = np.empty(0, np.float32)
        self.memory = None  # unmapped once no array refers to it
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def allocate(self, name: str) -> None:
        kept = self.layout.maps[name]
        offset = self.layout.offsets.get(name)
        if offset is None:
            self._spill(name, kept.shape, kept.size)
            return
        self.arrays[name] = self.block[offset // 4: (offset + kept.size) // 4].reshape(kept.shape)

    def _spill(self, name: str, shape: tuple[int, int, int], size: int) -> None:
        self.spilled += 1
        path = self.folder / f"{self.spilled}.f32"
        with open(path, "wb") as file:
            file.truncate(size)
        self.files[name] = (path, shape)

    def _map(self, name: str) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name]
        path, shape = self.files[name]
        return np.memmap(path, np.float32, "r+", shape=shape)

    # Reads go channel by channel: each plane's affine map then finds it in the CPU's
    # cache, where a pass over a whole block would read it from memory again.

    def read(self, name: str, rows: slice, cols: slice, affine: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """A copy of ``[:, rows, cols]``, each channel ``c`` times ``gain[c]`` plus
        ``offset[c]`` when ``affine`` is ``(gain, offset)``."""
        whole = self._map(name)
        block = np.empty((whole.shape[0], *whole[0, rows, cols].shape), np.float32)
        for channel, plane in enumerate(block):
            if affine is None:
                np.copyto(plane, whole[channel, rows, cols])
            else:
                np.multiply(whole[channel, rows, cols], affine[0][channel], out=plane)
                plane += affine[1][channel]
        del whole  # unmaps a file's pages from this process
        return block

    def write(self, name: str, rows: slice, cols: slice, block: np.ndarray) -> None:
        """Store ``block`` at ``[:, rows, cols]``."""
        whole = self._map(name)
        whole[:, rows, cols] = block
        del whole

    def free(self, name: str) -> None:
        if name in self.arrays:
            del self.arrays[name]
            if hasattr(mmap, "MADV_DONTNEED"):
                for start, stop in self.layout.unused_after(name):
                    start, stop = ceil_to(start, mmap.PAGESIZE), stop // mmap.PAGESIZE * mmap.PAGESIZE
                    if start < stop:
                        self.memory.madvise(mmap.MADV_DONTNEED, start, stop - start)
        elif name in self.files:
            path, _ = self.files.pop(name)
            path.unlink(missing_ok=True)
