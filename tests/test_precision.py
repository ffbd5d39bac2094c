"""Precision modes and how ``auto`` ranks engines.

``fast`` (bfloat16 through OpenVINO) stays within the bounds the README states against
``exact``; asking ``fast`` of an engine or CPU with nothing faster runs exact and says so
in one line; ``auto`` takes the engine that measured fastest, measures once per CPU and
engine versions, and keeps the figures in the user cache folder.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from cvstyle import engines, precision
from cvstyle.cli import main
from cvstyle.engines import choose_engine, load_runner, ranking
from cvstyle.errors import CvstyleError
from cvstyle.stylizer import Stylizer

# README, Engines: fast against exact on the bundled samples (both fixture families and
# the built-in sketch); the small images here must stay within the same bounds.
FAST_MEAN_BOUND = 1.5
FAST_P99_BOUND = 6
FAST_MAX_BOUND = 30

needs_bf16 = pytest.mark.skipif(
    not precision.cpu_has_bf16(),
    reason="this CPU has no AVX512-BF16 or AMX, so fast runs exact here "
    "(test_fast_without_bf16_runs_exact_and_says_so covers that case)",
)


@pytest.fixture(autouse=True)
def fresh_networks():
    engines.clear_network_cache()
    yield
    engines.clear_network_cache()


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [cv2.resize(cv2.imread(str(path)), (160, 120), interpolation=cv2.INTER_AREA)
            for path in sorted(SAMPLES.glob("*.*g"))]


@needs_bf16
@pytest.mark.parametrize("which", ["eccv16", "instance_norm", "sketch"])
def test_fast_is_within_the_stated_bounds_of_exact(which, eccv16_model, instance_norm_model, photos):
    pytest.importorskip("openvino")
    model = {"eccv16": eccv16_model, "instance_norm": instance_norm_model, "sketch": "sketch"}[which]
    fast = Stylizer(model, device="cpu", engine="openvino", precision="fast")
    exact = Stylizer(model, device="cpu", engine="openvino", precision="exact")
    assert (fast.precision, exact.precision) == ("fast", "exact")
    diff = np.concatenate([np.abs(fast.stylize(p).astype(int) - exact.stylize(p)).ravel() for p in photos])
    assert diff.mean() <= FAST_MEAN_BOUND
    assert np.percentile(diff, 99) <= FAST_P99_BOUND
    assert diff.max() <= FAST_MAX_BOUND
    assert diff.mean() > 0.01  # not vacuous: bfloat16 really ran


def test_fast_on_an_engine_without_a_faster_mode_says_so(caplog, eccv16_model, photos):
    pytest.importorskip("onnxruntime")
    with caplog.at_level(logging.WARNING, logger="cvstyle"):
        fast = load_runner(eccv16_model, "onnxruntime", "cpu", wanted="fast")
    exact = load_runner(eccv16_model, "onnxruntime", "cpu")
    assert fast.precision == "exact"
    assert np.array_equal(fast(photos[0]), exact(photos[0]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("precision 'fast': onnxruntime has no faster mode than float32 on cpu; running exact")


def test_fast_without_bf16_runs_exact_and_says_so(monkeypatch, caplog, eccv16_model, photos):
    pytest.importorskip("openvino")
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="cvstyle"):
        fast = load_runner(eccv16_model, "openvino", "cpu", wanted="fast")
    assert fast.precision == "exact"
    assert [r.getMessage() for r in caplog.records] == [
        "precision 'fast': openvino has no faster mode than float32 on cpu; running exact "
        "(this CPU has no AVX512-BF16 or AMX)"
    ]
    exact = load_runner(eccv16_model, "openvino", "cpu")
    assert np.array_equal(fast(photos[0]), exact(photos[0]))


def test_cli_says_engine_device_and_precision(capsys, eccv16_model, tmp_path):
    pytest.importorskip("onnxruntime")
    photo = tmp_path / "in.png"
    cv2.imwrite(str(photo), np.full((30, 40, 3), 90, np.uint8))
    args = ["apply", str(photo), "-m", str(eccv16_model), "-o", str(tmp_path), "--engine", "onnxruntime", "-v"]
    assert main([*args, "--precision", "fast"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "cvstyle: precision 'fast': onnxruntime has no faster mode than float32 on cpu; running exact" in err[0]
    assert f"{eccv16_model.stem}: onnxruntime on cpu, exact" in err
    assert main([*args, "--precision", "quick"]) == 2  # an option error
    assert capsys.readouterr().err.strip() == "cvstyle: error: unknown precision 'quick': choose one of exact, fast"


def test_unknown_precision_in_the_api(eccv16_model):
    with pytest.raises(CvstyleError, match="^unknown precision 'half': choose one of exact, fast$"):
        Stylizer(eccv16_model, precision="half")


class _SleepyNetwork:
    """Stands in for an engine's network: each forward takes a known time."""

    precision = "exact"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, feeds, outputs=None):
        time.sleep(self.seconds)
        return [next(iter(feeds.values()))]


@pytest.fixture
def timing_cache(monkeypatch, tmp_path):
    path = tmp_path / "cache" / "engine-timings.json"
    monkeypatch.setattr(ranking, "cache_file", lambda: path)
    monkeypatch.setattr(ranking, "installed_engines", lambda: ["opencv", "onnxruntime", "openvino"])
    ranking.timings.cache_clear()
    ranking.staged_timings.cache_clear()
    yield path
    ranking.timings.cache_clear()
    ranking.staged_timings.cache_clear()


