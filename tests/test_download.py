"""`cvstyle fetch-models` against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import (
    ModelServer,
    endless,
    raw,
    gitsha1_digest,
    model_bytes,
    redirect,
    sequence,
    serve,
    sha256_digest,
    stall,
    status,
    write_manifest,
)

from cvstyle import download
from cvstyle.catalogue import PUBLISHED_PREFIX
from cvstyle.cli import main

MODEL, OTHER = model_bytes(7), model_bytes(8)  # two valid checkpoints of the same size

LICENCE = "Free for personal or research use; for commercial use please contact me."
PATH = "/models/test/model.t7"


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def final_path(home: Path) -> Path:
    return home / "models" / "test" / "model.t7"


def part_path(home: Path) -> Path:
    return home / "models" / "test" / "model.t7.part"


def manifest_for(tmp_path: Path, url: str, digest: str) -> Path:
    return write_manifest(tmp_path / "manifest.txt", f"test/model {url} {digest} A test model")


def fetch(capsys, manifest: Path, *args: str) -> tuple[int, str, str]:
    code = main(["fetch-models", "--manifest", str(manifest), "--retry-delay", "0", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_failed_cleanly(home: Path, code: int, err: str) -> None:
    """Exit 4, one error line, and nothing under the model's final name."""
    assert code == 4
    assert "cvstyle: error: 1 of 1 models failed: test/model" in err
    assert "Traceback" not in err
    assert not final_path(home).exists()


def test_follows_a_redirect_chain(home, tmp_path, model_server, capsys):
    model_server.routes["/old/model.t7"] = redirect(model_server.url("/moved/model.t7"), 301)
    model_server.routes["/moved/model.t7"] = redirect(PATH, 302)  # relative Location
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url("/old/model.t7"), gitsha1_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert code == 0, err
    assert LICENCE not in out + err  # the licence covers Justin Johnson's models, not one's own
    assert [seen.path for seen in model_server.seen] == ["/old/model.t7", "/moved/model.t7", PATH]
    assert final_path(home).read_bytes() == MODEL
    assert not part_path(home).exists()
    assert "test/model  downloaded  3.3 MiB" in out


MOVED_PAGE = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
    b"<title>301 Moved Permanently</title>\n</head><body>\n<h1>Moved Permanently</h1>\n"
    b'<p>The document has moved <a href="https://www.cs.stanford.edu/">here</a>.</p>\n</body></html>\n'
)


