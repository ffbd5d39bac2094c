"""Streams: a network loaded for throughput runs that many forwards at once, and folders
and clips keep their order and their pictures while it does."""

from __future__ import annotations

import importlib.util
import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest

import reference_net
from cvstyle import Stylizer, batch, torch7
from cvstyle.cli import main
from cvstyle.engines import load_runner
from cvstyle.engines.streams import in_order, throughput_streams
from cvstyle.errors import CvstyleError
from cvstyle.runner import StyleRunner

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ENGINES = [
    pytest.param(engine, marks=pytest.mark.skipif(not importlib.util.find_spec(engine), reason=f"needs {engine}"))
    for engine in ("onnxruntime", "openvino")
]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path


def photo(size=(96, 72), seed: int = 0) -> np.ndarray:
    image = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), size, interpolation=cv2.INTER_AREA)
    return np.roll(image, seed * 7, axis=1)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


class _Network:
    """Stands in for an engine's network with ``streams`` streams: counts the forwards
    running at once, and with ``meeting`` returns only once that many run together."""

    engine, device, precision = "test", "cpu", "exact"

    def __init__(self, streams: int, meeting: int | None = None):
        self.streams = streams
        self.barrier = threading.Barrier(meeting, timeout=30) if meeting else None
        self.count = threading.Lock()
        self.running = self.most = 0

    def run(self, feeds, outputs=None):
        with self.count:
            self.running += 1
            self.most = max(self.most, self.running)
        if self.barrier:
            self.barrier.wait()
        else:
            time.sleep(0.05)
        with self.count:
            self.running -= 1
        return [next(iter(feeds.values()))]