def test_auto_ranks_by_measured_time_and_keeps_the_figures(timing_cache, monkeypatch):
    delays = {"opencv": 0.03, "onnxruntime": 0.02, "openvino": 0.001}
    built = []

    def build(graph, engine, wanted):
        built.append((engine, wanted))
        return _SleepyNetwork(delays[engine] / (4 if wanted == "fast" else 1))

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert ranking.ranked(build, "exact") == ["openvino", "onnxruntime", "opencv"]
    assert ("openvino", "fast") in built and ("onnxruntime", "fast") not in built
    saved = json.loads(timing_cache.read_text())
    assert list(saved) == [ranking.cache_key()]
    assert saved[ranking.cache_key()]["exact"]["opencv"] >= 30
    # Kept: a new process (no in-memory cache) reads the file instead of measuring.
    ranking.timings.cache_clear()
    built.clear()
    delays["opencv"] = 0.0
    assert ranking.ranked(build, "exact") == ["openvino", "onnxruntime", "opencv"]
    assert built == []
    # Another CPU (or engine version) is another key: measured again.
    ranking.timings.cache_clear()
    monkeypatch.setattr(precision, "cpu_model", lambda: "Another CPU")
    assert ranking.ranked(build, "exact")[0] == "opencv"
    assert len(json.loads(timing_cache.read_text())) == 2


def test_staged_runs_rank_apart_by_their_own_timing(timing_cache, monkeypatch):
    """Staged runs are timed by their own probe, kept under their own key beside the
    forwards' timings; OpenCV is not timed for them."""
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    timed = []

    def run(engine, wanted):
        timed.append(engine)
        return {"onnxruntime": 1.0, "openvino": 2.0}[engine]

    build = lambda graph, engine, wanted: _SleepyNetwork(0.001 if engine == "openvino" else 0.01)  # noqa: E731
    assert ranking.ranked(build, "exact")[0] == "openvino"
    assert ranking.staged_ranked(run, "exact") == ["onnxruntime", "openvino"]
    assert sorted(timed) == ["onnxruntime", "openvino"]
    saved = json.loads(timing_cache.read_text())
    assert set(saved) == {ranking.cache_key(), ranking.cache_key(ranking.STAGED_METHOD)}
    ranking.staged_timings.cache_clear()
    assert ranking.staged_ranked(run, "exact") == ["onnxruntime", "openvino"] and len(timed) == 2  # read back


def test_the_staged_probe_times_a_real_staged_run(tmp_path, monkeypatch):
    from cvstyle.tiling import staged, time_staged_probe

    runs = []
    real = staged._Run.stage
    monkeypatch.setattr(staged._Run, "stage", lambda self, index, step: (runs.append(index), real(self, index, step))[1])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert time_staged_probe("onnxruntime", "exact") > 0
    assert runs == 2 * list(range(max(runs) + 1))  # two whole staged runs, stage by stage
    assert not list(tmp_path.iterdir())  # its fixture model is gone


def test_a_damaged_timing_file_is_measured_again(timing_cache):
    timing_cache.parent.mkdir(parents=True)
    timing_cache.write_text("{not json")
    order = ranking.ranked(lambda graph, engine, wanted: _SleepyNetwork(0.001 if engine == "opencv" else 0.01), "exact")
    assert order[0] == "opencv"
    assert ranking.cache_key() in json.loads(timing_cache.read_text())


def test_fast_ranks_by_fast_times_where_an_engine_has_them(monkeypatch):
    measured = {"exact": {"opencv": 30.0, "onnxruntime": 10.0, "openvino": 12.0}, "fast": {"openvino": 5.0}}
    monkeypatch.setattr(ranking, "timings", lambda build: measured)
    monkeypatch.setattr(ranking, "installed_engines", lambda: ["opencv", "onnxruntime", "openvino"])
    assert choose_engine("auto", "cpu", "style.onnx", "exact") == "onnxruntime"
    assert choose_engine("auto", "cpu", "style.onnx", "fast") == "openvino"
    assert engines.engine_candidates("auto", "cpu", "style.onnx") == ["onnxruntime", "openvino", "opencv"]


def test_live_overlay_labels_say_engine_and_precision():
    pytest.importorskip("onnxruntime")
    from cvstyle import live

    painter = live.Painter([Stylizer("sketch", device="cpu", engine="onnxruntime")])
    assert painter.labels == ["sketch (onnxruntime, exact)"]
    _, labels = live.render(painter, np.zeros((24, 32, 3), np.uint8), live.LiveState(styles=1))
    assert labels == ["sketch (onnxruntime, exact)"]


@needs_bf16
def test_live_runs_fast_and_says_so(tmp_path, capsys):
    pytest.importorskip("openvino")
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 36))
    for index in range(4):
        writer.write(np.full((36, 48, 3), 40 * index, np.uint8))
    writer.release()
    out = tmp_path / "out.avi"
    code = main(["live", "-s", str(video), "--no-window", "-o", str(out), "--engine", "openvino", "--precision", "fast"])
    assert code == 0
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert err.count("sketch: openvino on cpu, fast") == 1


def test_serve_takes_a_precision(eccv16_model):
    pytest.importorskip("fastapi")
    from cvstyle.web import create_app

    with pytest.raises(CvstyleError, match="^unknown precision 'half': choose one of exact, fast$"):
        create_app(models=[], precision="half")
    assert create_app(models=[], precision="fast") is not None