@pytest.mark.parametrize("content_type", ["text/html; charset=iso-8859-1", "application/octet-stream"])
def test_refuses_an_html_page(home, tmp_path, model_server, content_type, capsys):
    model_server.routes[PATH] = serve(MOVED_PAGE, content_type=content_type)
    manifest = manifest_for(tmp_path, model_server.url(PATH), gitsha1_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert "server sent an HTML page, not a model" in out
    assert 'title "301 Moved Permanently"' in out
    assert not part_path(home).exists()
    assert len(model_server.seen) == 1  # not retried


def test_refuses_plain_text(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(b"Access denied for this mirror.\n")
    manifest = manifest_for(tmp_path, model_server.url(PATH), gitsha1_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert "server sent text, not a model" in out and "Access denied" in out


def test_a_small_onnx_file_is_not_taken_for_text(home, tmp_path, model_server, capsys):
    """Without weights an ONNX file may hold no NUL byte, but it opens with 0x08."""
    # An Identity graph, IR version 8, opset 17 (serialised by onnx.helper).
    onnx_bytes = (
        b'\x08\x08:1\n\x19\n\x05input\x12\x06output"\x08Identity\x12\x01gZ\x07\n\x05input'
        b"b\x08\n\x06outputB\x02\x10\x11"
    )
    assert b"\0" not in onnx_bytes
    path = "/models/test/model.onnx"
    model_server.routes[path] = serve(onnx_bytes)
    manifest = manifest_for(tmp_path, model_server.url(path), sha256_digest(onnx_bytes))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert code == 0, out + err
    assert (home / "models" / "test" / "model.onnx").read_bytes() == onnx_bytes


def test_body_shorter_than_content_length(home, tmp_path, model_server, capsys):
    half = len(MODEL) // 2
    model_server.routes[PATH] = serve(MODEL, cut_at=half, ranges=False)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model", "--retries", "1")

    assert_failed_cleanly(home, code, err)
    received = int(re.search(rf"broke off after (\d+) of {len(MODEL)} bytes", out)[1])
    assert 0 < received <= half
    assert "gave up after 2 attempts (the partial download is kept and will be resumed)" in out
    assert len(model_server.seen) == 2
    # Kept only as a resumable part: a prefix of the model, as long as the message says.
    assert part_path(home).read_bytes() == MODEL[:received]


def test_dropped_connection_is_resumed_with_range(home, tmp_path, model_server, capsys):
    half = 26 << 16  # whole 64 KiB reads: a read cut short by the drop is lost, not written
    model_server.routes[PATH] = sequence(serve(MODEL, cut_at=half), serve(MODEL))
    manifest = manifest_for(tmp_path, model_server.url(PATH), gitsha1_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model", "--retries", "1")

    assert code == 0, out + err
    first, second = model_server.requests_for(PATH)
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={half}-"
    assert "retrying" in err
    assert final_path(home).read_bytes() == MODEL
    assert not part_path(home).exists()


def test_interrupted_download_resumes_in_the_next_run(home, tmp_path, model_server, capsys):
    third = 17 << 16
    model_server.routes[PATH] = sequence(serve(MODEL, cut_at=third), serve(MODEL))
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    assert fetch(capsys, manifest, "test/model", "--retries", "0")[0] == 4
    assert part_path(home).stat().st_size == third
    code, out, err = fetch(capsys, manifest, "test/model")

    assert code == 0, out + err
    assert model_server.seen[-1].headers["Range"] == f"bytes={third}-"
    assert final_path(home).read_bytes() == MODEL


def test_server_ignoring_range_restarts_the_part(home, tmp_path, model_server, capsys):
    part_path(home).parent.mkdir(parents=True)
    part_path(home).write_bytes(b"\0" * 1000)  # not even a prefix of the model
    model_server.routes[PATH] = serve(MODEL, ranges=False)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert code == 0, out + err
    assert model_server.seen[0].headers["Range"] == "bytes=1000-"
    assert final_path(home).read_bytes() == MODEL


def test_404_is_not_retried(home, tmp_path, model_server, capsys):
    manifest = manifest_for(tmp_path, model_server.url("/nowhere.t7"), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model", "--retries", "3")

    assert_failed_cleanly(home, code, err)
    assert f"HTTP 404 Not Found from {model_server.url('/nowhere.t7')}" in out
    assert len(model_server.seen) == 1
    assert not part_path(home).exists()


def test_500_twice_then_200(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = sequence(status(500), status(500), serve(MODEL))
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model", "--retries", "3")

    assert code == 0, out + err
    assert len(model_server.seen) == 3
    assert err.count("HTTP 500 Internal Server Error") == 2 and err.count("retrying") == 2
    assert final_path(home).read_bytes() == MODEL


def test_gives_up_on_persistent_5xx(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = status(503)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model", "--retries", "2")

    assert_failed_cleanly(home, code, err)
    assert "HTTP 503 Service Unavailable" in out and "gave up after 3 attempts" in out
    assert len(model_server.seen) == 3


@pytest.mark.parametrize("when", ["before the headers", "in the body"])
def test_stalled_server_times_out(home, tmp_path, model_server, when, capsys):
    # Two whole 64 KiB reads arrive before the stall (a read cut short by it is lost).
    after = MODEL[: 2 << 16] if when == "in the body" else None
    model_server.routes[PATH] = stall(model_server.release, after=after, total=len(MODEL))
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    started = time.monotonic()
    code, out, err = fetch(capsys, manifest, "test/model", "--timeout", "0.3", "--retries", "0")

    assert time.monotonic() - started < 10
    assert_failed_cleanly(home, code, err)
    if after is None:
        assert f"no answer from {model_server.url(PATH)} within 0.3 s" in out
    else:
        assert f"broke off after {2 << 16} of {len(MODEL)} bytes (timed out)" in out
        assert part_path(home).read_bytes() == after


def test_wrong_bytes_fail_the_digest(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(OTHER)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert "digest mismatch" in out
    assert f"expected {sha256_digest(MODEL)}, got {sha256_digest(OTHER)}" in out
    assert not part_path(home).exists()


def test_a_file_matching_its_digest_must_still_be_a_torch7_model(home, tmp_path, model_server, capsys):
    not_a_model = bytes(range(256)) * 64
    model_server.routes[PATH] = serve(not_a_model)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(not_a_model))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert "matches its digest but is not a Torch7 model" in out
    assert not part_path(home).exists()


def test_skips_a_verified_file_and_force_fetches_again(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))
    assert fetch(capsys, manifest, "test/model")[0] == 0

    code, out, _ = fetch(capsys, manifest, "test/model")
    assert code == 0 and "test/model  present" in out
    assert len(model_server.seen) == 1

    code, out, _ = fetch(capsys, manifest, "test/model", "--force")
    assert code == 0 and "test/model  downloaded" in out
    assert len(model_server.seen) == 2


def test_replaces_a_corrupt_file(home, tmp_path, model_server, capsys):
    final_path(home).parent.mkdir(parents=True)
    final_path(home).write_bytes(MODEL[:-1] + b"!")
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert code == 0, out + err
    assert final_path(home).read_bytes() == MODEL


def test_one_failure_does_not_stop_the_others(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(MODEL)
    manifest = write_manifest(
        tmp_path / "manifest.txt",
        f"test/missing {model_server.url('/missing.t7')} {sha256_digest(MODEL)}",
        f"test/model {model_server.url(PATH)} {sha256_digest(MODEL)}",
    )

    code, out, err = fetch(capsys, manifest, "test/missing", "test/model")

    assert code == 4
    assert "1 of 2 models failed: test/missing" in err
    assert "test/missing  failed" in out and "test/model    downloaded" in out
    assert final_path(home).read_bytes() == MODEL
    assert not (home / "models" / "test" / "missing.t7").exists()


def test_base_url_replaces_the_published_prefix(home, tmp_path, model_server, capsys):
    # A user manifest pins instance_norm/candy to the fixture's digest (overriding models.txt).
    manifest = write_manifest(
        tmp_path / "manifest.txt",
        f"instance_norm/candy {PUBLISHED_PREFIX}instance_norm/candy.t7 {sha256_digest(MODEL)}",
    )
    model_server.routes["/mirror/instance_norm/candy.t7"] = serve(MODEL)

    code, out, err = fetch(capsys, manifest, "candy", "--base-url", model_server.url("/mirror/"))

    assert code == 0, out + err
    assert err.count(LICENCE) == 1  # a published model, from a mirror
    assert [seen.path for seen in model_server.seen] == ["/mirror/instance_norm/candy.t7"]
    assert (home / "models" / "instance_norm" / "candy.t7").read_bytes() == MODEL


@pytest.mark.parametrize("as_uri", [True, False])
def test_base_url_may_be_a_local_directory(home, tmp_path, as_uri, capsys):
    mirror = tmp_path / "mirror dir"
    (mirror / "instance_norm").mkdir(parents=True)
    (mirror / "instance_norm" / "candy.t7").write_bytes(MODEL)
    manifest = write_manifest(
        tmp_path / "manifest.txt",
        f"instance_norm/candy {PUBLISHED_PREFIX}instance_norm/candy.t7 {gitsha1_digest(MODEL)}",
    )
    base_url = mirror.as_uri() if as_uri else str(mirror)

    code, out, err = fetch(capsys, manifest, "instance_norm/candy", "--base-url", base_url)

    assert code == 0, out + err
    assert (home / "models" / "instance_norm" / "candy.t7").read_bytes() == MODEL


def test_file_mirror_without_the_file(home, tmp_path, capsys):
    manifest = manifest_for(tmp_path, (tmp_path / "absent.t7").as_uri(), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert f"{tmp_path / 'absent.t7'} does not exist" in out


def test_rejects_a_base_url_of_another_scheme(home, tmp_path, capsys):
    code = main(["fetch-models", "candy", "--base-url", "ftp://example.org/models/"])
    assert code == 4
    assert "--base-url 'ftp://example.org/models/' is not an http, https or file URL" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["parent is a file", "read-only directory"])
def test_unwritable_store(tmp_path, monkeypatch, model_server, how, capsys):
    if how == "parent is a file":
        (tmp_path / "file").write_text("not a directory")
        home, reason = tmp_path / "file" / "home", "Not a directory"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes through file permissions")
        home, reason = tmp_path / "locked", "Permission denied"
        home.mkdir(mode=0o500)
    monkeypatch.setenv("CVSTYLE_HOME", str(home))
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))

    code, _, err = fetch(capsys, manifest, "test/model")

    assert code == 4
    assert err.strip() == (
        f"cvstyle: error: cannot write to the model store {home / 'models'} ({reason}); "
        "set CVSTYLE_HOME to a writable directory"
    )
    assert model_server.seen == []


def test_two_processes_fetching_at_once_end_with_one_valid_file(home, tmp_path, model_server):
    # About 2 s per download, so the second process starts while the first is downloading.
    model_server.routes[PATH] = serve(MODEL, chunk_delay=0.04)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))
    command = [sys.executable, "-c", "from cvstyle.cli import run; run()", "fetch-models", "--manifest", str(manifest), "test/model"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], results
    outs = sorted(out for out, _ in results)
    assert "test/model  downloaded" in outs[0] and "test/model  present" in outs[1]
    assert any("another cvstyle is fetching it; waiting" in err for _, err in results)
    assert len(model_server.requests_for(PATH)) == 1
    assert final_path(home).read_bytes() == MODEL
    assert sorted(p.name for p in final_path(home).parent.iterdir() if not p.name.endswith(".lock")) == ["model.t7"]


def test_unknown_and_builtin_names(home, capsys):
    assert main(["fetch-models", "cnady"]) == 3
    assert "unknown model 'cnady'; did you mean candy?" in capsys.readouterr().err
    assert main(["fetch-models", "sketch"]) == 0
    assert "sketch: built into cvstyle, nothing to fetch" in capsys.readouterr().out


def test_ensure_model_fetches_only_when_needed(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))
    settings = download.FetchSettings(retry_delay=0)

    path = download.ensure_model("model", manifest, settings)
    assert path == final_path(home) and path.read_bytes() == MODEL
    assert download.ensure_model("test/model", manifest, settings) == path
    assert len(model_server.seen) == 1


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "host, why",
    [("cvstyle-test.invalid", "its name does not resolve"), (f"127.0.0.1:{unused_port()}", "it refused the connection")],
)
def test_an_unreachable_host_stops_at_the_first_model_without_retrying(home, tmp_path, host, why, capsys):
    """Offline: known at once, so no retry and no second model (each would cost seconds)."""
    manifest = write_manifest(
        tmp_path / "manifest.txt",
        *(f"test/{name} http://{host}/{name}.t7 {sha256_digest(MODEL)} Test" for name in ("one", "two", "three")),
    )
    code = main(["fetch-models", "--manifest", str(manifest), "--retry-delay", "5", "one", "two", "three"])
    out, err = capsys.readouterr()

    assert code == 4
    hostname = host.partition(":")[0]
    assert err.count("fetching") == 1 and "retrying" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("cvstyle: error:")]
    assert error_lines == [
        f"cvstyle: error: cannot reach {hostname} ({why}); offline? Copy the models from a machine that can "
        "reach it and run `cvstyle fetch-models --base-url DIR` (DIR laid out as FAMILY/NAME.t7)"
    ]
    assert not list((home / "models" / "test").glob("*.t7")) and not list((home / "models" / "test").glob("*.part"))


