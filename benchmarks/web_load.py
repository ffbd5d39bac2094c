"""Load test of ``cvstyle serve``: many concurrent uploads on the loopback interface.

    python benchmarks/web_load.py [--requests 50] [--workers 2] [--queue-size 8] [--size 512]
    python benchmarks/web_load.py --decode-bombs 10 [--bomb-size 7000] [--bomb-depth 16]

Starts the real server (``cvstyle serve`` in a child process, on 127.0.0.1 only) with
an architecture-faithful instance_norm fixture model (the same layers and shapes as the
published checkpoints, so the same work per photo), sends ``--requests`` uploads of the
bundled cat photo at once, and checks that every one is answered with a JPEG of the
requested size or a 503 carrying Retry-After: none hangs past ``--timeout``, none is
lost or fails otherwise. The server's resident memory is sampled throughout. Prints
throughput, p50/p95 latency and memory; exits 1 if any check fails.

``--decode-bombs N`` sends instead N small PNGs of many large pixels at once (all zero,
``--bomb-size`` pixels square, RGBA, ``--bomb-depth`` bits a sample: a 7000 px 16-bit
one is 392 MB of pixels in a 0.4 MB file) and prints the answers and the server's
memory: what one decompression-bomb attack costs it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np

from cvstyle.testing import write_fixture_model

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"  # 451 x 300
MODEL = "local/load_fixture"


@dataclass
class Outcome:
    status: int | None  # None: no answer (timeout or connection error)
    seconds: float
    problem: str = ""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class MemoryWatch(threading.Thread):
    """A process's resident memory when started, and its peak, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.baseline = self.peak = rss_mb(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))


