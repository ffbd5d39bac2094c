"""--stabilize: flicker (consecutive painted frames compared after the clip's true motion,
cvstyle.video.synthetic.flicker) at least halved on generated clips, and nothing of one
scene carried into the next across a cut."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cvstyle import Stylizer
from cvstyle.video import stabilize, synthetic

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SIZE = (128, 96)


def photo(name: str) -> np.ndarray:
    return cv2.imread(str(SAMPLES / name))


def clips() -> dict[str, synthetic.Clip]:
    return {
        "pan": synthetic.pan(photo("astronaut.png"), 12, SIZE),
        "noisy still": synthetic.noisy_still(photo("coffee.png"), 12, SIZE),
        "cut": synthetic.pan(photo("astronaut.png"), 6, SIZE) + synthetic.noisy_still(photo("coffee.png"), 6, SIZE),
    }


def stabilized(originals, painted) -> list[np.ndarray]:
    stabilizer = stabilize.Stabilizer()
    return [stabilizer(original, frame) for original, frame in zip(originals, painted)]


@pytest.mark.parametrize("kind", ["pan", "noisy still", "cut"])
def test_stabilize_at_least_halves_flicker(fixture_model, kind):
    clip = clips()[kind]
    painter = Stylizer(str(fixture_model))
    painted = [painter.stylize(frame) for frame in clip.frames]
    before = synthetic.flicker(painted, clip.motions)
    after = synthetic.flicker(stabilized(clip.frames, painted), clip.motions)
    assert after <= 0.5 * before, (before, after)


def test_sketch_noise_flicker_halved():
    clip = clips()["noisy still"]
    painter = Stylizer("sketch")
    painted = [painter.stylize(frame) for frame in clip.frames]
    after = synthetic.flicker(stabilized(clip.frames, painted), clip.motions)
    assert after <= 0.5 * synthetic.flicker(painted, clip.motions)


def test_cut_is_repainted_not_blended(instance_norm_model):
    """Ghosting at a cut = any difference between the frames after the cut and those of
    the second scene stabilised on its own: it must be exactly zero."""
    first = synthetic.pan(photo("astronaut.png"), 6, SIZE)
    second = synthetic.noisy_still(photo("coffee.png"), 6, SIZE)
    clip = first + second
    painter = Stylizer(str(instance_norm_model))
    painted = [painter.stylize(frame) for frame in clip.frames]
    result = stabilized(clip.frames, painted)
    assert np.array_equal(result[6], painted[6])  # the first frame of the new scene: its own painting
    alone = stabilized(second.frames, painted[6:])
    for carried, fresh in zip(result[6:], alone):
        assert np.array_equal(carried, fresh)
    estimator = stabilize.MotionEstimator()
    motions = [estimator(frame) for frame in clip.frames]
    assert [m is None for m in motions] == [True] + [False] * 5 + [True] + [False] * 5


def test_occlusion_is_repainted(instance_norm_model):
    """A square appearing in a still scene: its pixels fail the photometric check and
    keep the new frame's own painting."""
    scene = cv2.resize(photo("coffee.png"), SIZE, interpolation=cv2.INTER_AREA)
    covered = scene.copy()
    covered[40:80, 60:100] = (30, 200, 30)
    estimator = stabilize.MotionEstimator()
    estimator(scene)
    motion = estimator(covered)
    assert motion is not None
    assert motion.weight[48:72, 68:92].max() == 0
    assert motion.weight[:, :40].mean() > 0.5 * stabilize.BLEND


def test_apply_stabilize_end_to_end(workdir_video, instance_norm_model):
    av = pytest.importorskip("av")
    from cvstyle.cli import main

    clip = synthetic.noisy_still(photo("coffee.png"), 12, SIZE)
    synthetic.write_clip(workdir_video / "still.mp4", clip.frames, audio_tones=())
    model = str(instance_norm_model)
    assert main(["apply", "still.mp4", "-m", model, "-o", "plain.mp4"]) == 0
    assert main(["apply", "still.mp4", "-m", model, "-o", "steady.mp4", "--stabilize"]) == 0

    def frames(name):
        with av.open(str(workdir_video / name)) as container:
            return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]

    plain, steady = frames("plain.mp4"), frames("steady.mp4")
    assert len(plain) == len(steady) == 12
    assert synthetic.flicker(steady, clip.motions) <= 0.5 * synthetic.flicker(plain, clip.motions)


@pytest.fixture
def workdir_video(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path


def test_live_painter_stabilizes_and_restarts_on_a_new_look(instance_norm_model):
    from cvstyle import live

    clip = synthetic.noisy_still(photo("coffee.png"), 10, SIZE)
    stylizer = Stylizer(str(instance_norm_model))
    plain, steady = live.Painter([stylizer]), live.Painter([stylizer], stabilize=True)
    steady.warm_up(SIZE)
    unstabilized = [plain.paint(frame)[1][0] for frame in clip.frames]
    stabilized_frames = [steady.paint(frame)[1][0] for frame in clip.frames]
    assert synthetic.flicker(stabilized_frames, clip.motions) <= 0.5 * synthetic.flicker(unstabilized, clip.motions)
    # A new strength is a new look: painted afresh, nothing blended from the old one.
    assert np.array_equal(steady.paint(clip.frames[0], strength=0.5)[1][0], plain.paint(clip.frames[0], strength=0.5)[1][0])


def test_live_stabilize_option(workdir_video, capsys):
    pytest.importorskip("av")
    from cvstyle.cli import main

    clip = synthetic.noisy_still(photo("coffee.png"), 8, SIZE)
    synthetic.write_clip(workdir_video / "still.mp4", clip.frames, audio_tones=())
    assert main(["live", "-s", "still.mp4", "--no-window", "-o", "out.mp4", "--stabilize"]) == 0
    assert (workdir_video / "out.mp4").stat().st_size > 0
    assert "8 frames" in capsys.readouterr().err
