"""A real HTTP server on 127.0.0.1 for download tests, with scripted misbehaviour.

Each path maps to a *responder*, a function that writes one response on the handler.
Helpers build the responders the tests need: files (with Range support), redirects,
status codes, bodies cut short, stalls, and sequences that change from one request to
the next. Every request is recorded (path and headers) for the tests to inspect.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cvstyle.testing import fixture_bytes

Responder = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


def serve(
    data: bytes, content_type: str = "application/octet-stream", ranges: bool = True,
    cut_at: int | None = None, chunk_delay: float = 0.0,
) -> Responder:
    """``data``, honouring ``Range: bytes=N-`` if ``ranges``.

    ``cut_at``: close the connection after that many body bytes although the headers
    promised all of them. ``chunk_delay``: seconds between 64 KiB chunks (a slow server).
    """

    def respond(handler: BaseHTTPRequestHandler) -> None:
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if ranges and wanted and int(wanted[1]) < len(data):
            start = int(wanted[1])
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        body = data[start:cut_at] if cut_at is not None else data[start:]
        for offset in range(0, len(body), 1 << 16):
            handler.wfile.write(body[offset : offset + (1 << 16)])
            handler.wfile.flush()
            time.sleep(chunk_delay)
        handler.close_connection = True

    return respond


def status(code: int, body: bytes = b"") -> Responder:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def redirect(location: str, code: int = 301) -> Responder:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return respond


def raw(code: int, headers: dict[str, str], body: bytes = b"") -> Responder:
    """Exactly these headers, however wrong (a Content-Length of "abc", a broken Location)."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(code)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    return respond


def endless(content_length: int | None = None) -> Responder:
    """A body that never ends (binary zeros until the client hangs up), with an optional
    Content-Length that lies about it."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if content_length is not None:
            handler.send_header("Content-Length", str(content_length))
        handler.end_headers()
        chunk = bytes(1 << 16)
        try:
            while True:
                handler.wfile.write(chunk)
        except OSError:  # the client hung up
            pass
        handler.close_connection = True

    return respond


def stall(release: threading.Event, after: bytes | None = None, total: int = 0) -> Responder:
    """Never answer (``after`` None), or send headers and ``after`` then go silent."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        if after is not None:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(total))
            handler.end_headers()
            handler.wfile.write(after)
            handler.wfile.flush()
        release.wait(30)
        handler.close_connection = True

    return respond


def sequence(*responders: Responder) -> Responder:
    """The n-th request gets the n-th responder; later ones get the last."""
    remaining = list(responders)

    def respond(handler: BaseHTTPRequestHandler) -> None:
        (remaining.pop(0) if len(remaining) > 1 else remaining[0])(handler)

    return respond


class ModelServer:
    def __init__(self) -> None:
        self.routes: dict[str, Responder] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()  # lets stalled responders finish at teardown
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(Seen(self.path, dict(self.headers)))
                try:
                    server.routes.get(self.path, status(404, b"not found"))(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: its right
                    self.close_connection = True

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@functools.cache
def model_bytes(seed: int = 7) -> bytes:
    """An architecture-faithful instance_norm checkpoint (3.4 MB); another seed, other bytes."""
    return fixture_bytes("instance_norm", seed)


def sha256_digest(data: bytes) -> str:
    """Computed with hashlib here, independently of cvstyle.hashes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gitsha1_digest(data: bytes) -> str:
    return "gitsha1:" + hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_manifest(path: Path, *lines: str) -> Path:
    path.write_text("# test catalogue\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path
