"""Moving one model file's bytes into its ``.part``: HTTP with resumption, checked
redirects and retries, ``file://`` copies, and the refusals on the way (an HTML page or
text instead of a model, a body past its size limit, a malformed header).

What a later attempt may fix (a 5xx answer, a dropped connection, a time-out) is retried
with a growing delay; what it cannot (a 4xx, a host that does not resolve or refuses
connections) fails at once.
"""

from __future__ import annotations

import codecs
import errno
import itertools
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from .catalogue import Entry
from .errors import DownloadError, first_line, quote

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16
DEFAULT_MAX_MB = 1024  # the ceiling for a download whose catalogue line declares no size=
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TITLE = re.compile(rb"<title[^>]*>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# Control bytes that text does not hold (white space aside): an ONNX file opens with \x08.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class FetchSettings:
    """How to fetch: mirror, retries, time-outs, the size ceiling, progress and notes."""

    base_url: str | None = None  # replaces PUBLISHED_PREFIX in catalogue URLs
    force: bool = False  # download again even if a verified file is present
    timeout: float = 30.0  # seconds to connect, and seconds without data while reading
    retries: int = 4  # further attempts after a connection error or 5xx answer
    retry_delay: float = 1.0  # seconds before the first retry; doubles each time
    max_bytes: int = DEFAULT_MAX_MB * 1024**2  # cap for a model whose line has no size=
    progress: bool | None = None  # progress bars; None: only on a terminal
    # Receives the licence and what happens (fetching, retrying); default: logging.
    notify: Callable[[str], None] | None = None


class _Retryable(Exception):
    """A failure another attempt may not have: a dropped connection, a time-out, a 5xx answer."""


@dataclass(frozen=True)
class Limit:
    """The most bytes a download may take, and where that figure comes from."""

    size: int
    origin: str

    @classmethod
    def of(cls, entry: Entry, settings: FetchSettings) -> Limit:
        if entry.size is not None:
            return cls(entry.size, f"the size= of {entry.source}")
        return cls(settings.max_bytes, f"the download ceiling (--max-download-mb {settings.max_bytes / 1024**2:g})")

    def __str__(self) -> str:
        return f"{self.size:,} bytes, {self.origin}"


class HostUnreachable(DownloadError):
    """A host whose name does not resolve or that refuses connections: known at once, so
    neither retried nor tried again for the next model."""


# Why a connection failed, when that is known at once and another attempt would not help.
_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED: "it refused the connection",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "no route to it",
}


class Session(requests.Session):
    """A requests session that leaves redirects to :func:`_get`, which checks each
    Location (requests would parse it even with ``allow_redirects=False``, to offer
    ``response.next``, and raise on a malformed one)."""

    def get_redirect_target(self, response: requests.Response) -> None:
        return None


def note(settings: FetchSettings, message: str) -> None:
    """Report ``message`` through the settings' callback, else the log."""
    (settings.notify or logger.info)(message)


def bars_off(settings: FetchSettings) -> bool | None:
    """tqdm's ``disable``: None lets tqdm show bars on a terminal only."""
    return None if settings.progress is None else not settings.progress


def fetch_url(
    session: requests.Session, url: str, part: Path, label: str, settings: FetchSettings, limit: Limit
) -> None:
    """Download ``url`` into ``part``, resuming and retrying as ``settings`` say."""
    for attempt in range(settings.retries + 1):
        try:
            _download(session, url, part, label, settings, limit)
            return
        except _Retryable as error:
            failure = str(error)
        if attempt < settings.retries:
            delay = settings.retry_delay * 2**attempt
            note(settings, f"{label}: {failure}; retrying in {delay:g} s")
            time.sleep(delay)
    kept = " (the partial download is kept and will be resumed)" if part.exists() else ""
    raise DownloadError(f"{failure}; gave up after {settings.retries + 1} attempts{kept}")


