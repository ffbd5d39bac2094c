"""Live mode: sources, the newest-frame policy, composing, recording, keys and the CLI."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvstyle import live
from cvstyle.cli import main
from cvstyle.errors import CvstyleError, ImageError
from cvstyle.engines import WARM_UP_FORWARDS

WIDTH, HEIGHT = 64, 48


def write_video(path: Path, count: int = 12, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    """A short clip of a moving disc on a changing background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(count):
        image = np.full((size[1], size[0], 3), (40 + 8 * i, 90, 160), np.uint8)
        cv2.circle(image, (5 * i, size[1] // 2), size[1] // 4, (0, 220, 255), -1)
        writer.write(image)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} is not playable"
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


class FakeStylizer:
    """Inverts the picture, optionally slowly; records the settings of each call."""

    def __init__(self, name: str = "fake", delay: float = 0.0):
        self.name = name
        self.delay = delay
        self.calls: list[tuple[tuple[int, ...], bool, float]] = []

    def stylize(self, image, *, preserve_colors=False, strength=1.0):
        time.sleep(self.delay)
        self.calls.append((image.shape, preserve_colors, strength))
        return 255 - image


class ScriptedWindow:
    """Stands in for live.Window: records what is shown, answers keys from a script."""

    def __init__(self, keys: list[str | int]):
        self.keys = [ord(k) if isinstance(k, str) else k for k in keys]
        self.shown: list[np.ndarray] = []

    def show(self, image):
        self.shown.append(image)

    def poll_key(self, wait_ms=1):
        return self.keys.pop(0) if self.keys else live.NO_KEY


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.avi")


# ---------------------------------------------------------------- the CLI on files


@pytest.mark.parametrize("which", ["fixture", "builtin"])
def test_file_to_video_every_frame_stylized(tmp_path, video, instance_norm_model, which):
    model = str(instance_norm_model) if which == "fixture" else "sketch"
    out = tmp_path / "out.mp4"
    assert main(["live", "--source", str(video), "--no-window", "--output", str(out), "-m", model]) == 0
    inputs, outputs = read_video(video), read_video(out)
    assert len(outputs) == len(inputs) == 12
    for before, after in zip(inputs, outputs):
        assert after.shape == before.shape
        assert np.abs(after.astype(int) - before).mean() > 20  # painted, not copied
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


def test_two_models_make_a_grid(tmp_path, video, instance_norm_model, capsys):
    out = tmp_path / "grid.avi"
    code = main([
        "live", "-s", str(video), "--no-window", "-o", str(out),
        "-m", f"sketch,{instance_norm_model}", "--size", "32",
    ])
    assert code == 0
    frames = read_video(out)
    assert len(frames) == 12
    assert frames[0].shape == (24, 2 * 32, 3)  # two 32x24 tiles side by side
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["opencv", "onnxruntime"])
def test_engine_option_runs_the_models_there(tmp_path, video, engine, capsys):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (cvstyle[onnx])")
        pytest.importorskip("onnx", reason="the .t7 is converted to ONNX with onnx (cvstyle[onnx])")
    out = tmp_path / "out.avi"
    code = main(["live", "-s", str(video), "--no-window", "-o", str(out), "--engine", engine, "--size", "32"])
    assert code == 0
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert err.count(f"sketch: {engine} on cpu, exact") == 1  # said once, at the start
    assert len(read_video(out)) == 12


def test_unknown_engine_is_one_line(tmp_path, video, capsys):
    out = tmp_path / "out.avi"
    assert main(["live", "-s", str(video), "--no-window", "-o", str(out), "--engine", "tensorflow"]) == 2
    assert capsys.readouterr().err == (
        "cvstyle: error: unknown engine 'tensorflow': choose one of auto, opencv, onnxruntime, openvino\n"
    )
    assert not out.exists()


def test_ctrl_c_keeps_a_playable_file_with_the_frames_so_far(tmp_path, video, monkeypatch, capsys):
    real_read = live.VideoFileSource.read
    calls = []

    def read_then_interrupt(self):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_read(self)

    monkeypatch.setattr(live.VideoFileSource, "read", read_then_interrupt)
    out = tmp_path / "partial.mp4"
    assert main(["live", "-s", str(video), "--no-window", "-o", str(out)]) == 130
    assert len(read_video(out)) == 5
    assert "stopped by Ctrl-C" in capsys.readouterr().err


