"""The server around the app: ``cvstyle serve``, and hostile clients (paths in errors,
security headers, idle and half-sent connections, exhausted file descriptors,
decompression bombs)."""

from __future__ import annotations

import inspect
import logging
import re
import resource
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'cvstyle[web]'")
httpx = pytest.importorskip("httpx", reason="httpx is needed to test the web API")

from cvstyle import store  # noqa: E402
from cvstyle.catalogue import load_catalogue  # noqa: E402
from cvstyle.cli import main  # noqa: E402
from cvstyle.errors import ImageError  # noqa: E402
from cvstyle.imageio import decode_image  # noqa: E402
from cvstyle.testing import write_fixture_model  # noqa: E402
from cvstyle.web import create_app, default_models, file_model  # noqa: E402
from cvstyle.web.connections import ConnectionLimits  # noqa: E402
from cvstyle.web.server import OneLinePerMinute  # noqa: E402
from servers import running_server  # noqa: E402
from web_helpers import decoded, stylize  # noqa: E402

WAIT = 15  # seconds before a test gives up waiting for the server to act


@pytest.fixture
def wave_model(tmp_path) -> Path:
    return write_fixture_model(tmp_path / "wave.t7", "instance_norm", 5)


@pytest.fixture
def store_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cvstyle_home"
    monkeypatch.setenv("CVSTYLE_HOME", str(home))
    return home


