"""Bounded connections: uvicorn's HTTP/1.1 protocol with a connection cap and read deadlines.

uvicorn closes a connection that stays idle after a response (``timeout_keep_alive``),
but not one that never sends a request, sends half a request head, or sends a body
and stops: each holds a file descriptor for ever, and enough of them exhaust the
process's descriptors (then nothing, ``/health`` included, can connect). Here:

- a request head must arrive within ``header_timeout`` seconds of the connection being
  ready for it (opened, or done with the previous response);
- a body may pause for at most ``body_timeout`` seconds between two reads;
- past ``max_connections`` open connections, the one that has waited longest without
  a complete request is closed to make room (a client whose request is being answered
  is never dropped; one still sending a body goes after every idle one).

Closed connections are not logged one by one: reaching the cap logs one warning a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("cvstyle.web")

CAP_WARNING_INTERVAL = 60.0  # seconds between two "connection cap reached" warnings


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a server holds and how long it waits for what clients send."""

    max_connections: int = 1000
    header_timeout: float = 10.0  # seconds to send a request head
    body_timeout: float = 30.0  # seconds a request body may pause
    keep_alive: int = 5  # seconds an idle connection is kept between requests

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        if min(self.header_timeout, self.body_timeout, self.keep_alive) <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def backlog(self) -> int:
        """The listening socket's accept queue: small next to the cap, so that a batch of
        connections accepted at once cannot push out one whose request is on its way."""
        return max(16, min(2048, self.max_connections // 4))


class ConnectionGuard:
    """The connections of one server without a complete request, oldest first."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.waiting: OrderedDict[BoundedH11Protocol, None] = OrderedDict()  # for a head
        self.receiving: OrderedDict[BoundedH11Protocol, None] = OrderedDict()  # a body
        self.open = 0  # connections not yet closed (uvicorn's set still holds closing ones)
        self.dropped = 0
        self._warned_at = -CAP_WARNING_INTERVAL

    def make_room(self, newcomer: BoundedH11Protocol) -> None:
        """Close the longest-waiting connections while there are more than the cap."""
        while self.open > self.limits.max_connections:
            victim = next(iter(self.waiting), None) or next(iter(self.receiving), None) or newcomer
            victim.drop()
            self.dropped += 1
            if victim is newcomer:
                break
        now = time.monotonic()
        if now - self._warned_at >= CAP_WARNING_INTERVAL:
            self._warned_at = now
            log.warning(
                "%d connections open, the most this server holds: closing those that wait "
                "longest without a request (%d closed so far)",
                self.limits.max_connections, self.dropped,
            )


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, each connection under its server's :class:`ConnectionGuard`."""

    guard: ConnectionGuard  # set on the subclass that bounded_protocol() makes per server

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None
        self.phase = "new"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.open += 1
        self.follow_request()
        if self.guard.open > self.guard.limits.max_connections:
            self.guard.make_room(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.set_phase("closed", None)
        super().connection_lost(exc)

    def drop(self) -> None:
        self.set_phase("closed", None)
        self.transport.close()

    def follow_request(self) -> None:
        """Put the connection where its request stands: waiting for a head, receiving a
        body (a deadline renewed by every read), or answered (no deadline)."""
        if self.transport.is_closing():
            self.set_phase("closed", None)
        elif self.conn.their_state is h11.IDLE:
            if self.phase != "head":  # the head's deadline runs from when it was awaited
                self.set_phase("head", self.guard.limits.header_timeout)
        elif self.conn.their_state is h11.SEND_BODY:
            self.set_phase("body", self.guard.limits.body_timeout)
        else:
            self.set_phase("answering", None)

    def set_phase(self, phase: str, timeout: float | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.guard.waiting.pop(self, None)
        self.guard.receiving.pop(self, None)
        if phase == "closed" and self.phase != "closed":
            self.guard.open -= 1
        self.phase = phase
        if phase == "head":
            self.guard.waiting[self] = None
        elif phase == "body":
            self.guard.receiving[self] = None
        if timeout is not None:
            self.deadline = self.loop.call_later(timeout, self.drop)


def bounded_protocol(limits: ConnectionLimits) -> type[BoundedH11Protocol]:
    """The protocol class for one server: its connections share one guard."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"guard": ConnectionGuard(limits)})
