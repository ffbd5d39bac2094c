"""Running the app: uvicorn with bounded connections, enough file descriptors, a quiet log."""

from __future__ import annotations

import logging
import time

import uvicorn
from starlette.types import ASGIApp

from .connections import ConnectionLimits, bounded_protocol

try:
    import resource
except ImportError:  # Windows: no soft limit on sockets to raise
    resource = None

log = logging.getLogger("cvstyle.web")

MAX_HEADER_BYTES = 16 * 1024  # a request head larger than this gets 400
# Descriptors the process needs besides its connections: listener, models, libraries.
FILE_RESERVE = 128


def uvicorn_config(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 8000,
    limits: ConnectionLimits = ConnectionLimits(),
) -> uvicorn.Config:
    """uvicorn's settings for ``app``: bounded connections, no access log (the app's
    :class:`~cvstyle.web.middleware.RequestLog` writes one line per request)."""
    return uvicorn.Config(
        app, host=host, port=port, http=bounded_protocol(limits), backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        access_log=False, log_config=None,
    )


def file_limit_for(limits: ConnectionLimits) -> ConnectionLimits:
    """``limits`` with a connection cap that this process's open-file limit can hold.

    Raises the soft limit as far as the hard limit allows; lowers the cap (with a
    warning) only if that is not enough.
    """
    if resource is None:
        return limits
    needed = limits.max_connections + limits.backlog + FILE_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limits
    fitting = max(1, (soft - FILE_RESERVE) * 4 // 5)  # room for the backlog's burst too
    log.warning(
        "the open-file limit (%d) holds %d connections, not %d: serving with --max-connections %d",
        soft, fitting, limits.max_connections, fitting,
    )
    return ConnectionLimits(fitting, limits.header_timeout, limits.body_timeout, limits.keep_alive)


class OneLinePerMinute(logging.Filter):
    """asyncio's "socket.accept() out of system resource" comes with a traceback, once per
    refused connection: keep one line a minute, without the traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.last = -60.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "out of system resource" not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self.last < 60:
            self.suppressed += 1
            return False
        record.msg = f"{record.getMessage()}: {record.exc_info[1] if record.exc_info else ''}"
        if self.suppressed:
            record.msg += f" ({self.suppressed} more in the last minute)"
        record.args, record.exc_info, record.exc_text = (), None, None
        self.last, self.suppressed = now, 0
        return True


def serve(app: ASGIApp, host: str, port: int, limits: ConnectionLimits = ConnectionLimits()) -> None:
    """Serve ``app`` until interrupted, as ``cvstyle serve`` does."""
    limits = file_limit_for(limits)
    quiet = OneLinePerMinute()
    logging.getLogger("asyncio").addFilter(quiet)
    try:
        uvicorn.Server(uvicorn_config(app, host, port, limits)).run()
    finally:
        logging.getLogger("asyncio").removeFilter(quiet)
