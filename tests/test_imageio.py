"""Image I/O: formats, orientation, depth, alpha, bad inputs and safe writes.

Every test file is generated here, in tmp_path; Pillow (a test-only dependency)
builds what OpenCV cannot write (EXIF orientation, palettes, grey+alpha) and serves
as an independent reference for EXIF orientation.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from cvstyle import imageio, quiet
from cvstyle.errors import ImageError
from cvstyle.imageio import Picture, decode_image, encode_image, read_image, write_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def noise(height: int = 48, width: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def quadrants(height: int = 64, width: int = 96) -> np.ndarray:
    """BGR image with four flat, distinct quadrants: survives JPEG, shows any rotation."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = (0, 0, 255)  # top-left red
    image[:h, w:] = (0, 255, 0)  # top-right green
    image[h:, :w] = (255, 0, 0)  # bottom-left blue
    image[h:, w:] = (255, 255, 255)  # bottom-right white
    return image


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def corners(bgr: np.ndarray) -> list[tuple[int, ...]]:
    """Colours near the four corners (TL, TR, BL, BR), rounded to flat colours."""
    h, w = bgr.shape[:2]
    points = [(4, 4), (4, w - 5), (h - 5, 4), (h - 5, w - 5)]
    return [tuple(int(round(v / 255)) * 255 for v in bgr[y, x]) for y, x in points]


def assert_one_line_error(excinfo: pytest.ExceptionInfo, name: str, *phrases: str) -> None:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ImageError)
    assert excinfo.value.exit_code == 2
    assert "\n" not in message
    assert name in message
    for phrase in phrases:
        assert phrase in message, message


RED, GREEN, BLUE, WHITE = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_round_trip(tmp_path, ext):
    picture = Picture(noise())
    write_image(tmp_path / f"out{ext}", picture)
    back = read_image(tmp_path / f"out{ext}")
    assert back.alpha is None
    np.testing.assert_array_equal(back.bgr, picture.bgr)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip_within_tolerance(tmp_path, ext):
    photo = read_image(SAMPLES / "astronaut.png")
    write_image(tmp_path / f"out{ext}", photo, quality=95)
    back = read_image(tmp_path / f"out{ext}")
    assert back.bgr.shape == photo.bgr.shape
    assert np.abs(back.bgr.astype(int) - photo.bgr).mean() < 3


def test_quality_changes_jpeg_size():
    photo = read_image(SAMPLES / "astronaut.png")
    assert len(encode_image(photo, ".jpg", quality=30)) < len(
        encode_image(photo, ".jpg", quality=95)
    )


def test_encode_accepts_extension_without_dot_and_any_case():
    assert encode_image(Picture(noise()), "PNG").startswith(b"\x89PNG")


def test_reads_the_bundled_samples():
    for name, shape in [("rocket.jpg", (427, 640, 3)), ("chelsea.png", (300, 451, 3))]:
        picture = read_image(SAMPLES / name)
        assert picture.bgr.shape == shape and picture.bgr.dtype == np.uint8
        assert picture.alpha is None


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(encode_image(Picture(noise()), ".png"))
    np.testing.assert_array_equal(read_image(path).bgr, noise())


def test_decode_image_from_bytes():
    data = (SAMPLES / "rocket.jpg").read_bytes()
    assert decode_image(data).bgr.shape == (427, 640, 3)


# ---------------------------------------------------------------- alpha


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_alpha_survives_lossless_write(tmp_path, ext):
    picture = Picture(noise(seed=1), noise(channels=1, seed=2))
    write_image(tmp_path / f"out{ext}", picture)
    back = read_image(tmp_path / f"out{ext}")
    np.testing.assert_array_equal(back.alpha, picture.alpha)
    if ext == ".png":  # OpenCV's TIFF reader premultiplies colour by alpha
        np.testing.assert_array_equal(back.bgr, picture.bgr)


