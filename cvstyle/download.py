"""Fetch catalogue models into the store, so that only verified files appear under their names.

Each download goes to ``<name>.t7.part`` (``<name>.onnx.part``); an interrupted one is
resumed with a Range request; the finished part is checked (not an HTML page, complete,
digest, a Torch7 or ONNX model as the URL says) and only then renamed onto the final
name. A per-model file lock makes two cvstyle processes fetching the same model end with
one valid file.
"""

from __future__ import annotations

import codecs
import errno
import itertools
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from filelock import Timeout
from tqdm import tqdm

from . import __version__, store, torch7
from .catalogue import ONNX_SUFFIX, PUBLISHED_PREFIX, URL_SCHEMES, Entry, load_catalogue
from .errors import DownloadError, ModelError, first_line
from .modelinfo import inspect_onnx

logger = logging.getLogger(__name__)

LICENCE = (
    "The pretrained models are Justin Johnson's (fast-neural-style): "
    '"Free for personal or research use; for commercial use please contact me."'
)
CHUNK_SIZE = 1 << 16
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TITLE = re.compile(rb"<title[^>]*>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Control bytes that text does not hold (white space aside): an ONNX file opens with \x08.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class FetchSettings:
    base_url: str | None = None  # replaces PUBLISHED_PREFIX in catalogue URLs
    force: bool = False  # download again even if a verified file is present
    timeout: float = 30.0  # seconds to connect, and seconds without data while reading
    retries: int = 4  # further attempts after a connection error or 5xx answer
    retry_delay: float = 1.0  # seconds before the first retry; doubles each time
    progress: bool | None = None  # progress bars; None: only on a terminal
    # Receives the licence and what happens (fetching, retrying); default: logging.
    notify: Callable[[str], None] | None = None


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


class _Retryable(Exception):
    """A failure another attempt may not have: a dropped connection, a time-out, a 5xx answer."""


class HostUnreachable(DownloadError):
    """A host whose name does not resolve or that refuses connections: known at once, so
    neither retried nor tried again for the next model."""


# Why a connection failed, when that is known at once and another attempt would not help.
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED: "it refused the connection", errno.ENETUNREACH: "the network is unreachable", errno.EHOSTUNREACH: "no route to it"}


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


def _note(settings: FetchSettings, message: str) -> None:
    (settings.notify or logger.info)(message)


def fetch_models(entries: Iterable[Entry], settings: FetchSettings = FetchSettings()) -> list[FetchResult]:
    """Fetch ``entries`` one after the other; a failed model does not stop the others.

    Raises :class:`DownloadError` only when the store itself cannot be written.
    """
    entries = list(entries)
    if any(entry.url.startswith(PUBLISHED_PREFIX) for entry in entries):
        _note(settings, LICENCE)  # Justin Johnson's terms cover his published models only
    _check_writable(store.models_dir())
    results = []
    with requests.Session() as session:
        session.headers["User-Agent"] = f"cvstyle/{__version__}"
        overall = tqdm(entries, desc="models", unit="model", disable=True if len(entries) < 2 else _no_bars(settings))
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


def _no_bars(settings: FetchSettings) -> bool | None:
    return None if settings.progress is None else not settings.progress


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
            _note(settings, f"{entry.name}: another cvstyle is fetching it; waiting")
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
    _note(settings, f"{entry.name}: fetching {url}")  # the only sign of progress where bars are off (no terminal)
    if urlsplit(url).scheme == "file":
        _copy_file(url, part, entry.name, settings)
    else:
        _download_with_retries(session, url, part, entry.name, settings)
    _check_part(entry, part, url)
    final = store.model_path(entry)
    os.replace(part, final)  # atomic: the final name only ever holds a verified file
    store.record_verified(entry)
    return FetchResult(entry, "downloaded", final, final.stat().st_size)


def _download_with_retries(session: requests.Session, url: str, part: Path, label: str, settings: FetchSettings) -> None:
    for attempt in range(settings.retries + 1):
        try:
            _download(session, url, part, label, settings)
            return
        except _Retryable as error:
            failure = str(error)
        if attempt < settings.retries:
            delay = settings.retry_delay * 2**attempt
            _note(settings, f"{label}: {failure}; retrying in {delay:g} s")
            time.sleep(delay)
    kept = " (the partial download is kept and will be resumed)" if part.exists() else ""
    raise DownloadError(f"{failure}; gave up after {settings.retries + 1} attempts{kept}")


