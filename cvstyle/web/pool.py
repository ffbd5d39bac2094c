"""The worker pool: decoding, inference and encoding off the event loop, with bounded waiting.

Past ``workers + queue_size`` admitted jobs the server answers 503 with Retry-After
rather than queueing without limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"server busy, retry in {retry_after} s")
        self.retry_after = retry_after


class WorkerPool:
    """``workers`` threads, with at most ``queue_size`` admitted jobs waiting for one.

    Admission runs on the event loop's thread only, so a plain counter is safe there;
    it drops when the job itself finishes (not when its caller stops waiting), so a
    client that disconnects cannot make the pool over-admit.
    """

    def __init__(self, workers: int, queue_size: int):
        if workers < 1 or queue_size < 0:
            raise ValueError("need at least one worker and a queue size of zero or more")
        self.workers = workers
        self.capacity = workers + queue_size
        self.pending = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cvstyle-web")
        self._mean_seconds = 1.0  # running mean of a job's own run time, for Retry-After

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: one job's usual run time."""
        return max(1, math.ceil(self._mean_seconds))

    async def run(self, job: Callable[[], T], admit: bool = True) -> T:
        """Run ``job`` on a worker; with ``admit``, raise :class:`Busy` instead of over-queueing.

        ``admit=False`` is for the bounded set of preview jobs, which must not be refused.
        """
        if admit and self.pending >= self.capacity:
            raise Busy(self.retry_after())
        loop = asyncio.get_running_loop()
        future: Future[T] = self._executor.submit(self._timed, job)
        if admit:
            self.pending += 1
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(future)

    def _timed(self, job: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return job()
        finally:  # an unlocked update from several threads: an estimate is all it needs
            self._mean_seconds += 0.2 * (time.perf_counter() - start - self._mean_seconds)

    def _release(self) -> None:
        self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
