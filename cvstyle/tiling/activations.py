"""Whole-image activation maps kept between the stages of a tiled run: in RAM within a
budget, in files beyond it (read and written through short-lived memory maps, so the
process's resident memory stays bounded), all removed when the run ends."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CvstyleError

TEMP_VARIABLE = "CVSTYLE_TMP"
DISK_HEADROOM = 64 * 1024**2  # left free on the disk besides what a run needs
# A freed map's memory goes to a later map at most this much smaller (maps of one kind
# differ by a few rows), so at most this share of the RAM budget goes unused.
REUSE_SLACK = 1.1


def temporary_folder() -> Path:
    """Where spilled activations go: ``$CVSTYLE_TMP``, else the system's temporary folder."""
    return Path(os.environ.get(TEMP_VARIABLE) or tempfile.gettempdir())


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB"


class ActivationStore:
    """Named float32 maps of shape (channels, rows, cols). Use as a context manager: the
    files are removed on leaving it, after an error or an interrupt too."""

    def __init__(self, ram_budget: int, disk_needed: int, folder: Path | None = None):
        self.ram_budget = ram_budget
        self.ram_used = 0  # bytes of the maps in RAM and of the spare buffers
        self.arrays: dict[str, np.ndarray] = {}
        # Freed maps' flat buffers, given to later maps that fit in them: fresh memory costs
        # a page fault per page at its first write, which is slow on VMs (docs/benchmarks.md).
        self.spare: list[np.ndarray] = []
        self.files: dict[str, tuple[Path, tuple[int, int, int]]] = {}
        self.folder: Path | None = None
        self.spilled = 0  # files made so far, which names the next
        if disk_needed:
            parent = folder or temporary_folder()
            try:
                free = shutil.disk_usage(parent).free
            except OSError as error:
                raise CvstyleError(f"cannot use {parent} for temporary files ({error.strerror or error}); set {TEMP_VARIABLE}") from None
            if free < disk_needed + DISK_HEADROOM:
                raise CvstyleError(
                    f"this photo needs {_gib(disk_needed)} of temporary disk space in {parent} "
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
        self.spare.clear()
        self.files.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def allocate(self, name: str, shape: tuple[int, int, int]) -> None:
        count = int(np.prod(shape))
        size = count * 4
        fitting = [buffer for buffer in self.spare if count <= buffer.size <= REUSE_SLACK * count]
        if fitting:
            buffer = min(fitting, key=lambda spare: spare.size)
            self.spare = [spare for spare in self.spare if spare is not buffer]
        else:
            while self.spare and self.ram_used + size > self.ram_budget:
                self.ram_used -= self.spare.pop().nbytes
            if self.ram_used + size > self.ram_budget and self.folder is not None:
                self._spill(name, shape, size)
                return
            buffer = np.empty(count, np.float32)
            self.ram_used += size
        self.arrays[name] = buffer[:count].reshape(shape)  # a view: its base is the buffer

    def trim(self) -> None:
        """Hand back the freed maps' memory that no map has taken."""
        self.ram_used -= sum(buffer.nbytes for buffer in self.spare)
        self.spare.clear()

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
            self.spare.append(self.arrays.pop(name).base)
        elif name in self.files:
            path, _ = self.files.pop(name)
            path.unlink(missing_ok=True)