def test_the_published_catalogue_offline_fails_in_one_line(home, capsys):
    """What a user without a network sees for `cvstyle fetch-models`: one attempt, one error."""
    code = main(["fetch-models", "--base-url", "http://cvstyle-test.invalid/models/"])
    out, err = capsys.readouterr()
    assert code == 4
    assert err.splitlines()[-1].startswith("cvstyle: error: cannot reach cvstyle-test.invalid (its name does not resolve)")
    assert err.count("fetching") == 1 and err.count(LICENCE) == 1


# ---------------------------------------------------------------- size limits and bad headers


def sized_manifest(tmp_path, model_server, size: int, title: str) -> Path:
    """A manifest whose one model declares ``size=``."""
    line = f"test/model {model_server.url(PATH)} {sha256_digest(MODEL)} size={size} {title}"
    return write_manifest(tmp_path / "manifest.txt", line)


def test_an_endless_body_stops_at_the_declared_size(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = endless()
    manifest = sized_manifest(tmp_path, model_server, 1000000, "Endless")
    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert f"the body grew past 1,000,000 bytes, the size= of {manifest}:2; stopped and deleted the partial file" in out
    assert not part_path(home).exists()
    assert len(model_server.seen) == 1  # not retried


def test_the_default_ceiling_applies_without_size_and_no_part_grows_past_it(home, tmp_path, model_server, monkeypatch, capsys):
    model_server.routes[PATH] = endless()
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))
    sizes = []
    real_open = Path.open

    class Watched(io.FileIO):  # records the part's size after each write
        def write(self, data):
            written = super().write(data)
            sizes.append(os.fstat(self.fileno()).st_size)
            return written

    def watched_open(path, mode="r", *args, **kwargs):
        if path.name.endswith(".part"):
            return Watched(path, mode.replace("b", ""))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", watched_open)
    code, out, err = fetch(capsys, manifest, "test/model", "--max-download-mb", "2")

    assert_failed_cleanly(home, code, err)
    assert "the body grew past 2,097,152 bytes, the download ceiling (--max-download-mb 2)" in out
    assert sizes and max(sizes) <= 2 * 1024**2
    assert not part_path(home).exists()


