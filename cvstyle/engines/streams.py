"""Several forwards of one network at once, for throughput work (folders, videos).

A network loaded with ``streams`` > 1 splits the cores between that many independent
executors (OpenVINO infer requests, ONNX Runtime sessions), each on its own share of
threads. Two photos then run side by side without the synchronisation points that two
threads of one forward meet at every layer, which a decoder or an encoder thread
interrupting one of them turns into waiting for both: more photos per second, each
photo slower. One photo at a time (a single photo, live, the web app) keeps one
stream, all cores on it.
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Generic, TypeVar

THROUGHPUT_STREAMS = 2  # measured against 1 and against more on 2 cores: docs/benchmarks.md

Executor = TypeVar("Executor")
Item = TypeVar("Item")


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def throughput_streams() -> int:
    """Streams for throughput work on this machine: :data:`THROUGHPUT_STREAMS`, no more
    than the cores."""
    return max(1, min(THROUGHPUT_STREAMS, cpu_count()))


def threads_per_stream(streams: int) -> int:
    """Each stream's share of the cores."""
    return max(1, cpu_count() // streams)


class Idle(Generic[Executor]):
    """Interchangeable executors of one network; :meth:`take` lends a free one."""

    def __init__(self, executors: list[Executor]):
        self.free: queue.SimpleQueue[Executor] = queue.SimpleQueue()
        for executor in executors:
            self.free.put(executor)

    @contextlib.contextmanager
    def take(self) -> Iterator[Executor]:
        executor = self.free.get()
        try:
            yield executor
        finally:
            self.free.put(executor)


def in_order(items: Iterable[Item], start: Callable[[Item], Future | None], ahead: int) -> Iterator[tuple[Item, Future | None]]:
    """``(item, start(item))`` in the order of ``items``, where ``start`` hands an item's
    work to threads (a future) or passes it on as it is (None); up to ``ahead`` items'
    work is started beyond the one handed out, so that ``ahead`` painters stay busy
    while the caller finishes the oldest."""
    held: deque[tuple[Item, Future | None]] = deque()
    running = 0
    for item in items:
        future = start(item)
        held.append((item, future))
        running += future is not None
        while held and (running > ahead or held[0][1] is None):
            oldest = held.popleft()
            running -= oldest[1] is not None
            yield oldest
    yield from held