def _download(
    session: requests.Session, url: str, part: Path, label: str, settings: FetchSettings, limit: Limit
) -> None:
    """One HTTP attempt, resuming ``part`` when the server honours the Range request."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: offsets and lengths must be those of the file, not of a compressed stream.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with _get(session, url, headers, settings) as response:
        status = response.status_code
        if status == 416 and offset:  # the part is not a prefix of this file: start afresh
            part.unlink()
            return _download(session, url, part, label, settings, limit)
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
            total = _content_length(response)
        if total is not None and total > limit.size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{response.url} announces {total:,} bytes, more than {limit}; nothing was saved")
        content_type = response.headers.get("Content-Type", "")
        source = f"HTTP {status} from {response.url}, Content-Type {content_type or 'none'}"
        try:
            received = _receive(
                response.iter_content(CHUNK_SIZE), part, offset, total, label, settings, source, limit, content_type
            )
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as error:
            received = part.stat().st_size if part.exists() else 0
            raise _Retryable(_broke_off(url, received, total, _reason(error))) from None
        if total is not None and received < total:
            raise _Retryable(_broke_off(url, received, total, "body shorter than its Content-Length"))


def _get(session: requests.Session, url: str, headers: dict[str, str], settings: FetchSettings) -> requests.Response:
    """GET ``url``, following redirects here so that each Location is checked: http(s)
    only, well-formed, no loop, at most :data:`MAX_REDIRECTS`."""
    chain = [url]
    while True:
        try:
            response = session.get(chain[-1], headers=headers, stream=True, timeout=settings.timeout, allow_redirects=False)
        except requests.Timeout:
            raise _Retryable(f"no answer from {chain[-1]} within {settings.timeout:g} s") from None
        except requests.ConnectionError as error:
            why = _unreachable(error)
            if why is not None:
                raise HostUnreachable(
                    f"cannot reach {urlsplit(chain[-1]).hostname} ({why}); offline? Copy the models from a machine "
                    "that can reach it and run `cvstyle fetch-models --base-url DIR` (DIR laid out as FAMILY/NAME.t7)"
                ) from None
            raise _Retryable(f"cannot connect to {chain[-1]} ({_reason(error)})") from None
        except requests.RequestException as error:  # an invalid URL or header: no retry helps
            raise DownloadError(f"{quote(chain[-1])}: {first_line(error)}") from None
        if response.status_code not in REDIRECTS:
            return response
        response.close()
        chain.append(_redirect_target(chain, response.headers.get("Location", "")))


def _redirect_target(chain: list[str], location: str) -> str:
    """The absolute URL a redirect from ``chain[-1]`` leads to, or DownloadError."""
    where = f"{chain[0]}: {'redirected by ' + chain[-1] + ' ' if len(chain) > 1 else ''}"
    try:
        target = urljoin(chain[-1], location.strip())
        parts = urlsplit(target)
        parts.port  # noqa: B018 (a port that is not a number raises ValueError here)
    except ValueError:
        raise DownloadError(f"{where}malformed Location header {quote(repr(location))}") from None
    if not location.strip():
        raise DownloadError(f"{where}redirect without a Location header")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"{where}redirect to {quote(target)} refused: only http and https redirects are followed")
    if target in chain:
        raise DownloadError(f"{chain[0]}: redirect loop ({quote(' -> '.join([*chain, target]))})")
    if len(chain) > MAX_REDIRECTS:
        raise DownloadError(f"{chain[0]}: more than {MAX_REDIRECTS} redirects")
    return target


def _content_length(response: requests.Response) -> int | None:
    text = response.headers.get("Content-Length")
    if text is None:
        return None
    if not text.strip().isdigit():
        raise DownloadError(f"{response.url} sent an invalid Content-Length header {quote(repr(text))}")
    return int(text)


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


def copy_file(url: str, part: Path, label: str, settings: FetchSettings, limit: Limit) -> None:
    """Fetch from a ``file://`` URL (a local mirror): a plain copy through the same checks."""
    source = Path(url2pathname(urlsplit(url).path))
    try:
        with source.open("rb") as stream:
            chunks = iter(lambda: stream.read(CHUNK_SIZE), b"")
            _receive(chunks, part, 0, os.fstat(stream.fileno()).st_size, label, settings, str(source), limit)
    except FileNotFoundError:
        raise DownloadError(f"{source} does not exist") from None
    except IsADirectoryError:
        raise DownloadError(f"{source} is a directory, not a model file") from None


def _receive(
    chunks: Iterator[bytes], part: Path, offset: int, total: int | None, label: str,
    settings: FetchSettings, source: str, limit: Limit, content_type: str = "",
) -> int:
    """Write ``chunks`` to ``part`` (appending after ``offset`` bytes); return its new size.

    A fresh download is refused before anything is written if it starts like text; one
    that grows past ``limit`` is stopped before the chunk that would cross it, and its
    part deleted.
    """
    first = next(chunks, b"")
    if offset == 0 or content_type.startswith(_HTML_TYPES):
        _refuse_text(first, source, content_type)
    try:
        # Unbuffered: a full disk shows at the write that fills it, not at close().
        out = part.open("ab" if offset else "wb", buffering=0)
    except OSError as error:
        raise _cannot_write(part, error) from None
    with tqdm(
        total=total, initial=offset, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
        leave=False, disable=bars_off(settings),
    ) as bar, out:
        size = offset
        for chunk in itertools.chain([first], chunks):
            if size + len(chunk) > limit.size:
                break
            try:
                out.write(chunk)
            except OSError as error:
                raise _cannot_write(part, error) from None
            size += len(chunk)
            bar.update(len(chunk))
        else:
            return size
    part.unlink()
    raise DownloadError(f"{source}: the body grew past {limit}; stopped and deleted the partial file")


def _cannot_write(part: Path, error: OSError) -> DownloadError:
    """The partial file is deleted (on a full disk it is what filled it); the message
    names the model's final path, the one the user knows."""
    part.unlink(missing_ok=True)
    final = part.with_name(part.name.removesuffix(".part"))
    return DownloadError(f"cannot write {final}: {error.strerror or first_line(error)}; nothing was kept")


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
