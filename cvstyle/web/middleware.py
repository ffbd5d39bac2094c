"""ASGI middleware around the app: security headers, the upload size limit and the
one-line request log."""

from __future__ import annotations

import logging
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cvstyle.web")


# On every response; the page adds its own Content-Security-Policy (which also forbids
# framing), every other response gets one that only forbids framing.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
FRAME_POLICY = (b"content-security-policy", b"frame-ancestors 'none'")


class SecurityHeaders:
    """The headers that keep browsers from sniffing, framing and leaking referrers, on
    every response the app sends (errors included)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [header for header in SECURITY_HEADERS if header[0] not in names]
                if FRAME_POLICY[0] not in names:
                    headers.append(FRAME_POLICY)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)


class UploadLimit:
    """413 for request bodies over ``limit`` bytes, read or declared, before any parsing."""

    def __init__(self, app: ASGIApp, limit: int, message: str):
        self.app = app
        self.limit = limit
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0

        async def counted() -> Message:
            # For chunked uploads, which declare no length.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)  # FastAPI re-raises it from body parsing
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Close the connection: the unread body must not be taken as the next request.
        response = JSONResponse({"detail": self.message}, 413, headers={"Connection": "close"})
        await response(scope, receive, send)


class RequestLog:
    """One log line per request: client, method, path, status, time, and the handler's note."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # if the app fails before answering

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            client = scope.get("client") or ("-", 0)
            note = scope.get("state", {}).get("log_note", "")
            log.info(
                "%s %s %s %d %.0fms%s", client[0], scope["method"], scope["path"], status,
                (time.perf_counter() - start) * 1000, f" {note}" if note else "",
            )
