"""Where downloaded models live, whether they are intact, and how a model name becomes a file.

The store is ``<home>/models/<family>/<name>.t7`` (``.onnx`` for an ONNX model) with
``<home>`` the per-user data directory (``~/.local/share/cvstyle`` on Linux) or
``$CVSTYLE_HOME``. Only verified files ever appear under those names (the downloader
writes ``<name>.t7.part`` and renames it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from filelock import FileLock, Timeout

from .catalogue import ONNX_SUFFIX, T7_SUFFIX, Entry, load_catalogue
from .datadir import ENV_HOME, home, models_dir  # noqa: F401 (also asked of the store)
from .errors import ModelError
from .files import write_atomically

BUILTIN_DIR = Path(__file__).resolve().parent / "data"
BUILTIN_MODELS = {"sketch": "sketch.t7", "builtin/sketch": "sketch.t7"}
# Digest results by file size and mtime, so listing models does not re-hash ~200 MB.
_CACHE_NAME = ".verified.json"
# The ONNX conversion the engines keep beside a .t7 (engines.cached_onnx): NAME.<16 hex>.onnx
_CONVERSION = r"\.[0-9a-f]{16}\.onnx"


class Status(str, Enum):
    MISSING = "missing"
    OK = "ok"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class ModelState:
    entry: Entry
    path: Path
    status: Status
    size: int | None = None  # bytes on disk; None when missing
    detail: str = ""  # why a file is corrupt


def model_path(entry: Entry) -> Path:
    """The final path of a catalogue model (it exists only once verified)."""
    return models_dir() / entry.family / f"{entry.short_name}{entry.suffix}"


def part_path(entry: Entry) -> Path:
    """Where an unfinished download is kept so that it can be resumed."""
    final = model_path(entry)
    return final.with_name(final.name + ".part")


def lock(entry: Entry) -> FileLock:
    """The inter-process lock that serialises downloads and removal of one model."""
    final = model_path(entry)
    return FileLock(final.with_name(final.name + ".lock"))


def _read_cache() -> dict:
    try:
        cache = json.loads((models_dir() / _CACHE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write_cache(cache: dict) -> None:
    # The cache only saves time: a read-only store works without it, so write errors pass.
    try:
        write_atomically(models_dir() / _CACHE_NAME, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:
        pass


def _cache_key(entry: Entry, stat: os.stat_result) -> dict:
    # The digest is part of the key: a manifest may pin the same name to other bytes.
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "digest": str(entry.digest)}


def _update_cache(entry: Entry, record: dict | None) -> None:
    cache = _read_cache()
    if record is None:
        cache.pop(entry.name, None)
    else:
        cache[entry.name] = record
    _write_cache(cache)


def status(entry: Entry, recheck: bool = False) -> ModelState:
    """Is ``entry`` downloaded and intact? Uses the cached result unless the file changed."""
    path = model_path(entry)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ModelState(entry, path, Status.MISSING)
    key = _cache_key(entry, stat)
    cached = _read_cache().get(entry.name)
    fresh = isinstance(cached, dict) and cached.get("key") == key and isinstance(cached.get("detail"), str)
    if recheck or not fresh:
        got = entry.digest.of_file(path)
        detail = "" if got == entry.digest else f"expected {entry.digest}, got {got}"
        cached = {"key": key, "detail": detail}
        _update_cache(entry, cached)
    state = Status.CORRUPT if cached["detail"] else Status.OK
    return ModelState(entry, path, state, stat.st_size, cached["detail"])


def verify(entry: Entry) -> ModelState:
    """Re-hash the file whatever the cache says."""
    return status(entry, recheck=True)


def record_verified(entry: Entry) -> None:
    """Remember that the file now under the model's name matched its digest."""
    _update_cache(entry, {"key": _cache_key(entry, model_path(entry).stat()), "detail": ""})


def conversions(entry: Entry) -> list[Path]:
    """The ONNX conversions of a `.t7` model kept beside it (``<name>.<sha256[:16]>.onnx``)."""
    final = model_path(entry)
    if entry.suffix != T7_SUFFIX or not final.parent.is_dir():
        return []
    pattern = re.compile(re.escape(final.stem) + _CONVERSION)
    return sorted(path for path in final.parent.iterdir() if pattern.fullmatch(path.name))


def remove(entry: Entry) -> bool:
    """Delete what belongs to the model: its file, any unfinished download, its ONNX
    conversions and its lock file. False if there was none of them."""
    final = model_path(entry)
    lock_file = final.with_name(final.name + ".lock")
    paths = [final, part_path(entry), *conversions(entry)]
    if not any(path.exists() for path in [*paths, lock_file]):
        return False
    try:
        with lock(entry).acquire(timeout=1):
            for path in paths:
                path.unlink(missing_ok=True)
            lock_file.unlink(missing_ok=True)  # held by us, so no download is using it
    except Timeout:
        raise ModelError(f"model {entry.name} is being downloaded by another cvstyle; try again later") from None
    except OSError as error:
        raise ModelError(f"cannot remove {error.filename}: {error.strerror}") from None
    _update_cache(entry, None)
    return True


def store_size() -> int:
    """Bytes taken by every file in the store: models, conversions, unfinished downloads."""
    total = 0
    for path in models_dir().rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # removed meanwhile
            pass
    return total


def fetch_command(entries: Iterable[Entry], manifest: str | os.PathLike | None = None) -> str:
    """The shell command that downloads ``entries``."""
    words = ["cvstyle", "fetch-models"]
    if manifest is not None:
        words += ["--manifest", os.fspath(manifest)]
    return shlex.join(words + [entry.name for entry in entries])


def local_model(spec: str) -> Path | None:
    """The file ``spec`` names if it is a path or a built-in model; None for a catalogue name."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if spec in BUILTIN_MODELS:
        return BUILTIN_DIR / BUILTIN_MODELS[spec]
    if path.is_dir():
        raise ModelError(f"{spec} is a directory, not a model file")
    if spec.lower().endswith((T7_SUFFIX, ONNX_SUFFIX)):  # meant as a path: catalogue names never end so
        raise ModelError(f"model file {spec} does not exist")
    return None


def resolve_model(spec: str, manifest: str | os.PathLike | None = None) -> Path:
    """The file for a model spec: an existing path, the built-in ``sketch``, or a catalogue name.

    Raises :class:`ModelError` with the command to run when a catalogue model is not
    downloaded (or its file is corrupt).
    """
    return locate_model(spec, manifest)[0]


def locate_model(spec: str, manifest: str | os.PathLike | None = None) -> tuple[Path, Entry | None]:
    """Like :func:`resolve_model`, with the catalogue entry (None for a path or built-in)."""
    local = local_model(spec)
    if local is not None:
        return local, None
    entry = load_catalogue(manifest).lookup(spec)
    state = status(entry)
    command = fetch_command([entry], manifest)
    if state.status is Status.MISSING:
        raise ModelError(f"model {entry.name} is not downloaded: run `{command}`")
    if state.status is Status.CORRUPT:
        raise ModelError(f"model {entry.name} at {state.path} is corrupt ({state.detail}): run `{command}`")
    return state.path, entry