# ---------------------------------------------------------------- stylize_stream


def test_stylize_stream_records_every_frame_headless(tmp_path, video):
    """The public wiring behind ``cvstyle live``: a file in, every frame painted out."""
    out = tmp_path / "out.avi"
    progress = []
    report = live.stylize_stream(
        video, [FakeStylizer()], output=out, window=False,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert (report.frames, report.recorded, report.live, report.interrupted) == (12, out, False, False)
    inputs, outputs = read_video(video), read_video(out)
    assert len(outputs) == 12
    for before, after in zip(inputs, outputs):
        assert np.abs(after.astype(int) - (255 - before.astype(int))).mean() < 10  # inverted
    assert progress == [(done, 12) for done in range(13)]  # 0 once open, then each frame
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file


def test_stylize_stream_loads_model_names_and_stops_at_max_frames(tmp_path, video):
    out = tmp_path / "out.mp4"
    report = live.stylize_stream(str(video), ["sketch"], output=out, window=False, size=32, max_frames=5)
    assert report.frames == 5 and report.recorded == out
    frames = read_video(out)
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)


def test_stylize_stream_without_output_records_nothing(tmp_path, video):
    report = live.stylize_stream(video, [FakeStylizer()], window=False)
    assert report.frames == 12 and report.recorded is None
    assert list(tmp_path.iterdir()) == [video]


# ---------------------------------------------------------------- CLI errors


def _one_line_error(capsys) -> str:
    # The progress bar, if any, ends with \r and is erased: the error is the last line.
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    errors = [line for line in lines if line.startswith("cvstyle")]
    assert errors == [lines[-1]] and lines[-1].startswith("cvstyle: error: "), lines
    return lines[-1]


def test_missing_file(tmp_path, capsys):
    code = main(["live", "-s", str(tmp_path / "nope.mp4"), "--no-window", "-o", str(tmp_path / "o.mp4")])
    assert code == ImageError.exit_code
    assert "no such video file" in _one_line_error(capsys)
    assert not (tmp_path / "o.mp4").exists()


def test_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert main(["live", "-s", str(bad), "--no-window", "-o", str(tmp_path / "o.mp4")]) == 2
    assert "not a video file" in _one_line_error(capsys)


def test_unknown_output_codec(tmp_path, video, capsys):
    out = tmp_path / "out.xyz"
    assert main(["live", "-s", str(video), "--no-window", "-o", str(out)]) == 2
    assert "unknown video format '.xyz'" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == [video]


def test_no_camera_at_index(tmp_path, capsys):
    code = main(["live", "-s", "57", "--no-window", "-o", str(tmp_path / "o.mp4")])
    assert code == CvstyleError.exit_code
    assert "no camera at index 57" in _one_line_error(capsys)


def test_headless_needs_an_output(video, capsys):
    assert main(["live", "-s", str(video), "--no-window"]) == 1
    assert "--no-window needs --output" in _one_line_error(capsys)


class VanishingCamera:
    """A cv2.VideoCapture stand-in whose device is unplugged after a few frames."""

    def __init__(self, index, frames: int = 30):
        self.left = frames

    def isOpened(self):
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        time.sleep(0.02)
        self.left -= 1
        if self.left < 0:
            return False, None
        return True, np.full((HEIGHT, WIDTH, 3), 100, np.uint8)

    def release(self):
        pass


def test_camera_lost_mid_stream_closes_the_recording(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cv2, "VideoCapture", VanishingCamera)
    out = tmp_path / "cam.mp4"
    code = main(["live", "-s", "0", "--no-window", "-o", str(out)])
    assert code == 1
    message = _one_line_error(capsys)
    assert "camera 0 stopped sending frames" in message and str(out) in message
    frames = read_video(out)
    assert len(frames) >= 3 and frames[0].shape == (HEIGHT, WIDTH, 3)


# ---------------------------------------------------------------- sources


def test_newest_frame_policy_bounds_the_age_of_shown_frames():
    """A source 25x faster than the model: frames are dropped, none shown is stale."""
    def grab():
        time.sleep(0.002)
        return np.zeros((HEIGHT, WIDTH, 3), np.uint8)

    slow = FakeStylizer(delay=0.05)
    with live.LatestFrameSource(grab, "fake camera") as source:
        report = live.run(source, live.Painter([slow]), max_frames=12)
    assert report.frames == 12
    assert report.dropped > 12 * 3  # ~25 frames come per stylized one (fewer on a busy machine)
    # Had every frame been queued, the 12th would be ~0.55 s old; newest-first keeps
    # each frame's age near one stylizing time.
    assert report.max_latency < 0.2


