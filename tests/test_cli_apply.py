"""`cvstyle apply` end to end on real files: outputs, names, formats, bad inputs."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvstyle.cli import main
from cvstyle.imageio import read_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def small_photo(folder: Path, name: str = "cat.png", size=(90, 60)) -> Path:
    image = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), size, interpolation=cv2.INTER_AREA)
    path = folder / name
    assert cv2.imwrite(str(path), image)
    return path


def test_default_builtin_model_on_a_bundled_sample(workdir, capsys):
    assert main(["apply", str(SAMPLES / "chelsea.png")]) == 0
    out = workdir / "chelsea_sketch.jpg"
    assert out.is_file() and "chelsea_sketch.jpg" in capsys.readouterr().out
    original = cv2.imread(str(SAMPLES / "chelsea.png"))
    result = cv2.imread(str(out))
    assert result.shape == original.shape
    # A pencil sketch: nearly grey, unlike the orange cat.
    hsv = cv2.cvtColor(result, cv2.COLOR_BGR2HSV)
    assert hsv[:, :, 1].mean() < 0.5 * cv2.cvtColor(original, cv2.COLOR_BGR2HSV)[:, :, 1].mean()


def test_one_output_per_input_and_model(workdir, eccv16_model, instance_norm_model):
    folder = workdir / "photos"
    folder.mkdir()
    small_photo(folder, "a.png")
    small_photo(folder, "b.jpg", (61, 47))
    (folder / "notes.txt").write_text("not a photo")
    code = main(["apply", "-m", str(eccv16_model), "-m", str(instance_norm_model), str(folder), "-o", "out"])
    assert code == 0
    names = sorted(p.name for p in (workdir / "out").iterdir())
    assert names == [
        "a_eccv16_fixture.jpg", "a_instance_norm_fixture.jpg",
        "b_eccv16_fixture.jpg", "b_instance_norm_fixture.jpg",
    ]
    assert cv2.imread(str(workdir / "out" / "b_eccv16_fixture.jpg")).shape == (47, 61, 3)


def test_no_progress_bar_when_stderr_is_not_a_terminal(workdir, capsys):
    """A log gets the "wrote" lines, not a bar's carriage returns."""
    small_photo(workdir, "a.png")
    small_photo(workdir, "b.png")
    assert main(["apply", "a.png", "b.png", "-o", "out"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "image/s" not in captured.err and "it/s" not in captured.err
    assert captured.out.count("wrote ") == 2


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_single_large_photo_shows_its_tiles_on_a_terminal(workdir, monkeypatch):
    small_photo(workdir, size=(150, 110))
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["apply", "cat.png", "--tile", "on", "--tile-size", "64"]) == 0
    shown = terminal.getvalue()
    assert "tiles:" in shown and "/6 [" in shown  # 150x110 in 64 px cores: 3 x 2 tiles
    assert (workdir / "cat_sketch.jpg").is_file()


def test_glob_size_and_explicit_png_output(workdir):
    small_photo(workdir, "x1.png")
    assert main(["apply", "x*.png", "--size", "40", "-o", "result.png"]) == 0
    assert cv2.imread(str(workdir / "result.png")).shape == (27, 40, 3)


def test_single_file_output_refused_for_many_jobs(workdir, capsys):
    small_photo(workdir, "a.png")
    small_photo(workdir, "b.png")
    assert main(["apply", "a.png", "b.png", "-o", "one.jpg"]) == 1
    assert "give a directory" in capsys.readouterr().err
    assert not (workdir / "one.jpg").exists()


def test_an_unsupported_output_extension_is_refused_not_made_a_folder(workdir, capsys):
    small_photo(workdir)
    assert main(["apply", "cat.png", "-o", "out.gif"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "cvstyle: error: -o out.gif: unsupported output format '.gif' (supported: .bmp, .jpeg, .jpg, .m4v, .mkv, "
        ".mov, .mp4, .png, .tif, .tiff, .webp); to write into a folder of that name, create it first\n"
    )
    assert list(workdir.iterdir()) == [workdir / "cat.png"]
    (workdir / "frames.v2").mkdir()  # an existing folder with a dot in its name is a folder
    assert main(["apply", "cat.png", "-o", "frames.v2"]) == 0
    assert (workdir / "frames.v2" / "cat_sketch.jpg").is_file()


def test_transparency_is_kept_in_png(workdir):
    bgra = np.zeros((50, 70, 4), np.uint8)
    bgra[:, :, :3] = cv2.resize(cv2.imread(str(SAMPLES / "chelsea.png")), (70, 50))
    bgra[:, :35, 3] = 255
    bgra[:, 35:, 3] = 40
    cv2.imwrite(str(workdir / "logo.png"), bgra)
    assert main(["apply", "logo.png"]) == 0
    result = read_image(workdir / "logo_sketch.png")
    assert result.alpha is not None and np.array_equal(result.alpha, bgra[:, :, 3])


def test_non_ascii_paths(workdir):
    folder = workdir / "фото été"
    folder.mkdir()
    small_photo(folder, "кот.png")
    assert main(["apply", str(folder / "кот.png"), "-o", str(folder)]) == 0
    assert (folder / "кот_sketch.jpg").is_file()


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("notes.jpg", b"hello, this is text\n", "not an image"),
        ("empty.png", b"", "empty"),
        ("cut.jpg", None, "truncated"),
    ],
)
def test_bad_inputs_give_one_line_exit_2_and_no_output(workdir, capsys, name, content, problem):
    path = workdir / name
    if content is None:
        ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(SAMPLES / "chelsea.png")))
        content = jpeg.tobytes()[: len(jpeg) // 2]
    path.write_bytes(content)
    assert main(["apply", name]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and problem in err.lower()
    assert sorted(p.name for p in workdir.iterdir() if p.is_file()) == [name]


def test_missing_input_and_partial_failure_summary(workdir, capsys):
    small_photo(workdir, "good.png")
    assert main(["apply", "good.png", "missing.png"]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 jobs failed" in err and "missing.png: no such file" in err
    assert (workdir / "good_sketch.jpg").is_file()


def test_model_not_downloaded_names_the_fetch_command(workdir, capsys):
    small_photo(workdir)
    assert main(["apply", "-m", "candy", "cat.png"]) == 3
    err = capsys.readouterr().err
    assert "cvstyle fetch-models instance_norm/candy" in err
    assert not list(workdir.glob("cat_*"))


def test_garbage_model_file_is_refused_cleanly(workdir, capsys):
    small_photo(workdir)
    (workdir / "fake.t7").write_text("<html><body>301 Moved Permanently</body></html>")
    assert main(["apply", "-m", "fake.t7", "cat.png"]) == 3
    err = capsys.readouterr().err
    assert "fake.t7" in err and "not a Torch7 model" in err


def test_without_the_torch_importer_models_run_through_onnx(workdir, capsys, monkeypatch):
    """OpenCV 5 has no readNetFromTorch: the .t7 is converted to ONNX once and runs;
    without the onnx package the user is told, in one line, what to install."""
    import sys

    import cv2 as cv2_module

    photo = small_photo(workdir)
    shutil.copy(Path(__import__("cvstyle").__file__).parent / "data" / "sketch.t7", workdir / "s.t7")
    assert main(["apply", "-m", "s.t7", "cat.png", "--engine", "opencv", "-o", "torch.png"]) == 0
    monkeypatch.delattr(cv2_module.dnn, "readNetFromTorch", raising=False)  # gone in OpenCV 5
    assert main(["apply", "-m", "s.t7", "cat.png", "--engine", "opencv", "-o", "onnx.png"]) == 0
    via_onnx, via_torch = cv2.imread("onnx.png").astype(int), cv2.imread("torch.png").astype(int)
    assert np.abs(via_onnx - via_torch).max() <= 1
    assert np.abs(via_onnx - cv2.imread(str(photo))).mean() > 20
    for cached in workdir.glob("s.*.onnx"):
        cached.unlink()
    shutil.copy(workdir / "s.t7", workdir / "s2.t7")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    capsys.readouterr()
    assert main(["apply", "-m", "s2.t7", "cat.png", "--engine", "opencv"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install onnx" in err


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("cvstyle: error: "), err
    return err


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--median-filter", "4"], "--median-filter: median filter size must be odd and positive, not 4"),
        (["-m", "sketch:-1+sketch:2"], "--model sketch:-1+sketch:2: style weights must be zero or positive"),
        (["-m", "sketch:0+sketch:0"], "style weights must not all be zero"),
        (["--strength", "1.5"], "Invalid value for '--strength': 1.5 is not in the range 0<=x<=1"),
        (["--device", "tpu"], "unknown device 'tpu': choose one of auto, cpu"),
        (["--engine", "tensorflow"], "unknown engine 'tensorflow': choose one of auto, opencv, onnxruntime"),
        (["--size", "0"], "Invalid value for '--size'"),
        (["--bogus"], "No such option '--bogus'"),
        (["--tile-size", "66"], "--tile-size: tile size must be a multiple of 4"),
        (["--max-memory", "lots"], "--max-memory: memory size 'lots' is not a size"),
    ],
)
def test_every_option_error_is_one_line_with_exit_2(workdir, capsys, args, problem):
    small_photo(workdir)
    assert main(["apply", *args, "cat.png"]) == 2
    assert problem in one_line_error(capsys)
    assert not list(workdir.glob("cat_*"))


def test_a_device_this_machine_lacks_is_exit_1(workdir, capsys):
    small_photo(workdir)
    assert main(["apply", "--device", "cuda", "--engine", "opencv", "cat.png"]) == 1
    assert "cuda" in one_line_error(capsys)


def test_strength_zero_gives_back_the_photo(workdir):
    photo = small_photo(workdir)
    assert main(["apply", "cat.png", "--strength", "0", "-o", "same.png"]) == 0
    assert np.array_equal(cv2.imread(str(workdir / "same.png")), cv2.imread(str(photo)))


def test_weighted_mix_with_zero_weight_equals_the_single_model(workdir, instance_norm_model):
    small_photo(workdir)
    other = str(instance_norm_model)
    assert main(["apply", "cat.png", "-m", "sketch", "-o", "single.png"]) == 0
    assert main(["apply", "cat.png", "-m", f"sketch:1+{other}:0", "-o", "mixed.png"]) == 0
    assert np.array_equal(cv2.imread("single.png"), cv2.imread("mixed.png"))
    assert main(["apply", "cat.png", "-m", f"sketch:-1+{other}:2", "-o", "bad.png"]) == 2


def test_fetch_flag_downloads_a_missing_model_first(workdir, capsys):
    from httpserver import ModelServer, model_bytes, sha256_digest, serve, write_manifest

    data = model_bytes()
    small_photo(workdir)
    with ModelServer() as server:
        server.routes["/style.t7"] = serve(data)
        manifest = write_manifest(
            workdir / "mine.txt", f"test/style {server.url('/style.t7')} {sha256_digest(data)} Test style"
        )
        assert main(["apply", "-m", "style", "--manifest", str(manifest), "cat.png"]) == 3
        assert "--manifest" in capsys.readouterr().err
        assert main(["apply", "-m", "style", "--manifest", str(manifest), "--fetch", "cat.png"]) == 0
    assert (workdir / "home" / "models" / "test" / "style.t7").read_bytes() == data
    assert (workdir / "cat_style.jpg").is_file()


def test_forced_tiles_with_exact_statistics_equal_one_pass(workdir, instance_norm_model):
    from cvstyle import tiling

    small_photo(workdir, size=(1024, 768))  # three times the 512x512 the estimate is measured on
    model = ["-m", str(instance_norm_model), "cat.png", "--tile-size", "512"]  # several tiles
    assert main(["apply", *model, "--tile", "off", "-o", "whole.png"]) == 0
    assert main(["apply", *model, "--tile", "on", "--exact-statistics", "-o", "exact.png"]) == 0
    assert main(["apply", *model, "--tile", "on", "--statistics", "estimate", "-o", "estimated.png"]) == 0
    assert len(tiling.plan_tiles(768, 1024, max_core=512, margin=32)) == 4
    whole, exact, estimated = (cv2.imread(name).astype(int) for name in ("whole.png", "exact.png", "estimated.png"))
    assert np.abs(exact - whole).max() <= 2
    assert np.abs(estimated - whole).mean() > 2