def test_alpha_survives_webp(tmp_path):
    alpha = np.zeros((48, 64), np.uint8)
    alpha[:, 32:] = 255
    write_image(tmp_path / "out.webp", Picture(quadrants(48, 64), alpha))
    back = read_image(tmp_path / "out.webp")
    assert back.alpha is not None
    assert np.abs(back.alpha.astype(int) - alpha).max() <= 2


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_alpha_dropped_where_format_has_none(tmp_path, ext):
    picture = Picture(quadrants(), np.full((64, 96), 7, np.uint8))
    write_image(tmp_path / f"out{ext}", picture)
    back = read_image(tmp_path / f"out{ext}")
    assert back.alpha is None
    # Colour written as is, not composited over a background.
    assert corners(back.bgr) == [RED, GREEN, BLUE, WHITE]


def test_rgba_png_from_pillow_keeps_alpha(tmp_path):
    rgba = noise(channels=4, seed=3)
    (tmp_path / "rgba.png").write_bytes(pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    picture = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(picture.bgr, rgba[..., 2::-1])
    np.testing.assert_array_equal(picture.alpha, rgba[..., 3])


def test_grey_plus_alpha_png(tmp_path):
    grey, alpha = noise(channels=1, seed=4), noise(channels=1, seed=5)
    (tmp_path / "la.png").write_bytes(
        pil_bytes(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG")
    )
    picture = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(picture.bgr, np.dstack([grey] * 3))
    np.testing.assert_array_equal(picture.alpha, alpha)


def test_palette_png_with_and_without_transparency(tmp_path):
    palette = Image.fromarray(quadrants()[..., ::-1]).quantize(4)
    (tmp_path / "p.png").write_bytes(pil_bytes(palette, "PNG"))
    plain = read_image(tmp_path / "p.png")
    assert plain.alpha is None
    assert corners(plain.bgr) == [RED, GREEN, BLUE, WHITE]

    transparent_index = palette.getpixel((0, 0))  # the red quadrant
    (tmp_path / "pt.png").write_bytes(pil_bytes(palette, "PNG", transparency=transparent_index))
    picture = read_image(tmp_path / "pt.png")
    assert picture.alpha is not None
    assert picture.alpha[0, 0] == 0 and picture.alpha[-1, -1] == 255
    assert corners(picture.bgr)[1:] == [GREEN, BLUE, WHITE]


# ------------------------------------------------------ grey and 16-bit input


def test_greyscale_becomes_three_channels(tmp_path):
    grey = noise(channels=1)
    (tmp_path / "g.png").write_bytes(cv2.imencode(".png", grey)[1].tobytes())
    picture = read_image(tmp_path / "g.png")
    assert picture.bgr.shape == (48, 64, 3)
    np.testing.assert_array_equal(picture.bgr, np.dstack([grey] * 3))


def test_greyscale_jpeg(tmp_path):
    (tmp_path / "g.jpg").write_bytes(
        cv2.imencode(".jpg", np.full((40, 30), 200, np.uint8))[1].tobytes()
    )
    picture = read_image(tmp_path / "g.jpg")
    assert picture.bgr.shape == (40, 30, 3)
    assert np.abs(picture.bgr.astype(int) - 200).max() <= 1


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_colour_scaled_to_8_bit(tmp_path, ext):
    wide = noise().astype(np.uint16) * 257  # 8-bit values widened exactly
    wide[0, 0] = (0, 65535, 65535)
    (tmp_path / f"w{ext}").write_bytes(cv2.imencode(ext, wide)[1].tobytes())
    picture = read_image(tmp_path / f"w{ext}")
    assert picture.bgr.dtype == np.uint8
    expected = noise()
    expected[0, 0] = (0, 255, 255)
    np.testing.assert_array_equal(picture.bgr, expected)


def test_16_bit_grey_rounds_every_value(tmp_path):
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    (tmp_path / "all.png").write_bytes(cv2.imencode(".png", every)[1].tobytes())
    picture = read_image(tmp_path / "all.png")
    expected = ((every.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
    np.testing.assert_array_equal(picture.bgr[..., 1], expected)
    assert picture.bgr[-1, -1, 0] == 255


def test_16_bit_rgba_png_keeps_scaled_alpha(tmp_path):
    wide = np.zeros((8, 8, 4), np.uint16)
    wide[..., 3] = 65535
    wide[0, 0, 3] = 0
    (tmp_path / "w.png").write_bytes(cv2.imencode(".png", wide)[1].tobytes())
    picture = read_image(tmp_path / "w.png")
    assert picture.alpha is not None and picture.alpha.dtype == np.uint8
    assert picture.alpha[0, 0] == 0 and picture.alpha[1, 1] == 255


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize(
    "orientation, expected_corners",
    [
        # Tag 6: stored image must turn 90 degrees clockwise; 8: counter-clockwise.
        (6, [BLUE, RED, WHITE, GREEN]),
        (8, [GREEN, WHITE, RED, BLUE]),
        (3, [WHITE, BLUE, GREEN, RED]),
        (1, [RED, GREEN, BLUE, WHITE]),
    ],
)
def test_jpeg_exif_orientation(tmp_path, orientation, expected_corners):
    stored = Image.fromarray(quadrants()[..., ::-1])  # 96 wide, 64 high
    path = tmp_path / f"phone_{orientation}.jpg"
    path.write_bytes(pil_bytes(stored, "JPEG", exif=exif_with_orientation(orientation), quality=95))
    picture = read_image(path)
    assert picture.bgr.shape == ((96, 64, 3) if orientation in (6, 8) else (64, 96, 3))
    assert corners(picture.bgr) == expected_corners


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, fmt, orientation):
    stored = Image.fromarray(noise(6, 10, seed=orientation)[..., ::-1])
    if fmt == "TIFF":
        data = pil_bytes(stored, fmt, tiffinfo={0x0112: orientation})
    else:
        data = pil_bytes(stored, fmt, exif=exif_with_orientation(orientation), lossless=True)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))[..., ::-1]
    np.testing.assert_array_equal(decode_image(data).bgr, expected)


def test_broken_exif_block_is_ignored(tmp_path):
    photo = pil_bytes(
        Image.fromarray(quadrants()), "JPEG", exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff"
    )
    assert decode_image(photo).bgr.shape == (64, 96, 3)


def test_progressive_jpeg_and_trailing_data_accepted():
    progressive = pil_bytes(Image.open(SAMPLES / "rocket.jpg"), "JPEG", progressive=True)
    # Phones append data after the end-of-image marker (Motion Photo videos).
    picture = decode_image(progressive + b"\x00\x00ftypmp42" + bytes(1000))
    assert picture.bgr.shape == (427, 640, 3)


# ---------------------------------------------------------------- paths


def test_non_ascii_file_names(tmp_path):
    picture = Picture(noise(), noise(channels=1, seed=9))
    path = tmp_path / "фото été.png"
    write_image(path, picture)
    assert os.listdir(tmp_path) == ["фото été.png"]
    back = read_image(str(path))
    np.testing.assert_array_equal(back.bgr, picture.bgr)
    np.testing.assert_array_equal(back.alpha, picture.alpha)


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, Picture(noise(seed=1)))
    write_image(path, Picture(noise(seed=2)))
    np.testing.assert_array_equal(read_image(path).bgr, noise(seed=2))
    assert os.listdir(tmp_path) == ["out.png"]


