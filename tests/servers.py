"""A real uvicorn server for an app, on a free loopback port, in a background thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from cvstyle.web.connections import ConnectionLimits
from cvstyle.web.server import uvicorn_config


@contextlib.contextmanager
def running_server(
    app: ASGIApp, host: str = "127.0.0.1", timeout: float = 10,
    limits: ConnectionLimits = ConnectionLimits(),
) -> Iterator[str]:
    """Serve ``app`` as ``cvstyle serve`` does (:func:`cvstyle.web.server.uvicorn_config`)
    on a free port in a background thread; yield its URL. The server stops when the block ends.
    """
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host, port, limits))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        listener.close()
