"""Idle and half-sent connections against ``cvstyle serve``, on the loopback interface only.

    python benchmarks/web_idle_connections.py [--connections 20000] [--hold 15] [--quick]

Starts the real server (``cvstyle serve`` in a child process on 127.0.0.1, default
options unless ``--server-option`` adds some), then attacker processes open
``--connections`` TCP connections to it as fast as they can: half send nothing, half
send the first line of a request and stop. They hold them for ``--hold`` seconds.
Meanwhile a fresh connection asks ``GET /health`` every ``--probe-interval`` seconds.

Prints how long the probes took (each must be answered 200 within ``--deadline``
seconds), how many attacking connections the server closed, the server's peak open
file descriptors and resident memory, and the size of its log (which must hold no
traceback). Exits 1 if a probe failed or was late, or the log holds a traceback.
Bounded: at most ``--connections`` sockets, ``--hold`` seconds, one host (127.0.0.1).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from web_load import rss_mb, start_server

HOST = "127.0.0.1"
HALF_SENT = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: the head never ends
FILE_RESERVE = 200  # descriptors a process keeps for everything but the attack's sockets


def raise_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- the attacker (a child process)


def attack(port: int, count: int, half_sent: bool, hold: float, rate: float) -> dict[str, int]:
    """Open ``count`` connections, ``rate`` a second, optionally send a partial head, hold;
    count what happened."""
    sockets: list[socket.socket] = []
    failed = 0
    start = time.monotonic()
    for opened in range(count):
        if opened % 50 == 0:  # paced in small bursts
            time.sleep(max(0.0, start + opened / rate - time.monotonic()))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((HOST, port))
        if code in (0, errno.EINPROGRESS):
            sockets.append(sock)
        else:
            failed += 1
            sock.close()
    opened_by = time.monotonic()
    if half_sent:
        for sock in sockets:
            try:
                sock.send(HALF_SENT)
            except OSError:
                pass  # still connecting, or already closed by the server: it stays idle
    time.sleep(max(0.0, opened_by + hold - time.monotonic()))
    closed = 0
    for sock in sockets:  # looked at once, at the end: an attacker's polling would steal the CPU
        try:
            closed += sock.recv(4096) == b""
        except BlockingIOError:
            pass  # still open
        except OSError:
            closed += 1  # reset by the server
    for sock in sockets:
        # A reset, not a close: no TIME_WAIT left holding the loopback's ephemeral ports.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return {"opened": len(sockets), "failed": failed, "closed_by_server": closed}


# ---------------------------------------------------------------- the observer


def probe(port: int, timeout: float) -> tuple[float, str]:
    """Seconds for ``GET /health`` on a fresh connection, and the problem if any."""
    start = time.perf_counter()
    connected = None
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            connected = time.perf_counter() - start
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError as error:
        stage = "connecting" if connected is None else f"connected in {connected:.2f} s"
        return time.perf_counter() - start, f"{type(error).__name__}: {error} ({stage})"
    seconds = time.perf_counter() - start
    status = answer.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        return seconds, f"answered {status[:60]!r} (connected in {connected:.2f} s)"
    return seconds, "" if seconds <= 1 else f"(connected in {connected:.2f} s)"


class ServerWatch(threading.Thread):
    """The server's open descriptors and resident memory, sampled every 50 ms (peaks kept)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_files = 0
        self.peak_rss_mb = 0.0
        self.cpu_seconds = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            try:
                files = len(os.listdir(f"/proc/{self.pid}/fd"))
                rss = rss_mb(self.pid)
            except OSError:
                return
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            self.cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            self.peak_files = max(self.peak_files, files)
            self.peak_rss_mb = max(self.peak_rss_mb, rss)


def run_attack(args, port: int, limit: int) -> tuple[list[dict], list[tuple[float, str]]]:
    per_process = max(1, min(limit - FILE_RESERVE, 5000))
    processes = max(2, math.ceil(args.connections / per_process))
    shares = [args.connections // processes + (i < args.connections % processes) for i in range(processes)]
    attackers = [
        subprocess.Popen(
            [
                sys.executable, __file__, "--attacker", str(port), str(share), str(i % 2),
                str(args.hold), str(args.rate / processes),
            ],
            stdout=subprocess.PIPE, text=True,
        )
        for i, share in enumerate(shares)
    ]
    probes = []
    end = time.monotonic() + args.connections / args.rate + args.hold + 2
    while time.monotonic() < end:
        probes.append(probe(port, max(5.0, args.deadline * 5)))
        time.sleep(args.probe_interval)
    results = [json.loads(attacker.communicate(timeout=args.connections / args.rate + args.hold + 60)[0]) for attacker in attackers]
    probes.append(probe(port, 5.0))  # and after the attack
    return results, probes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument(
        "--rate", type=float, default=2000, help="connections opened per second, all attackers together"
    )
    parser.add_argument("--hold", type=float, default=15, help="seconds the attackers hold their sockets")
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds a /health probe may take")
    parser.add_argument("--server-option", action="append", default=[], help="passed to cvstyle serve")
    parser.add_argument("--quick", action="store_true", help="2,000 connections held 5 s")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.hold = 2000, 5.0
    if not 0 < args.connections <= 50_000 or not 0 < args.hold <= 120:
        parser.error("keep it bounded: 1-50000 connections, held 120 s at most")
    limit = raise_file_limit()

    with tempfile.TemporaryDirectory() as temp:
        os.environ["CVSTYLE_HOME"] = temp  # an empty store: nothing to download or hash
        log = Path(temp) / "server.log"
        server, url = start_server(args.server_option, log)
        port = int(url.rpartition(":")[2])
        watch = ServerWatch(server.pid)
        try:
            probe(port, 5.0)  # the app's first request
            watch.start()
            results, probes = run_attack(args, port, limit)
        finally:
            watch.stopped.set()
            server.terminate()
            server.wait(10)
        text = log.read_text(errors="replace")

    late = [(seconds, problem) for seconds, problem in probes if problem or seconds > args.deadline]
    times = sorted(seconds for seconds, problem in probes if not problem)
    tracebacks = text.count("Traceback (most recent call last)")
    opened = sum(r["opened"] for r in results)
    print(f"{args.connections} connections attempted on {HOST}, {args.rate:.0f} a second "
          f"(half idle, half half-sent), held {args.hold:.0f} s; file limit {limit}")
    print(f"  opened: {opened}   refused at connect: {sum(r['failed'] for r in results)}   "
          f"closed by the server by the end: {sum(r['closed_by_server'] for r in results)}")
    if times:
        print(f"  /health probes: {len(probes)}, answered {len(times)}; "
              f"median {statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    print(f"  server: peak open files {watch.peak_files}, peak memory {watch.peak_rss_mb:.0f} MB, "
          f"CPU {watch.cpu_seconds:.1f} s")
    print(f"  server log: {len(text.splitlines())} lines, {len(text.encode()) / 1e3:.1f} kB, "
          f"{tracebacks} tracebacks")
    for seconds, problem in late[:5]:
        print(f"  LATE OR FAILED probe: {seconds:.2f} s {problem}")
    ok = not late and tracebacks == 0
    print("  result: PASS" if ok else "  result: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--attacker":
        raise_file_limit()
        port, count, half_sent, hold, rate = sys.argv[2:]
        print(json.dumps(attack(int(port), int(count), half_sent == "1", float(hold), float(rate))))
        sys.exit(0)
    sys.exit(main())