# ---------------------------------------------------------------- bad input


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, "notes.jpg", "not an image")


@pytest.mark.parametrize("cut", [2, 100, 40_000])
def test_truncated_jpeg_refused(tmp_path, cut):
    data = (SAMPLES / "rocket.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:-cut])
    with pytest.raises(ImageError) as excinfo:
        read_image(path)
    assert_one_line_error(excinfo, "cut.jpg", "truncated JPEG")


def test_truncated_progressive_jpeg_refused():
    data = pil_bytes(Image.open(SAMPLES / "rocket.jpg"), "JPEG", progressive=True)
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode_image(data[: len(data) * 2 // 3], "p.jpg")


@pytest.mark.parametrize("ext, problem", [(".png", "truncated PNG"), (".webp", "truncated WebP")])
def test_truncated_png_and_webp_refused(tmp_path, ext, problem):
    data = encode_image(Picture(noise()), ext)
    with pytest.raises(ImageError) as excinfo:
        decode_image(data[: len(data) // 2], f"half{ext}")
    assert_one_line_error(excinfo, f"half{ext}", problem)


@pytest.mark.parametrize("ext", [".bmp", ".tif"])
def test_truncated_bmp_and_tiff_refused(tmp_path, ext):
    data = encode_image(Picture(noise()), ext)
    with pytest.raises(ImageError) as excinfo:
        decode_image(data[: len(data) // 2], f"half{ext}")
    assert_one_line_error(excinfo, f"half{ext}", "truncated")


def test_corrupt_header(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        decode_image(b"\x89PNG\r\n\x1a\n\x00\x00", "stub.png")
    assert_one_line_error(excinfo, "stub.png", "corrupt or truncated PNG")


def test_bad_inputs_print_nothing(capfd):
    data = (SAMPLES / "rocket.jpg").read_bytes()
    png = encode_image(Picture(noise()), ".png")
    # Refused from the header and structure, before libjpeg or libpng could complain.
    for bad in [data[:-100], png[:-20], b"GIF89a" + bytes(100)]:
        with pytest.raises(ImageError):
            decode_image(bad, "bad")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.skipif(
    not hasattr(cv2.utils, "logging"),
    reason="older OpenCV 4.x prints codec failures with std::cerr",
)
def test_opencv_decode_failure_prints_nothing(capfd):
    bmp = encode_image(Picture(noise()), ".bmp")
    with pytest.raises(ImageError, match="cannot decode the BMP data"):
        decode_image(bmp[:-100], "cut.bmp")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path / "empty.png")
    assert_one_line_error(excinfo, "empty.png", "empty file")


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path / "nowhere.jpg")
    assert_one_line_error(excinfo, "nowhere.jpg", "no such file")


def test_directory(tmp_path):
    (tmp_path / "album.jpg").mkdir()
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path / "album.jpg")
    assert_one_line_error(excinfo, "album.jpg", "is a directory")


def test_file_name_with_newline_stays_on_one_line(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        read_image(tmp_path / "two\nlines.jpg")
    assert "\n" not in str(excinfo.value) and "two\\nlines.jpg" in str(excinfo.value)


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims width x height 8-bit grey pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(width + 1)))  # one row only
        + png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(100_000, 100_000))
    # Decoding would need 10 GB; the refusal must come from the header alone.
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("pixels decoded"))
    with pytest.raises(ImageError) as excinfo:
        read_image(path)
    assert_one_line_error(
        excinfo, "bomb.png", "100000x100000", "decompression bomb", "--max-pixels", "CVSTYLE_MAX_PIXELS"
    )


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_pixel_limit_per_call(tmp_path, ext):
    path = tmp_path / f"small{ext}"
    write_image(path, Picture(noise(48, 64)))
    assert read_image(path, max_pixels=48 * 64).bgr.shape == (48, 64, 3)
    with pytest.raises(ImageError) as excinfo:
        read_image(path, max_pixels=48 * 64 - 1)
    assert_one_line_error(excinfo, f"small{ext}", "64x48", "limit")


def test_lossy_webp_header_size():
    data = encode_image(Picture(noise(48, 64)), ".webp", quality=50)
    assert data[12:16] == b"VP8 "
    with pytest.raises(ImageError, match="64x48"):
        decode_image(data, max_pixels=100)


def test_pixel_limit_from_environment(monkeypatch):
    data = encode_image(Picture(noise(48, 64)), ".png")
    monkeypatch.setenv("CVSTYLE_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="limit of 1,000"):
        decode_image(data)
    assert decode_image(data, max_pixels=10_000).bgr.shape == (48, 64, 3)  # argument wins
    monkeypatch.setenv("CVSTYLE_MAX_PIXELS", "3_072")
    assert decode_image(data).bgr.shape == (48, 64, 3)
    monkeypatch.setenv("CVSTYLE_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="CVSTYLE_MAX_PIXELS must be a positive whole number"):
        decode_image(data)


def test_default_pixel_limit(monkeypatch):
    monkeypatch.delenv("CVSTYLE_MAX_PIXELS", raising=False)
    over = imageio.DEFAULT_MAX_PIXELS // 10_000 + 1
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(bomb_png(10_000, over), "big.png")


def test_opencv_log_level_restored_after_failure():
    logging = quiet._cv_logging  # cv2.utils.logging, or cv2 itself on older 4.x
    before = logging.getLogLevel()
    with pytest.raises(ImageError):
        decode_image(encode_image(Picture(noise()), ".bmp")[:100], "x.bmp")
    assert logging.getLogLevel() == before


# ---------------------------------------------------------------- bad output


def test_unsupported_output_extension(tmp_path):
    path = tmp_path / "out.gif"
    with pytest.raises(ImageError) as excinfo:
        write_image(path, Picture(noise()))
    assert_one_line_error(excinfo, "out.gif", "unsupported output format '.gif'")
    assert os.listdir(tmp_path) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        write_image(tmp_path / "no" / "out.png", Picture(noise()))
    assert_one_line_error(excinfo, "out.png", "does not exist")


def test_output_folder_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError) as excinfo:
        write_image(tmp_path / "file" / "out.png", Picture(noise()))
    assert_one_line_error(excinfo, "out.png", "cannot write a file in")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(ImageError) as excinfo:
            write_image(folder / "out.png", Picture(noise()))
        assert_one_line_error(excinfo, "out.png", "Permission denied")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_unwritable_output_folder_simulated(tmp_path, monkeypatch):
    # The real check above is skipped as root (CI containers); simulate the refusal.
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.path.dirname(path) == str(tmp_path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ImageError) as excinfo:
        write_image(tmp_path / "out.jpg", Picture(noise()))
    assert_one_line_error(excinfo, "out.jpg", "cannot write a file in", "Permission denied")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ImageError) as excinfo:
        write_image(tmp_path / "out.png", Picture(noise()))
    assert_one_line_error(excinfo, "out.png", "No space left on device")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_image(path, Picture(noise(seed=1)))
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        write_image(path, Picture(noise(seed=2)))
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(read_image(path).bgr, noise(seed=1))


def test_failed_encoding_leaves_nothing(tmp_path):
    too_wide = Picture(np.zeros((2, 20_000, 3), np.uint8))  # WebP stops at 16383 pixels
    with pytest.raises(ImageError) as excinfo:
        write_image(tmp_path / "wide.webp", too_wide)
    assert_one_line_error(excinfo, "wide.webp", "could not encode a 20000x2 image as .webp")
    assert os.listdir(tmp_path) == []


def test_new_files_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_image(tmp_path / "out.png", Picture(noise()))
    finally:
        os.umask(old)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- API misuse


def test_picture_rejects_mismatched_alpha():
    with pytest.raises(ValueError, match="alpha"):
        Picture(noise(48, 64), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="bgr"):
        Picture(noise(48, 64, channels=4))


def test_quality_out_of_range():
    with pytest.raises(ValueError, match="quality"):
        encode_image(Picture(noise()), ".jpg", quality=0)


def test_extension_sets():
    assert imageio.READ_EXTENSIONS == {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    assert imageio.ALPHA_EXTENSIONS <= imageio.WRITE_EXTENSIONS