def bomb_png(width: int, height: int, bit_depth: int = 16, colour_type: int = 6) -> bytes:
    """A valid PNG of zeros, a few hundred kB however many pixels it declares."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + width * channels * bit_depth // 8)  # filter byte, then the samples
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- no server path in errors


def test_error_bodies_name_the_model_never_a_server_path(store_home, tmp_path):
    (tmp_path / "private").mkdir()
    gone = write_fixture_model(tmp_path / "private" / "gone.t7", "instance_norm", 3)
    broken = write_fixture_model(tmp_path / "private" / "broken.t7", "instance_norm", 4)
    models = default_models() + [file_model(gone, "test/gone"), file_model(broken, "test/broken")]
    app = create_app(models, workers=1, queue_size=2)
    gone.unlink()  # removed while the server runs
    broken.write_bytes(b"\x00" * 64)  # and another overwritten
    candy = load_catalogue().lookup("instance_norm/candy")
    store.model_path(candy).parent.mkdir(parents=True)
    store.model_path(candy).write_bytes(b"not the model")  # a corrupt download
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        answers = {
            "test/gone": stylize(client, model="test/gone", size=96),
            "test/broken": stylize(client, model="test/broken", size=96),
            "instance_norm/candy": stylize(client, model="instance_norm/candy", size=96),
            "preview of test/gone": client.get("/api/models/test/gone/preview.jpg"),
            "preview of instance_norm/candy": client.get("/api/models/instance_norm/candy/preview.jpg"),
        }
    for what, response in answers.items():
        assert response.status_code in (409, 422), (what, response.text)
        message = response.json()["detail"]
        assert str(tmp_path) not in message and "private" not in message, (what, message)
        assert not re.search(r"(^|[\s'`(])/\w", message), (what, message)  # no absolute path
    assert "test/gone" in answers["test/gone"].json()["detail"]
    assert "instance_norm/candy" in answers["instance_norm/candy"].json()["detail"]
    assert "corrupt" in answers["instance_norm/candy"].json()["detail"]


# ---------------------------------------------------------------- security headers


def test_every_response_carries_the_security_headers(store_home, instance_norm_model):
    app = create_app([file_model(instance_norm_model, "test/wave")], max_upload_bytes=1_000_000)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        responses = {
            "page": client.get("/"),
            "health": client.get("/health"),
            "models": client.get("/api/models"),
            "script": client.get("/static/app.js"),
            "openapi": client.get("/openapi.json"),
            "404": client.get("/api/models/nothing/preview.jpg"),
            "422": stylize(client, model="../etc/passwd", size=96),
            "413": stylize(client, bytes(2_000_000), model="test/wave"),
            "400": stylize(client, b"text", model="test/wave"),
            "405": client.delete("/health"),
            "painted": stylize(client, model="test/wave", size=96),
        }
    assert responses["painted"].status_code == 200
    for what, response in responses.items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["x-frame-options"] == "DENY", what
        assert headers["referrer-policy"] == "no-referrer", what
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
    assert "default-src 'self'" in responses["page"].headers["content-security-policy"]


# ---------------------------------------------------------------- idle and half-sent connections


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` within WAIT seconds."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass  # a 408 or similar before the close is fine
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
def guarded_server(store_home) -> Iterator[tuple[str, int]]:
    limits = ConnectionLimits(max_connections=20, header_timeout=1, body_timeout=1, keep_alive=1)
    with running_server(create_app([]), limits=limits) as url:
        yield url, int(url.rpartition(":")[2])


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n",
     b"POST /api/stylize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"],
    ids=["nothing", "half a head", "half a body"],
)
def test_a_connection_that_stops_sending_is_closed(guarded_server, sent):
    _, port = guarded_server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        assert closed_by_server(sock)


def test_past_the_connection_cap_the_longest_idle_go_and_health_answers(store_home, caplog):
    limits = ConnectionLimits(max_connections=20, header_timeout=60)
    with caplog.at_level(logging.INFO, logger="cvstyle.web"), \
            running_server(create_app([]), limits=limits) as url:
        port = int(url.rpartition(":")[2])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        try:
            with httpx.Client(base_url=url, timeout=WAIT) as client:
                assert client.get("/health").json()["status"] == "ok"
            assert closed_by_server(idle[0])  # the oldest made room, long before its 60 s
            idle[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert idle[-1].recv(4096).startswith(b"HTTP/1.1 200")  # the newest is still served
        finally:
            for sock in idle:
                sock.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "20 connections open, the most this server holds" in warnings[0]


def test_serve_under_a_small_file_limit_caps_connections_and_keeps_its_log_short(
    store_home, tmp_path
):
    # 300 idle connections against 256 file descriptors: without a cap the server runs out
    # of descriptors, stops answering and logs a traceback per refused connection.
    log = tmp_path / "serve.log"

    def small_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    command = [
        sys.executable, "-c", "from cvstyle.cli import run; run()", "serve", "--port", "0",
    ]
    with log.open("w") as stderr:
        server = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=small_file_limit
        )
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"running on http://127\.0\.0\.1:(\d+)", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = int(found.group(1))
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            assert client.get("/health").json()["status"] == "ok"
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(10)
    text = log.read_text()
    assert "Traceback" not in text
    assert "the open-file limit (256) holds 102 connections, not 1000" in text
    assert len(text.splitlines()) < 20, text


def test_accept_errors_are_one_line_a_minute():
    quiet = OneLinePerMinute()
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        exc_info = sys.exc_info()
    records = [
        logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource", (), exc_info)
        for _ in range(1000)
    ]
    kept = [record for record in records if quiet.filter(record)]
    assert len(kept) == 1
    assert kept[0].exc_info is None
    assert kept[0].getMessage() == "socket.accept() out of system resource: [Errno 24] Too many open files"
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "something else", (), None)
    assert quiet.filter(other)


# ---------------------------------------------------------------- decompression bombs


def test_decode_image_bounds_the_memory_of_the_decoded_pixels():
    sixteen_bit = bomb_png(100, 100, 16, 6)  # 100 x 100 x 4 channels x 2 bytes = 80,000 bytes
    assert decode_image(sixteen_bit, "ok.png", max_bytes=80_000).bgr.shape == (100, 100, 3)
    with pytest.raises(ImageError, match=r"^big\.png: decoding this 100x100 PNG image would take 0\.1 MB"):
        decode_image(sixteen_bit, "big.png", max_bytes=79_999)
    eight_bit = bomb_png(100, 100, 8, 2)  # counted as four 8-bit channels: 40,000 bytes
    assert decode_image(eight_bit, max_bytes=40_000).bgr.shape == (100, 100, 3)


def test_the_web_default_refuses_a_small_png_of_large_16_bit_pixels_before_decoding():
    bomb = bomb_png(7000, 7000, 16, 6)  # 392 MB of pixels in a file of a few hundred kB
    assert len(bomb) < 1_000_000
    web_default = inspect.signature(create_app).parameters["max_image_bytes"].default
    with pytest.raises(ImageError, match=r"would take 392\.0 MB, above the limit of 200\.0 MB"):
        decode_image(bomb, "bomb.png", max_bytes=web_default)


def test_the_server_refuses_an_image_over_its_memory_limit(store_home):
    app = create_app(default_models()[:1], max_image_bytes=1_000_000)  # the built-in sketch
    wide = bomb_png(400, 400, 16, 6)  # 1.28 MB decoded
    flat = cv2.imencode(".png", np.full((400, 400, 3), 200, np.uint8))[1].tobytes()  # 0.64 MB
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        refused = client.post(
            "/api/stylize", files={"image": ("deep.png", wide, "image/png")}, data={"model": "sketch"}
        )
        accepted = client.post(
            "/api/stylize", files={"image": ("flat.png", flat, "image/png")}, data={"model": "sketch"}
        )
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "deep.png: decoding this 400x400 PNG image would take 1.3 MB, above the limit of 1.0 MB "
        "(possible decompression bomb)"
    )
    assert accepted.status_code == 200


# ---------------------------------------------------------------- cvstyle serve


def test_serve_starts_the_app_on_loopback(store_home, wave_model, tmp_path):
    log = tmp_path / "serve.log"
    command = [
        sys.executable, "-c", "from cvstyle.cli import run; run()", "serve", "--port", "0",
        "--workers", "1", "--model-file", str(wave_model), "--engine", "opencv",
    ]
    with log.open("w") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with httpx.Client(base_url=found.group(1), timeout=60) as client:
            assert client.get("/health").json()["workers"] == 1
            assert "local/wave" in [model["name"] for model in client.get("/api/models").json()]
            decoded(stylize(client, model="local/wave", size=64))
    finally:
        server.terminate()
        server.wait(10)
    request_line = r"cvstyle\.web 127\.0\.0\.1 POST /api/stylize 200 \d+ms model=local/wave size=64"
    assert len(re.findall(request_line, log.read_text())) == 1
    assert log.read_text().count("cvstyle.web model local/wave loaded: opencv on cpu, exact") == 1


def test_serve_without_the_web_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve"]) == 1
    assert capsys.readouterr().err == (
        "cvstyle: error: the web app needs FastAPI and uvicorn: pip install -e '.[web]'\n"
    )
