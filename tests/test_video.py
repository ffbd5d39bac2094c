"""Videos through `cvstyle apply`: frames, timestamps, sound, rotation and colour kept;
bad files refused in one line with nothing written. Clips are generated (PyAV writes
them), tiny, and painted with the built-in sketch model."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from cvstyle import Stylizer  # noqa: E402
from cvstyle.cli import main  # noqa: E402
from cvstyle.video import is_video, sniff_container, synthetic  # noqa: E402
from cvstyle.video.io import crf_for_quality  # noqa: E402
from cvstyle.video.pipeline import stylize_video  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path


def frames(count: int = 20, size=(64, 48)) -> list[np.ndarray]:
    return synthetic.pan(cv2.imread(str(SAMPLES / "chelsea.png")), count, size).frames


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def times(path: Path) -> list[Fraction]:
    return [frame.pts * frame.time_base for frame in decoded(path)]


def audio_packets(path: Path, index: int) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[index]) if p.size]


def audio_samples(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(container.streams.audio[index])], axis=1)


def display_matrix(frame: av.VideoFrame) -> bytes | None:
    return next((bytes(s) for s in frame.side_data if s.type.name == "DISPLAYMATRIX"), None)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_clip_keeps_frames_timestamps_sound_and_rotation(workdir, capsys):
    clip = workdir / "clip.mp4"
    synthetic.write_clip(clip, frames(30), rotation=90)
    assert is_video(clip)
    assert main(["apply", str(clip)]) == 0
    out = workdir / "clip_sketch.mp4"
    assert "clip_sketch.mp4" in capsys.readouterr().out
    source, result = decoded(clip), decoded(out)
    assert len(result) == len(source) == 30
    assert times(out) == times(clip)
    assert audio_packets(out, 0) == audio_packets(clip, 0)  # copied, not re-encoded
    np.testing.assert_array_equal(audio_samples(out, 0), audio_samples(clip, 0))
    assert result[0].rotation == source[0].rotation == 90
    assert display_matrix(result[0]) == display_matrix(source[0]) is not None
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    # Painted upright (as shown), stored as the source was: turned back by the same matrix.
    sketch = Stylizer("sketch")
    for before, after in zip(source[::10], result[::10]):
        upright = cv2.rotate(before.to_ndarray(format="bgr24"), cv2.ROTATE_90_COUNTERCLOCKWISE)
        expected = cv2.rotate(sketch.stylize(upright), cv2.ROTATE_90_CLOCKWISE)
        difference = cv2.absdiff(after.to_ndarray(format="bgr24"), expected)
        assert difference.mean() < 3  # H.264 at CRF 18


def test_variable_frame_rate_keeps_its_timestamps(workdir):
    clip = workdir / "vfr.mkv"
    stamps = [0, 33, 67, 100, 250, 283, 700, 733, 766, 1500]  # milliseconds, with gaps
    synthetic.write_clip(clip, frames(len(stamps)), pts=stamps, time_base=Fraction(1, 1000), audio_tones=())
    assert main(["apply", str(clip), "-o", "vfr_out.mp4"]) == 0
    assert times(workdir / "vfr_out.mp4") == [Fraction(t, 1000) for t in stamps]


def test_video_without_audio(workdir):
    synthetic.write_clip(workdir / "silent.mp4", frames(12), audio_tones=())
    assert main(["apply", "silent.mp4"]) == 0
    with av.open(str(workdir / "silent_sketch.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]
    assert len(decoded(workdir / "silent_sketch.mp4")) == 12


def test_two_audio_streams_copied(workdir):
    clip = workdir / "two.mp4"
    synthetic.write_clip(clip, frames(15), audio_tones=(440.0, 660.0))
    assert main(["apply", str(clip)]) == 0
    out = workdir / "two_sketch.mp4"
    for index in (0, 1):
        assert audio_packets(out, index) == audio_packets(clip, index)
        np.testing.assert_array_equal(audio_samples(out, index), audio_samples(clip, index))
    assert not np.array_equal(audio_samples(out, 0), audio_samples(out, 1))


def test_audio_the_container_cannot_hold_is_reencoded_or_copied_to_mov(workdir):
    clip = workdir / "ulaw.mov"
    synthetic.write_clip(clip, frames(15), audio_codec="pcm_mulaw", muxer="mov")
    assert main(["apply", str(clip), "-o", "copied.mov"]) == 0
    assert audio_packets(workdir / "copied.mov", 0) == audio_packets(clip, 0)
    assert main(["apply", str(clip), "-o", "aac.mp4"]) == 0  # MP4 takes no mu-law: AAC
    with av.open(str(workdir / "aac.mp4")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    original, reencoded = audio_samples(clip, 0), audio_samples(workdir / "aac.mp4", 0)
    assert abs(reencoded.shape[1] - original.shape[1]) <= 2048  # the same length, give or take the codec's padding


@pytest.mark.parametrize("name, muxer", [("cut.mp4", "mp4"), ("cut_fast.mp4", "faststart"), ("cut.mkv", "matroska")])
def test_truncated_video_is_one_line_exit_2_no_output(workdir, capsys, name, muxer):
    whole = workdir / ("whole" + Path(name).suffix)
    synthetic.write_clip(whole, frames(60), muxer="mp4" if muxer == "faststart" else muxer)
    data = whole.read_bytes()
    if muxer == "faststart":  # index at the front: let FFmpeg move it, then cut the data
        stylize_video(whole, workdir / "front.mp4", lambda bgr: bgr)
        data = (workdir / "front.mp4").read_bytes()
    (workdir / name).write_bytes(data[: len(data) // 2])
    before = set(workdir.iterdir())
    assert main(["apply", name]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err
    assert "truncated" in err
    assert set(workdir.iterdir()) == before  # no output, no temporary file


def test_unknown_codec_is_one_line(workdir, capsys):
    synthetic.write_clip(workdir / "good.mkv", frames(5), audio_tones=())
    data = (workdir / "good.mkv").read_bytes()
    (workdir / "odd.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/ZZZ"))
    assert main(["apply", "odd.mkv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "cvstyle: error: odd.mkv: unknown video codec: this FFmpeg build cannot decode it"
    assert not (workdir / "odd_sketch.mp4").exists()


def test_not_a_video_after_a_video_header(workdir, capsys):
    (workdir / "fake.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    assert main(["apply", "fake.mp4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cvstyle: error: fake.mp4: cannot open the video")


def test_folder_mixes_photos_and_videos_with_size(workdir):
    folder = workdir / "trip"
    folder.mkdir()
    synthetic.write_clip(folder / "beach.mov", frames(8), audio_tones=(), muxer="mov")
    cv2.imwrite(str(folder / "cat.png"), frames(1)[0])
    assert main(["apply", str(folder), "-o", "out", "--size", "51"]) == 0
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["beach_sketch.mp4", "cat_sketch.jpg"]
    # 64x48 -> 51x38, one column dropped for 4:2:0: 50x38
    assert (decoded(workdir / "out" / "beach_sketch.mp4")[0].width, decoded(workdir / "out" / "beach_sketch.mp4")[0].height) == (50, 38)


@pytest.mark.parametrize("pixel_format, colour_range", [("yuv420p", 1), ("yuvj420p", 2)])
def test_colour_range_survives(workdir, pixel_format, colour_range):
    """An unpainted pass (--strength 0) gives back the source's colours, limited or full range."""
    colour = np.array([40, 120, 200], np.uint8)
    with av.open(str(workdir / "flat.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, pixel_format
        stream.codec_context.color_range = colour_range
        image = np.broadcast_to(colour, (48, 64, 3)).copy()
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
                format=pixel_format, dst_color_range=colour_range
            )
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert main(["apply", "flat.mp4", "--strength", "0"]) == 0
    source, result = decoded(workdir / "flat.mp4")[2], decoded(workdir / "flat_sketch.mp4")[2]
    assert result.color_range == colour_range
    before, after = (
        frame.to_ndarray(format="bgr24", src_color_range=colour_range).reshape(-1, 3).mean(axis=0)
        for frame in (source, result)
    )
    # One more trip through 8-bit 4:2:0 and H.264: exact for limited range; swscale
    # rounds full-range chroma down by up to one code (2 levels of blue). A range mix-up
    # is 9 or more levels off.
    assert np.abs(after - before).max() <= (0 if colour_range == 1 else 2)


def test_quality_maps_to_crf_and_file_size(workdir):
    assert [crf_for_quality(q) for q in (1, 75, 95, 100)] == [51, 25, 18, 16]
    clip = workdir / "clip.mp4"
    synthetic.write_clip(clip, frames(20, (160, 120)), audio_tones=())
    assert main(["apply", "clip.mp4", "-o", "fine.mp4", "--quality", "95"]) == 0
    assert main(["apply", "clip.mp4", "-o", "coarse.mp4", "--quality", "30"]) == 0
    assert (workdir / "coarse.mp4").stat().st_size < 0.7 * (workdir / "fine.mp4").stat().st_size


def test_interrupt_leaves_no_file_and_no_thread(workdir):
    clip = workdir / "clip.mp4"
    synthetic.write_clip(clip, frames(30))
    threads_before = threading.active_count()
    painted = []

    def paint(bgr):
        if len(painted) == 10:
            raise KeyboardInterrupt
        painted.append(bgr)
        return bgr

    with pytest.raises(KeyboardInterrupt):
        stylize_video(clip, workdir / "out.mp4", paint)
    assert not (workdir / "out.mp4").exists() and leftovers(workdir) == []
    assert threading.active_count() == threads_before


def test_progress_counts_every_frame(workdir):
    synthetic.write_clip(workdir / "clip.mp4", frames(12))
    seen = []
    stylize_video(workdir / "clip.mp4", workdir / "out.mkv", lambda bgr: bgr, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(n, 12) for n in range(1, 13)]


def test_video_output_name_must_be_a_video_format(workdir, capsys):
    synthetic.write_clip(workdir / "clip.mp4", frames(5), audio_tones=())
    assert main(["apply", "clip.mp4", "-o", "clip.jpg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "cvstyle: error: clip.jpg: videos are written as .mp4, .m4v, .mov, .mkv, not '.jpg'"
    assert not (workdir / "clip.jpg").exists()


@pytest.mark.parametrize(
    "head, container",
    [
        (b"\x00\x00\x00\x20ftypisom", "mp4"),
        (b"\x00\x00\x00\x20ftypheic", None),  # a HEIF still picture
        (b"\x1a\x45\xdf\xa3\x01", "matroska"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "avi"),
        (b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 11, "mpegts"),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"\xff\xd8\xff\xe0", None),
    ],
)
def test_containers_are_recognised_by_content(head, container):
    assert sniff_container(head) == container