def _download(session: requests.Session, url: str, part: Path, label: str, settings: FetchSettings) -> None:
    """One HTTP attempt, resuming ``part`` when the server honours the Range request."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: offsets and lengths must be those of the file, not of a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = session.get(url, headers=headers, stream=True, timeout=settings.timeout)
    except requests.Timeout:
        raise _Retryable(f"no answer from {url} within {settings.timeout:g} s") from None
    except requests.ConnectionError as error:
        why = _unreachable(error)
        if why is not None:
            host = urlsplit(url).hostname
            raise HostUnreachable(
                f"cannot reach {host} ({why}); offline? Copy the models from a machine that can "
                f"reach it and run `cvstyle fetch-models --base-url DIR` (DIR laid out as FAMILY/NAME.t7)"
            ) from None
        raise _Retryable(f"cannot connect to {url} ({_reason(error)})") from None
    with response:
        status = response.status_code
        if status == 416 and offset:  # the part is not a prefix of this file: start afresh
            part.unlink()
            return _download(session, url, part, label, settings)
        if status >= 500:
            raise _Retryable(f"HTTP {status} {response.reason} from {response.url}")
        if status not in (200, 206):
            raise DownloadError(f"HTTP {status} {response.reason} from {response.url}")
        content_range = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if status == 206 and not (offset and content_range and int(content_range[1]) == offset):
            part.unlink(missing_ok=True)  # a range we did not ask for: the part cannot be trusted
            raise _Retryable(f"{response.url} answered with an unexpected byte range")
        if status == 206:
            total = int(content_range[3]) if content_range[3] != "*" else None
        else:
            offset = 0  # the server ignored Range (or none was sent): restart the part
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
        content_type = response.headers.get("Content-Type", "")
        source = f"HTTP {status} from {response.url}, Content-Type {content_type or 'none'}"
        try:
            received = _receive(response.iter_content(CHUNK_SIZE), part, offset, total, label, settings, source, content_type)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as error:
            received = part.stat().st_size if part.exists() else 0
            raise _Retryable(_broke_off(url, received, total, _reason(error))) from None
        if total is not None and received < total:
            raise _Retryable(_broke_off(url, received, total, "body shorter than its Content-Length"))


def _broke_off(url: str, received: int, total: int | None, reason: str) -> str:
    return f"download of {url} broke off after {received} of {total if total is not None else '?'} bytes ({reason})"


def _unreachable(error: BaseException) -> str | None:
    """Why the host cannot be reached, if the error (or one it wraps) says so for good."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "its name does not resolve"
        if isinstance(current, OSError) and current.errno in _UNREACHABLE_ERRNOS:
            return _UNREACHABLE_ERRNOS[current.errno]
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
    return None


def _reason(error: requests.RequestException) -> str:
    """A few words for a connection failure, without urllib3's pool and object reprs."""
    text = str(error)
    if isinstance(error, requests.Timeout) or "timed out" in text.lower():
        return "timed out"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the server closed the connection before the end of the body"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return errno[1].strip() if errno else "connection failed"


def _copy_file(url: str, part: Path, label: str, settings: FetchSettings) -> None:
    """Fetch from a ``file://`` URL (a local mirror): a plain copy through the same checks."""
    source = Path(url2pathname(urlsplit(url).path))
    try:
        with source.open("rb") as stream:
            chunks = iter(lambda: stream.read(CHUNK_SIZE), b"")
            _receive(chunks, part, 0, os.fstat(stream.fileno()).st_size, label, settings, str(source))
    except FileNotFoundError:
        raise DownloadError(f"{source} does not exist") from None
    except IsADirectoryError:
        raise DownloadError(f"{source} is a directory, not a model file") from None


def _receive(
    chunks: Iterator[bytes], part: Path, offset: int, total: int | None, label: str,
    settings: FetchSettings, source: str, content_type: str = "",
) -> int:
    """Write ``chunks`` to ``part`` (appending after ``offset`` bytes); return its new size.

    A fresh download is refused before anything is written if it starts like text.
    """
    first = next(chunks, b"")
    if offset == 0 or content_type.startswith(_HTML_TYPES):
        _refuse_text(first, source, content_type)
    with tqdm(
        total=total, initial=offset, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
        leave=False, disable=_no_bars(settings),
    ) as bar, part.open("ab" if offset else "wb") as out:
        for chunk in itertools.chain([first], chunks):
            out.write(chunk)
            bar.update(len(chunk))
        return out.tell()


def _refuse_text(first: bytes, source: str, content_type: str) -> None:
    """Refuse an HTML page or other text where a binary model file was expected.

    A Torch7 file starts with a 4-byte little-endian type tag, so its first bytes hold
    NULs; an ONNX file starts with a protobuf tag byte (0x08); a page (e.g. the "301 Moved
    Permanently" one that naive clients save) holds neither.
    A declared text/plain with binary bytes is accepted: old web servers label unknown
    extensions that way, and the digest decides.
    """
    if not first:
        raise DownloadError(f"the server sent an empty file ({source})")
    sample = first[:512]
    declared_html = content_type.lower().startswith(_HTML_TYPES)
    looks_like_text = not _BINARY.search(sample) and _decodes_as_utf8(sample)
    if declared_html or (looks_like_text and sample.lstrip()[:1] == b"<"):
        title = _TITLE.search(first)
        named = f', title "{title[1][:80].decode("utf-8", "replace")}"' if title else ""
        raise DownloadError(f"server sent an HTML page, not a model ({source}{named})")
    if looks_like_text:
        start = sample.decode("utf-8", "replace").strip()[:60].partition("\n")[0]
        raise DownloadError(f"server sent text, not a model ({source}, starting {start!r})")


def _decodes_as_utf8(sample: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample)  # a cut last character is fine
    except UnicodeDecodeError:
        return False
    return True


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