def _call_together(runner: StyleRunner, count: int) -> list[np.ndarray]:
    results: list = [None] * count

    def call(index: int) -> None:
        results[index] = runner(photo())

    threads = [threading.Thread(target=call, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_the_runner_lets_in_as_many_forwards_as_the_network_has_streams():
    network = _Network(streams=2, meeting=2)  # a forward alone would wait 30 s and fail
    results = _call_together(StyleRunner(network), 2)
    assert all(isinstance(result, np.ndarray) for result in results) and network.most == 2


def test_a_one_stream_runner_runs_one_forward_at_a_time():
    network = _Network(streams=1)
    _call_together(StyleRunner(network), 3)
    assert network.most == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_two_streams_match_the_float64_reference(fixture_model, cat_bgr, engine):
    """OpenVINO's one-thread kernels round differently from its two-thread ones (a grey
    level here and there); both stay within 1 of the reference."""
    image = cv2.resize(cat_bgr, (131, 97), interpolation=cv2.INTER_AREA)
    expected = reference_net.stylize(torch7.load(fixture_model)["model"], image)
    result = load_runner(fixture_model, engine, "cpu", streams=2)(image)
    assert np.abs(result.astype(np.float64) - expected).max() <= 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_with_two_streams_runs_two_forwards_at_once(instance_norm_model, engine):
    single = load_runner(instance_norm_model, engine, "cpu")
    double = load_runner(instance_norm_model, engine, "cpu", streams=2)
    assert (single.streams, double.streams) == (1, 2)
    spans: list[tuple[float, float]] = []
    network_run = double.network.run

    def timed_run(feeds, outputs=None):
        start = time.perf_counter()
        try:
            return network_run(feeds, outputs)
        finally:
            spans.append((start, time.perf_counter()))

    double.network.run = timed_run
    images = [photo((256, 192), seed) for seed in range(2)]
    meeting = threading.Barrier(2, timeout=30)
    painted: list = [None, None]

    def paint(index: int) -> None:
        meeting.wait()
        painted[index] = double(images[index])

    threads = [threading.Thread(target=paint, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a  # the two forwards overlapped
    for image, result in zip(images, painted):
        assert _max_diff(result, single(image)) <= 1


def test_streams_must_be_positive(eccv16_model):
    with pytest.raises(CvstyleError, match="^streams must be at least 1, not 0$"):
        Stylizer(eccv16_model, streams=0)


def test_a_large_photo_with_streams_runs_as_with_one(instance_norm_model):
    """Tiled photos take the one-stream network (all cores, one photo at a time)."""
    image = photo((301, 203))
    single = Stylizer(instance_norm_model, engine="onnxruntime")
    double = Stylizer(instance_norm_model, engine="onnxruntime", streams=2)
    expected = single.stylize(image, tile="on", max_memory="1M")
    np.testing.assert_array_equal(double.stylize(image, tile="on", max_memory="1M"), expected)


def test_a_folder_is_painted_two_photos_at_a_time_in_order(workdir, instance_norm_model):
    folder = workdir / "photos"
    folder.mkdir()
    for index in range(5):
        cv2.imwrite(str(folder / f"{index}.png"), photo(seed=index))
    (folder / "2.png").write_bytes(b"not a photo")  # a failure among them
    sources, _ = batch.expand_inputs([folder])
    single = Stylizer(instance_norm_model, engine="onnxruntime")
    double = Stylizer(instance_norm_model, engine="onnxruntime", streams=2)
    together = threading.Barrier(2, timeout=30)
    paint = double.stylize

    def paint_in_pairs(image, **options):
        together.wait()  # returns only while another photo is being painted
        return paint(image, **options)

    double.stylize = paint_in_pairs
    report = batch.run_jobs(batch.plan_outputs(sources, [double], workdir / "two"))
    assert [path.name for path in report.written] == [f"{index}_instance_norm_fixture.jpg" for index in (0, 1, 3, 4)]
    assert [failure.source.name for failure in report.failures] == ["2.png"]
    batch.run_jobs(batch.plan_outputs(sources, [single], workdir / "one"))
    for path in report.written:
        assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(workdir / "one" / path.name)))


def test_clip_frames_painted_several_at_once_come_out_in_order(workdir):
    av = pytest.importorskip("av")
    from cvstyle.video import synthetic
    from cvstyle.video.pipeline import stylize_video

    clip = workdir / "clip.mp4"
    synthetic.write_clip(clip, synthetic.pan(photo(), 24, (64, 48)).frames)
    jitter = random.Random(0)

    def paint(bgr: np.ndarray) -> np.ndarray:
        time.sleep(jitter.uniform(0, 0.02))  # later frames often finish first
        return cv2.bitwise_not(bgr)

    stylize_video(clip, workdir / "one.mp4", paint, painters=1)
    stylize_video(clip, workdir / "three.mp4", paint, painters=3)

    def content(path: Path) -> tuple[list, list, list]:
        with av.open(str(path)) as container:
            pictures = [(frame.pts, frame.to_ndarray(format="bgr24")) for frame in container.decode(video=0)]
        with av.open(str(path)) as container:
            sound = [bytes(packet) for packet in container.demux(audio=0) if packet.size]
        return [pts for pts, _ in pictures], [image for _, image in pictures], sound

    one, three = content(workdir / "one.mp4"), content(workdir / "three.mp4")
    assert one[0] == three[0] and len(one[0]) == 24
    assert all(np.array_equal(a, b) for a, b in zip(one[1], three[1]))
    assert one[2] == three[2] and one[2]


@pytest.mark.skipif(throughput_streams() < 2, reason="one core: folders keep one stream")
def test_apply_says_how_many_streams_a_folder_gets(workdir, capsys, eccv16_model):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(workdir / name), photo())
    assert main(["apply", "-v", "--engine", "onnxruntime", "-m", str(eccv16_model), "a.png", "b.png"]) == 0
    assert f"eccv16_fixture: onnxruntime on cpu, exact, {throughput_streams()} streams" in capsys.readouterr().err
    assert main(["apply", "-v", "--engine", "onnxruntime", "-m", str(eccv16_model), "a.png"]) == 0
    assert capsys.readouterr().err.count("eccv16_fixture: onnxruntime on cpu, exact\n") == 1