def start_server(options: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``cvstyle serve`` on 127.0.0.1 with ``options``, in a child process; its URL."""
    command = [
        sys.executable, "-c", "from cvstyle.cli import run; run()", "serve",
        "--host", "127.0.0.1", "--port", "0", *options,
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # uvicorn says which port it got
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return server, found.group(1)
        if server.poll() is not None:
            break
        time.sleep(0.05)
    server.kill()
    sys.exit(f"the server did not start:\n{log.read_text()}")


async def upload(client: httpx.AsyncClient, photo: bytes, size: int, timeout: float) -> Outcome:
    start = time.perf_counter()
    try:
        response = await client.post(
            "/api/stylize", files={"image": ("chelsea.png", photo, "image/png")},
            data={"model": MODEL, "size": str(size)}, timeout=timeout,
        )
    except httpx.HTTPError as error:
        return Outcome(None, time.perf_counter() - start, f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    if response.status_code == 200:
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        if image is None or max(image.shape[:2]) != size:
            return Outcome(200, seconds, "not a JPEG of the requested size")
    elif response.status_code == 503:
        if not response.headers.get("Retry-After", "").isdigit():
            return Outcome(503, seconds, "503 without Retry-After")
    else:
        return Outcome(response.status_code, seconds, response.text[:200])
    return Outcome(response.status_code, seconds)


async def load(url: str, args, pid: int) -> tuple[list[Outcome], float, MemoryWatch]:
    photo = SAMPLE.read_bytes()
    limits = httpx.Limits(max_connections=args.requests)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        warm_up = await upload(client, photo, args.size, args.timeout)  # loads the network
        if warm_up.status != 200 or warm_up.problem:
            sys.exit(f"the warm-up upload failed: {warm_up}")
        watch = MemoryWatch(pid)  # the baseline includes the loaded network
        watch.start()
        start = time.perf_counter()
        outcomes = await asyncio.gather(
            *(upload(client, photo, args.size, args.timeout) for _ in range(args.requests))
        )
        wall = time.perf_counter() - start
        watch.stopped.set()
        return outcomes, wall, watch


def bomb_png(size: int, depth: int) -> bytes:
    """An all-zero RGBA PNG, ``size`` pixels square, ``depth`` bits a sample."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    packer = zlib.compressobj(9)
    row = bytes(1 + size * 4 * depth // 8)  # filter byte, then the samples
    body = b"".join(packer.compress(row) for _ in range(size)) + packer.flush()
    header = size.to_bytes(4, "big") * 2 + bytes([depth, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


async def send_bombs(url: str, args, pid: int) -> tuple[list[int], MemoryWatch]:
    bomb = bomb_png(args.bomb_size, args.bomb_depth)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as client:
        watch = MemoryWatch(pid)
        watch.start()
        answers = await asyncio.gather(*(
            client.post("/api/stylize", files={"image": ("bomb.png", bomb, "image/png")},
                        data={"model": "sketch", "size": "256"})
            for _ in range(args.decode_bombs)
        ), return_exceptions=True)
        watch.stopped.set()
    print(f"{args.decode_bombs} PNGs of {args.bomb_size}x{args.bomb_size} RGBA, "
          f"{args.bomb_depth}-bit ({len(bomb) / 1e3:.0f} kB each) sent at once")
    outcomes = [
        f"{a.status_code}: {a.text[:150]}" if isinstance(a, httpx.Response)
        else f"no answer within {args.timeout:.0f} s ({type(a).__name__})"
        for a in answers
    ]
    for outcome in sorted(set(outcomes)):
        print(f"  {outcomes.count(outcome)} x {outcome}")
    print(f"  server memory: {watch.baseline:.0f} MB before, peak {watch.peak:.0f} MB")
    return [getattr(a, "status_code", None) for a in answers], watch


def run_bombs(args) -> int:
    with tempfile.TemporaryDirectory() as temp:
        server, url = start_server(["--workers", str(args.workers)], Path(temp) / "server.log")
        try:
            asyncio.run(send_bombs(url, args, server.pid))
        finally:
            server.kill()  # it may be busy decoding for minutes
            server.wait(10)
    return 0


def p50_p95(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")  # every 5 %
    return cuts[9], cuts[18]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="processing size (longer side)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds until an upload counts as hung")
    parser.add_argument(
        "--max-rss-growth-mb", type=float, default=400, help="allowed growth of the server's memory"
    )
    parser.add_argument("--decode-bombs", type=int, default=0, help="send this many PNG bombs instead")
    parser.add_argument("--bomb-size", type=int, default=7000)
    parser.add_argument("--bomb-depth", type=int, choices=(8, 16), default=16)
    args = parser.parse_args()
    if args.decode_bombs:
        return run_bombs(args)

    with tempfile.TemporaryDirectory() as temp:
        model = write_fixture_model(Path(temp) / "load_fixture.t7", "instance_norm", seed=1)
        log = Path(temp) / "server.log"
        options = [
            "--workers", str(args.workers), "--queue-size", str(args.queue_size),
            "--model-file", str(model),
        ]
        server, url = start_server(options, log)
        try:
            outcomes, wall, watch = asyncio.run(load(url, args, server.pid))
        finally:
            server.terminate()
            server.wait(10)
        request_lines = log.read_text().count("POST /api/stylize")

    done = [o for o in outcomes if o.status == 200 and not o.problem]
    busy = [o for o in outcomes if o.status == 503 and not o.problem]
    failed = [o for o in outcomes if o.problem]
    latencies = [o.seconds for o in done]
    print(f"{args.requests} concurrent uploads of {SAMPLE.name} at {args.size} px; "
          f"{args.workers} workers, queue {args.queue_size}; instance_norm fixture model")
    print(f"  stylized: {len(done)}   503 busy: {len(busy)}   failed or hung: {len(failed)}")
    print(f"  wall time: {wall:.2f} s   throughput: {len(done) / wall:.2f} images/s")
    if latencies:
        p50, p95 = p50_p95(latencies)
        print(f"  latency of stylized uploads: p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(latencies):.2f} s")
    if busy:
        p50, p95 = p50_p95([o.seconds for o in busy])
        print(f"  latency of 503 answers: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    growth = watch.peak - watch.baseline
    print(f"  server memory: {watch.baseline:.0f} MB after warm-up, "
          f"peak {watch.peak:.0f} MB (+{growth:.0f} MB)")
    print(f"  request log lines: {request_lines} for {args.requests + 1} uploads (warm-up included)")
    for outcome in failed[:5]:
        print(f"  FAILED: status {outcome.status} after {outcome.seconds:.1f} s: {outcome.problem}")
    ok = (
        not failed and len(done) + len(busy) == args.requests and done
        and growth <= args.max_rss_growth_mb and request_lines == args.requests + 1
    )
    print("  result: PASS" if ok else "  result: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