def test_a_content_length_above_the_limit_is_refused_before_writing(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = endless(content_length=50 * 1024**3)
    manifest = sized_manifest(tmp_path, model_server, 3000000, "Big")
    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert f"announces 53,687,091,200 bytes, more than 3,000,000 bytes, the size= of {manifest}:2; nothing was saved" in out
    assert not part_path(home).exists()


def test_a_model_within_its_declared_size_downloads(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(MODEL)
    manifest = sized_manifest(tmp_path, model_server, len(MODEL), "Exact")
    code, out, err = fetch(capsys, manifest, "test/model")
    assert code == 0, out + err
    assert final_path(home).read_bytes() == MODEL


def redirect_to(location: str):
    return raw(302, {"Location": location, "Content-Length": "0"})


@pytest.mark.parametrize(
    "responder, problem",
    [
        (raw(200, {"Content-Length": "abc"}, MODEL[:1000]), "sent an invalid Content-Length header 'abc'"),
        (redirect_to("http://[::1"), "malformed Location header 'http://[::1'"),
        (redirect_to("http://127.0.0.1:port/x.t7"), "malformed Location header 'http://127.0.0.1:port/x.t7'"),
        (redirect_to("file:///etc/passwd"), "redirect to file:///etc/passwd refused: only http and https redirects are followed"),
        (redirect_to(PATH), "redirect loop"),
        (raw(302, {"Content-Length": "0"}), "redirect without a Location header"),
    ],
    ids=["content-length", "location-ipv6", "location-port", "file-redirect", "loop", "no-location"],
)
def test_bad_headers_are_one_line_naming_the_url(home, tmp_path, model_server, responder, problem, capsys):
    model_server.routes[PATH] = responder
    url = model_server.url(PATH)
    manifest = manifest_for(tmp_path, url, sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    detail = next(line for line in out.splitlines() if line.startswith("test/model"))
    assert url in detail and problem in detail, detail
    assert "None" not in detail and "Traceback" not in out + err
    assert not part_path(home).exists()


def test_a_redirect_loop_through_two_urls(home, tmp_path, model_server, capsys):
    model_server.routes["/a.t7"] = redirect(model_server.url("/b.t7"))
    model_server.routes["/b.t7"] = redirect(model_server.url("/a.t7"))
    manifest = manifest_for(tmp_path, model_server.url("/a.t7"), sha256_digest(MODEL))

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    a, b = model_server.url("/a.t7"), model_server.url("/b.t7")
    assert f"{a}: redirect loop ({a} -> {b} -> {a})" in out
    assert len(model_server.seen) == 2


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_names_the_final_path_and_keeps_no_part(home, tmp_path, model_server, capsys):
    model_server.routes[PATH] = serve(MODEL)
    manifest = manifest_for(tmp_path, model_server.url(PATH), sha256_digest(MODEL))
    part_path(home).parent.mkdir(parents=True)
    part_path(home).symlink_to("/dev/full")  # every write: "No space left on device"

    code, out, err = fetch(capsys, manifest, "test/model")

    assert_failed_cleanly(home, code, err)
    assert f"cannot write {final_path(home)}: No space left on device; nothing was kept" in out
    assert ".part" not in out
    assert not part_path(home).exists() and not part_path(home).is_symlink()
