"""The HTTP API against a real uvicorn server on 127.0.0.1, with fixture and built-in models."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'cvstyle[web]'")
httpx = pytest.importorskip("httpx", reason="httpx is needed to test the web API")

from cvstyle import engines, store, stylizer  # noqa: E402
from cvstyle.errors import CvstyleError, ModelError  # noqa: E402
from cvstyle.testing import write_fixture_model  # noqa: E402
from cvstyle.stylizer import load_model  # noqa: E402
from cvstyle.web import create_app, default_models, file_model  # noqa: E402
from cvstyle.web.routes import JPEG_QUALITY  # noqa: E402
from servers import running_server  # noqa: E402
from web_helpers import SAMPLES, decoded, detail, stylize  # noqa: E402

MAX_UPLOAD = 1_000_000
MAX_SIZE = 400


@pytest.fixture(scope="module")
def store_home(tmp_path_factory) -> Iterator[Path]:
    """An empty model store: catalogue models are listed but not downloaded."""
    home = tmp_path_factory.mktemp("cvstyle_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CVSTYLE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def wave_model(tmp_path_factory) -> Path:
    return write_fixture_model(tmp_path_factory.mktemp("web_models") / "wave.t7", "instance_norm", 5)


@pytest.fixture(scope="module")
def server(store_home, wave_model, eccv16_model) -> Iterator[str]:
    models = default_models() + [
        file_model(wave_model, "test/wave", "Test wave"),
        file_model(eccv16_model, "test/eccv16"),
    ]
    app = create_app(models, workers=2, queue_size=4, max_upload_bytes=MAX_UPLOAD, max_size=MAX_SIZE)
    with running_server(app) as url:
        yield url


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


# ---------------------------------------------------------------- success


@pytest.mark.parametrize("model", ["test/wave", "test/eccv16", "sketch"])
def test_stylize_returns_a_painted_jpeg_of_the_requested_size(client, model):
    response = stylize(client, model=model, size=200)
    painted = decoded(response)
    assert painted.shape == (133, 200, 3)
    photo = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), (200, 133), interpolation=cv2.INTER_AREA)
    assert np.abs(painted.astype(int) - photo).mean() > 10  # really painted, not the photo back
    assert response.headers["content-disposition"].startswith(
        f'inline; filename="chelsea_{model.rpartition("/")[2]}.jpg"'
    )


def test_without_size_the_photo_keeps_its_size_up_to_the_server_maximum(client):
    small = cv2.imencode(".png", cv2.imread(str(SAMPLES / "chelsea.png"))[:150, :200])[1].tobytes()
    assert decoded(stylize(client, small)).shape == (150, 200, 3)
    assert decoded(stylize(client)).shape == (266, MAX_SIZE, 3)  # 451 x 300 scaled to 400


def test_strength_zero_returns_the_photo_and_preserve_colors_keeps_its_chroma(client):
    photo = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), (200, 133), interpolation=cv2.INTER_AREA)
    unchanged = decoded(stylize(client, size=200, strength=0))
    photo_jpeg = cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1], 1)
    assert np.abs(unchanged.astype(int) - photo_jpeg).max() <= 1

    def chroma(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)[..., 1:].astype(int)

    plain = decoded(stylize(client, size=200))
    kept = decoded(stylize(client, size=200, preserve_colors="true"))
    assert np.abs(chroma(kept) - chroma(photo)).mean() < 2
    assert np.abs(chroma(plain) - chroma(photo)).mean() > 5
    half = decoded(stylize(client, size=200, strength=0.5))
    assert np.abs(half.astype(int) - photo).mean() < np.abs(plain.astype(int) - photo).mean()


def test_download_name_keeps_a_non_ascii_photo_name(client):
    response = stylize(client, name="chat été.png", size=100)
    decoded(response)
    disposition = response.headers["content-disposition"]
    assert 'filename="chat _t__wave.jpg"' in disposition
    assert "filename*=UTF-8''chat%20%C3%A9t%C3%A9_wave.jpg" in disposition


def test_transparent_png_is_painted_over_white(client):
    bgra = np.zeros((64, 96, 4), np.uint8)  # fully transparent, black underneath
    painted = decoded(stylize(client, cv2.imencode(".png", bgra)[1].tobytes(), model="sketch"))
    assert painted.shape == (64, 96, 3)
    assert painted.mean() > 180  # the sketch draws white paper as paper, not black as graphite


# ---------------------------------------------------------------- refusals


def test_unknown_model_is_404(client):
    assert "unknown model 'nothing_like_this'" in detail(stylize(client, model="nothing_like_this"), 404)
    message = detail(stylize(client, model="la_muse"), 404)  # two families have one
    assert message == "model name 'la_muse' is ambiguous: use one of eccv16/la_muse, instance_norm/la_muse"


# ---------------------------------------------------------------- model specs, as the CLI reads them


def test_a_short_name_resolves_as_the_cli_does_with_the_same_409(client):
    with pytest.raises(ModelError) as cli_error:
        store.locate_model("candy")  # what `cvstyle apply -m candy` reports
    assert detail(stylize(client, model="candy"), 409) == str(cli_error.value)
    assert "instance_norm/candy is not downloaded" in str(cli_error.value)
    assert client.get("/api/models/udnie/preview.jpg").status_code == 409


def test_a_mix_of_styles_is_painted_and_named_like_the_cli(client):
    sketch = decoded(stylize(client, model="sketch", size=200)).astype(int)
    wave = decoded(stylize(client, model="test/wave", size=200)).astype(int)
    response = stylize(client, model="sketch:0.5+test/wave:0.5", size=200)
    mixed = decoded(response).astype(int)
    assert np.abs(mixed - (sketch + wave) / 2).mean() < 6  # the average (three JPEGs apart)
    assert np.abs(mixed - sketch).mean() > 10 and np.abs(mixed - wave).mean() > 10
    assert 'filename="chelsea_sketch+wave.jpg"' in response.headers["content-disposition"]


@pytest.mark.parametrize(
    "spec, status, expected",
    [("sketch:0.5+candy:0.5", 409, "model instance_norm/candy is not downloaded"),
     ("sketch:-1+test/wave:1", 422, "style weights must be zero or positive numbers"),
     ("sketch:0+test/wave:0", 422, "style weights must not all be zero"),
     ("sketch:0.5+nothing_like_this:0.5", 404, "unknown model 'nothing_like_this'"),
     ("sketch+/etc/passwd", 422, "model must be a style name"),
     ("/etc/passwd:1", 422, "model must be a style name"),
     ("sketch+../../x", 422, "model must be a style name")],
)
def test_mix_errors_are_the_clis_and_a_path_is_never_a_name(client, spec, status, expected):
    assert expected in detail(stylize(client, model=spec), status)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/etc/passwd", "~/models/x.t7", "..", "a/../../b", "C:\\models\\x.t7"],
)
def test_path_like_model_names_are_refused(client, name):
    assert "not" in detail(stylize(client, model=name), 422)


def test_a_server_side_file_path_is_not_a_model_name(client, wave_model):
    # The file behind test/wave exists, but clients can only use the name.
    assert detail(stylize(client, model=str(wave_model)), 422)
    assert "unknown model" in detail(stylize(client, model="tmp/wave.t7"), 404)


def test_catalogue_model_not_downloaded_is_409_with_the_command(client):
    message = detail(stylize(client, model="instance_norm/candy"), 409)
    assert "not downloaded" in message and "cvstyle fetch-models" in message


def test_a_text_file_is_not_an_image(client):
    message = detail(stylize(client, b"hello, I am text\n", "notes.jpg"), 400)
    assert message == "notes.jpg: not an image (expected JPEG, PNG, WebP, BMP or TIFF data)"


def test_a_truncated_jpeg_is_refused(client):
    jpeg = (SAMPLES / "rocket.jpg").read_bytes()
    assert "truncated JPEG" in detail(stylize(client, jpeg[: len(jpeg) // 2], "rocket.jpg"), 400)


def test_an_empty_upload_is_refused(client):
    assert detail(stylize(client, b"", "empty.png"), 400) == "empty.png: empty file (0 bytes)"


@pytest.mark.parametrize(
    "fields, problem",
    [({"size": 10}, "size"), ({"size": MAX_SIZE + 1}, "size"), ({"strength": 1.5}, "strength"),
     ({"preserve_colors": "maybe"}, "preserve_colors")],
)
def test_bad_fields_are_422_with_the_field_named(client, fields, problem):
    assert detail(stylize(client, **fields), 422).startswith(f"{problem}:")


def test_an_oversize_upload_is_413(client):
    message = detail(stylize(client, b"\x89PNG" + bytes(MAX_UPLOAD + 100_000)), 413)
    assert message == "upload too large: the limit is 1 MB"


def test_an_oversize_chunked_upload_is_413(client):
    # No Content-Length: the server must count the bytes as they arrive.
    boundary = "cvstyle-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nsketch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(20):
            yield bytes(100_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/stylize", content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "upload too large" in detail(response, 413)


# ---------------------------------------------------------------- listing and previews


def test_models_lists_builtin_catalogue_and_server_files(client):
    models = {model["name"]: model for model in client.get("/api/models").json()}
    assert models["sketch"] == {
        "name": "sketch", "title": "Pencil sketch (built-in)", "family": "builtin",
        "available": True, "preview": "/api/models/sketch/preview.jpg",
    }
    assert models["instance_norm/candy"]["available"] is False
    assert models["instance_norm/candy"]["family"] == "instance_norm"
    assert models["eccv16/starry_night"]["title"] == "The Starry Night, Vincent van Gogh"
    assert models["test/wave"]["title"] == "Test wave"
    assert models["test/eccv16"]["family"] == "eccv16"
    assert all(model["available"] for name, model in models.items() if name.startswith("test/"))
    assert not any("/" in model["title"] and ".t7" in model["title"] for model in models.values())


def test_preview_is_the_style_on_the_bundled_sample_and_is_made_once(client, monkeypatch):
    first = client.get("/api/models/test/eccv16/preview.jpg")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR).shape == (192, 192, 3)
    monkeypatch.setattr(stylizer.Stylizer, "stylize", lambda *args, **kwargs: pytest.fail("re-made"))
    assert client.get("/api/models/test/eccv16/preview.jpg").content == first.content


def test_preview_errors(client):
    assert client.get("/api/models/instance_norm/udnie/preview.jpg").status_code == 409
    assert client.get("/api/models/nothing/preview.jpg").status_code == 404
    assert client.get("/api/models/..%2F..%2Fetc/preview.jpg").status_code == 422


def test_health_settings_page_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["workers"] == 2 and health["capacity"] == 6
    assert client.get("/api/settings").json() == {
        "max_upload_bytes": MAX_UPLOAD, "max_size": MAX_SIZE, "min_size": 64,
    }
    page = client.get("/")
    assert page.status_code == 200 and "cvstyle" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    form = client.get("/openapi.json").json()["paths"]["/api/stylize"]["post"]["requestBody"]
    schema_ref = form["content"]["multipart/form-data"]["schema"]["$ref"].rpartition("/")[2]
    fields = client.get("/openapi.json").json()["components"]["schemas"][schema_ref]["properties"]
    assert set(fields) == {"image", "model", "size", "preserve_colors", "strength"}


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="cvstyle.web"):
        stylize(client, size=100)
        client.get("/api/models/nothing/preview.jpg")
        deadline = time.monotonic() + 5  # the log line is written after the response is sent
        while len(_request_lines(caplog)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = _request_lines(caplog)
    assert len(lines) == 2
    assert " POST /api/stylize 200 " in lines[0] and "model=test/wave size=100" in lines[0]
    assert " GET /api/models/nothing/preview.jpg 404 " in lines[1]


def _request_lines(caplog) -> list[str]:
    # A model's first use adds a "model ... loaded" line: only request lines count here.
    messages = [record.getMessage() for record in caplog.records if record.name == "cvstyle.web"]
    return [message for message in messages if " loaded: " not in message]


# ---------------------------------------------------------------- engines


@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_create_app_builds_stylizers_on_the_engine(store_home, tmp_path, monkeypatch, caplog, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (cvstyle[onnx])")
        pytest.importorskip("onnx", reason="the .t7 is converted to ONNX with onnx (cvstyle[onnx])")
    path = write_fixture_model(tmp_path / f"engine_{uuid.uuid4().hex}.t7", "instance_norm", 7)
    engines_used = []
    real_load = stylizer.load_runner
    monkeypatch.setattr(
        stylizer, "load_runner", lambda p, e, *rest, **kw: engines_used.append(e) or real_load(p, e, *rest, **kw)
    )
    app = create_app([file_model(path, "test/engine")], workers=1, queue_size=2, engine=engine)
    with caplog.at_level(logging.INFO, logger="cvstyle.web"):
        with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            decoded(stylize(client, model="test/engine", size=96))
            decoded(stylize(client, model="test/engine", size=64))
    assert engines_used == [engine]
    loaded = [r.getMessage() for r in caplog.records if " loaded: " in r.getMessage()]
    assert loaded == [f"model test/engine loaded: {engine} on cpu, exact"]  # once per model load


def test_create_app_refuses_an_unknown_engine():
    with pytest.raises(CvstyleError, match="unknown engine 'tensorflow': choose one of auto, opencv, onnxruntime"):
        create_app([], engine="tensorflow")


def test_an_onnx_model_file_with_its_input_format(store_home, tmp_path):
    onnx_graphs = pytest.importorskip("onnx_graphs")
    model = onnx_graphs.channel_mask(tmp_path / "no_red.onnx")
    app = create_app([file_model(model, "test/no_red", input_format="rgb255")], workers=1, queue_size=1)
    flat = cv2.imencode(".png", np.full((48, 64, 3), (10, 120, 230), np.uint8))[1].tobytes()
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        listed = {m["name"]: m for m in client.get("/api/models").json()}
        assert listed["test/no_red"]["family"] == "onnx" and listed["test/no_red"]["available"]
        painted = decoded(stylize(client, image=flat, model="test/no_red")).astype(int)
    assert np.abs(painted - (10, 120, 0)).max() <= 3  # the red channel zeroed (JPEG rounding aside)
    with pytest.raises(ModelError, match="unknown input format 'bgr'"):
        file_model(model, input_format="bgr")


# ---------------------------------------------------------------- server behaviour


def test_each_network_is_loaded_once(store_home, tmp_path, monkeypatch):
    path = write_fixture_model(tmp_path / f"once_{uuid.uuid4().hex}.t7", "instance_norm", 7)
    loads = []
    real_runner = engines.StyleRunner  # made once per network the cache loads
    monkeypatch.setattr(
        engines, "StyleRunner", lambda network, prep, name: loads.append(Path(name)) or real_runner(network, prep, name)
    )
    app = create_app([file_model(path, "test/once")], workers=2, queue_size=2)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(4) as clients:
            sent = [clients.submit(stylize, client, model="test/once", size=96) for _ in range(4)]
        assert [future.result().status_code for future in sent] == [200] * 4
        assert client.get("/api/models/test/once/preview.jpg").status_code == 200
    assert loads == [path.resolve()]


def test_a_full_queue_answers_503_with_retry_after(store_home, wave_model):
    # Holding the network's own lock keeps the one worker busy for as long as the test
    # needs: one job runs (blocked), one waits, the third finds no room.
    _, network = load_model(wave_model)
    app = create_app([file_model(wave_model, "test/wave")], workers=1, queue_size=1)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client, \
            ThreadPoolExecutor(2) as clients:
        with network.lock:
            admitted = [clients.submit(stylize, client, size=96) for _ in range(2)]
            deadline = time.monotonic() + 10
            while client.get("/health").json()["pending"] < 2:
                assert time.monotonic() < deadline, "the two jobs were never admitted"
                time.sleep(0.01)
            refused = stylize(client, size=96)
            assert "server busy" in detail(refused, 503)
            assert int(refused.headers["Retry-After"]) >= 1
        assert [decoded(future.result(30)).shape for future in admitted] == [(64, 96, 3)] * 2
        assert client.get("/health").json()["pending"] == 0
        decoded(stylize(client, size=96))  # and it serves again


def test_concurrent_uploads_each_get_an_image_or_503(store_home, wave_model):
    # A small version of benchmarks/web_load.py: nothing hangs, nothing is lost.
    app = create_app([file_model(wave_model, "test/wave")], workers=1, queue_size=2)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        with ThreadPoolExecutor(16) as clients:
            sent = [clients.submit(stylize, client, size=128) for _ in range(16)]
        results = [future.result() for future in sent]
        painted = [decoded(response) for response in results if response.status_code == 200]
        refused = [response for response in results if response.status_code == 503]
        assert painted and len(painted) + len(refused) == 16
        assert all(image.shape == (85, 128, 3) for image in painted)
        assert all(int(response.headers["Retry-After"]) >= 1 for response in refused)
        assert client.get("/health").json()["pending"] == 0