def test_file_source_processes_every_frame_in_order(video):
    slow = FakeStylizer(delay=0.01)
    with live.VideoFileSource(video) as source:
        assert (source.frame_count, source.frame_size, source.live) == (12, (WIDTH, HEIGHT), False)
        report = live.run(source, live.Painter([slow]))
    assert (report.frames, report.dropped) == (12, 0)
    assert len(slow.calls) == WARM_UP_FORWARDS + 12  # the warm-up, then one per frame


def test_stream_url_is_read_like_a_camera(video):
    with live.open_source(video.resolve().as_uri()) as source:
        assert isinstance(source, live.LatestFrameSource) and source.live
        assert source.frame_size == (WIDTH, HEIGHT)


def test_source_that_fails_raises_on_read():
    images = iter([np.zeros((HEIGHT, WIDTH, 3), np.uint8)])
    with live.LatestFrameSource(lambda: next(images, None), "cam") as source:
        assert source.read().index == 0
        with pytest.raises(CvstyleError, match="cam stopped sending frames"):
            source.read()


def test_source_that_stalls_raises_on_read():
    release = threading.Event()

    def grab():
        if release.is_set():
            return None
        release.set()
        return np.zeros((HEIGHT, WIDTH, 3), np.uint8)

    with live.LatestFrameSource(grab, "cam", stall_timeout=0.1) as source:
        source.read()
        with pytest.raises(CvstyleError):
            source.read()


# ---------------------------------------------------------------- composing


@pytest.mark.parametrize("count,shape", [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3))])
def test_grid_shape(count, shape):
    assert live.grid_shape(count) == shape


def test_compose_places_tiles_row_by_row():
    tiles = [np.full((HEIGHT, WIDTH, 3), value, np.uint8) for value in (10, 20, 30)]
    grid = live.compose(tiles)
    assert grid.shape == (2 * HEIGHT, 2 * WIDTH, 3)
    assert grid[0, 0, 0] == 10 and grid[0, WIDTH, 0] == 20 and grid[HEIGHT, 0, 0] == 30
    assert grid[HEIGHT:, WIDTH:].max() == 0  # the empty cell is black


def test_render_side_by_side_and_processing_size():
    painter = live.Painter([FakeStylizer("a"), FakeStylizer("b")], size=32)
    image = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    state = live.LiveState(styles=2, side_by_side=True)
    view, labels = live.render(painter, image, state)
    assert view.shape == (2 * 24, 2 * 32, 3) and labels == ["original", "a", "b"]
    assert view[0, 0, 0] == 200 and view[0, 32, 0] == 55  # original, then style a
    view, labels = live.render(painter, image, live.LiveState(styles=2, selected=1))
    assert view.shape == (24, 32, 3) and labels == ["b"]


def test_overlay_is_drawn_on_a_copy():
    view = np.zeros((240, 320, 3), np.uint8)
    shown = live.draw_overlay(view, "10.0 FPS", ["a"], show_help=True)
    assert view.max() == 0 and shown.max() == 255


# ---------------------------------------------------------------- recording


