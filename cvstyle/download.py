"""Fetch catalogue models into the store, so that only verified files appear under their names.

Each download goes to ``<name>.t7.part`` (``<name>.onnx.part``) through
:mod:`cvstyle.transfer` (resumed, retried, size-limited); the finished part is checked
(digest, a Torch7 or ONNX model as the URL says) and only then renamed onto the final
name. A per-model file lock makes two cvstyle processes fetching the same model end with
one valid file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from filelock import Timeout
from tqdm import tqdm

from . import __version__, store, torch7
from .catalogue import ONNX_SUFFIX, PUBLISHED_PREFIX, URL_SCHEMES, Entry, load_catalogue
from .errors import DownloadError, ModelError, first_line
from .modelinfo import inspect_onnx
from .transfer import FetchSettings, HostUnreachable, Limit, Session, bars_off, copy_file, fetch_url, note

__all__ = ["LICENCE", "FetchResult", "FetchSettings", "fetch_models", "ensure_model", "mirror_url", "normalise_base_url"]

LICENCE = (
    "The pretrained models are Justin Johnson's (fast-neural-style): "
    '"Free for personal or research use; for commercial use please contact me."'
)


@dataclass(frozen=True)
class FetchResult:
    entry: Entry
    outcome: str  # "downloaded", "present" or "failed"
    path: Path
    size: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


def normalise_base_url(base_url: str) -> str:
    """``base_url`` as an http(s) or file URL; a plain directory path becomes a file URL."""
    if "://" not in base_url and Path(base_url).expanduser().is_dir():
        return Path(base_url).expanduser().resolve().as_uri()
    if urlsplit(base_url).scheme not in URL_SCHEMES:
        raise DownloadError(f"--base-url {base_url!r} is not an http, https or file URL, nor a directory")
    return base_url


def mirror_url(url: str, base_url: str | None) -> str:
    """``url`` with the published prefix replaced by ``base_url`` (other URLs are kept)."""
    if not base_url or not url.startswith(PUBLISHED_PREFIX):
        return url
    return base_url.rstrip("/") + "/" + url[len(PUBLISHED_PREFIX) :]


def fetch_models(entries: Iterable[Entry], settings: FetchSettings = FetchSettings()) -> list[FetchResult]:
    """Fetch ``entries`` one after the other; a failed model does not stop the others.

    Raises :class:`DownloadError` only when the store itself cannot be written.
    """
    entries = list(entries)
    if any(entry.url.startswith(PUBLISHED_PREFIX) for entry in entries):
        note(settings, LICENCE)  # Justin Johnson's terms cover his published models only
    _check_writable(store.models_dir())
    results = []
    with Session() as session:
        session.headers["User-Agent"] = f"cvstyle/{__version__}"
        overall = tqdm(entries, desc="models", unit="model", disable=True if len(entries) < 2 else bars_off(settings))
        try:
            for entry in overall:
                results.append(_fetch_one(entry, settings, session))
        finally:
            overall.close()
    return results


def ensure_model(spec: str, manifest: str | os.PathLike | None = None, settings: FetchSettings = FetchSettings()) -> Path:
    """Like :func:`store.resolve_model`, but fetch a catalogue model that is not downloaded."""
    local = store.local_model(spec)
    if local is not None:
        return local
    entry = load_catalogue(manifest).lookup(spec)
    if store.status(entry).status is not store.Status.OK:
        (result,) = fetch_models([entry], settings)
        if not result.ok:
            raise DownloadError(f"{entry.name}: {result.detail}")
    return store.model_path(entry)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise DownloadError(
            f"cannot write to the model store {directory} ({error.strerror}); "
            f"set {store.ENV_HOME} to a writable directory"
        ) from None


def _fetch_one(entry: Entry, settings: FetchSettings, session: requests.Session) -> FetchResult:
    final = store.model_path(entry)
    try:
        final.parent.mkdir(exist_ok=True)
        lock = store.lock(entry)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            note(settings, f"{entry.name}: another cvstyle is fetching it; waiting")
            lock.acquire()
        try:
            return _fetch_locked(entry, settings, session)
        finally:
            lock.release()
    except HostUnreachable:
        raise  # the next models are on the same host: stop here
    except DownloadError as error:
        return FetchResult(entry, "failed", final, detail=str(error))
    except OSError as error:
        return FetchResult(entry, "failed", final, detail=f"{error.filename or final}: {error.strerror}")


def _fetch_locked(entry: Entry, settings: FetchSettings, session: requests.Session) -> FetchResult:
    part = store.part_path(entry)
    if settings.force:
        part.unlink(missing_ok=True)
    else:
        state = store.status(entry)
        if state.status is store.Status.OK:
            return FetchResult(entry, "present", state.path, state.size)
    url = mirror_url(entry.url, settings.base_url)
    note(settings, f"{entry.name}: fetching {url}")  # the only sign of progress where bars are off (no terminal)
    limit = Limit.of(entry, settings)
    if urlsplit(url).scheme == "file":
        copy_file(url, part, entry.name, settings, limit)
    else:
        fetch_url(session, url, part, entry.name, settings, limit)
    _check_part(entry, part, url)
    final = store.model_path(entry)
    os.replace(part, final)  # atomic: the final name only ever holds a verified file
    store.record_verified(entry)
    return FetchResult(entry, "downloaded", final, final.stat().st_size)


def _check_part(entry: Entry, part: Path, url: str) -> None:
    """Digest, then Torch7 or ONNX structure; a part that fails either is deleted."""
    got = entry.digest.of_file(part)
    if got != entry.digest:
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(
            f"digest mismatch for {url}: expected {entry.digest}, got {got} ({size} bytes); nothing was saved"
        )
    # A manifest may pin the digest of a file that is no model at all.
    if entry.suffix == ONNX_SUFFIX:
        try:
            inspect_onnx(part)
        except ModelError as error:
            part.unlink()
            reason = first_line(error).removeprefix(f"{part}: ")
            raise DownloadError(f"{url} matches its digest but is {reason}") from None
        return
    try:
        torch7.load(part)
    except torch7.Torch7Error as error:
        part.unlink()
        raise DownloadError(f"{url} matches its digest but is {first_line(error)}") from None