def test_recorder_letterboxes_other_sizes_and_renames_on_close(tmp_path):
    out = tmp_path / "rec.avi"
    with live.VideoRecorder(out, fps=10) as recorder:
        recorder.write(np.full((HEIGHT, WIDTH, 3), 255, np.uint8))
        recorder.write(np.full((HEIGHT, 2 * WIDTH, 3), 255, np.uint8))  # twice as wide
        assert not out.exists()  # written under a temporary name meanwhile
    first, second = read_video(out)
    assert second.shape == first.shape
    assert second[0, WIDTH // 2].mean() < 30 and second[HEIGHT // 2, WIDTH // 2].mean() > 200


def test_paced_recording_plays_in_real_time(tmp_path):
    with live.VideoRecorder(tmp_path / "paced.mp4", fps=10, paced=True) as recorder:
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        recorder.write(image, at=100.0)
        recorder.write(image, at=100.05)  # too soon for the next 1/10 s slot: skipped
        recorder.write(image, at=100.5)  # half a second later: 5 frames' worth
    assert recorder.frames == 6 and len(read_video(tmp_path / "paced.mp4")) == 6


def test_recorder_without_frames_leaves_no_file(tmp_path):
    with live.VideoRecorder(tmp_path / "empty.mp4"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_recorder_refuses_missing_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        live.VideoRecorder(tmp_path / "missing" / "out.mp4")


# ---------------------------------------------------------------- keys


def key(state: live.LiveState, char: str | int) -> tuple[live.LiveState, live.Action | None]:
    return live.handle_key(state, ord(char) if isinstance(char, str) else char)


def test_keys_cycle_through_the_styles():
    state = live.LiveState(styles=2)
    seen = []
    for _ in range(3):
        state, _ = key(state, "n")
        seen.append(state.selected)
    assert seen == [0, 1, None]
    assert key(live.LiveState(styles=2), "p")[0].selected == 1
    assert key(live.LiveState(styles=1), "n")[0].selected is None  # nothing to switch to


@pytest.mark.parametrize("char,field", [(" ", "paused"), ("o", "side_by_side"), ("c", "preserve_colors")])
def test_toggle_keys(char, field):
    state = live.LiveState(styles=1)
    once, action = key(state, char)
    assert getattr(once, field) is True and action is None
    assert getattr(key(once, char)[0], field) is False


def test_strength_keys_step_and_clamp():
    state = live.LiveState(styles=1)
    assert key(state, "+")[0].strength == 1.0
    for _ in range(3):
        state, _ = key(state, "-")
    assert state.strength == 0.7
    assert key(state, "=")[0].strength == 0.8
    for _ in range(12):
        state, _ = key(state, "_")
    assert state.strength == 0.0


@pytest.mark.parametrize("char,action", [
    ("q", live.Action.QUIT), ("Q", live.Action.QUIT), (live.KEY_ESC, live.Action.QUIT),
    ("s", live.Action.SNAPSHOT), ("h", live.Action.HELP),
])
def test_action_keys(char, action):
    state = live.LiveState(styles=1)
    assert key(state, char) == (state, action)


def test_other_keys_change_nothing():
    state = live.LiveState(styles=2)
    assert key(state, live.NO_KEY) == (state, None) and key(state, "x") == (state, None)


def test_keys_drive_the_loop(tmp_path, video, monkeypatch):
    """Scripted keys: colours and strength reach the stylizer, side-by-side widens the
    view, a snapshot is written to the current directory, q stops."""
    monkeypatch.chdir(tmp_path)
    stylizer = FakeStylizer()
    window = ScriptedWindow([live.NO_KEY, "c", "-", "o", "s", "q"])
    messages = []
    with live.VideoFileSource(video) as source:
        report = live.run(source, live.Painter([stylizer]), window=window, notify=messages.append)
    assert report.frames == 6 and not report.interrupted
    assert stylizer.calls[WARM_UP_FORWARDS][1:] == (False, 1.0)
    assert stylizer.calls[-1][1:] == (True, 0.9)
    assert [image.shape[1] for image in window.shown] == [WIDTH] * 4 + [2 * WIDTH] * 2
    (snapshot,) = tmp_path.glob("cvstyle-*.png")
    assert messages == [f"saved {snapshot.name}"]
    assert cv2.imread(str(snapshot)).shape == (HEIGHT, 2 * WIDTH, 3)


def test_notices_go_to_the_log_not_stdout(tmp_path, video, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)
    window = ScriptedWindow(["s", "q"])
    with caplog.at_level(logging.INFO, logger="cvstyle.live"), live.VideoFileSource(video) as source:
        live.run(source, live.Painter([FakeStylizer()]), window=window)
    (snapshot,) = tmp_path.glob("cvstyle-*.png")
    assert [record.getMessage() for record in caplog.records] == [f"saved {snapshot.name}"]
    assert capsys.readouterr().out == ""


def test_pause_holds_the_frame_and_rerenders_on_changes(video):
    stylizer = FakeStylizer()
    window = ScriptedWindow([" ", "c", live.NO_KEY, " ", "q"])
    with live.VideoFileSource(video) as source:
        report = live.run(source, live.Painter([stylizer]), window=window)
    # Frames 0 and 1 (resumed after the pause): the pause read nothing new, and the
    # 'c' while paused re-rendered the held frame with the colours kept.
    assert report.frames == 2
    assert [call[1] for call in stylizer.calls[WARM_UP_FORWARDS:]] == [False, True, True]
