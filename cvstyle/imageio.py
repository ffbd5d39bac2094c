"""Reading and writing pictures: format checks, EXIF orientation, alpha, safe writes.

OpenCV decodes and encodes the pixels, always from and to bytes in memory
(``cv2.imdecode``/``cv2.imencode``), so non-ASCII paths work on every platform.
What OpenCV is lenient or silent about is checked here first, from the file's own
header and structure, without decoding any pixel: the format, the pixel count
(decompression bombs are refused before any memory is allocated for them), a
truncated JPEG (which libjpeg would decode, greying out the missing part) and the
EXIF orientation (which ``IMREAD_UNCHANGED``, needed to keep alpha and 16 bits,
ignores). The header readers of five formats are what make this module longer than
the others: each is a few lines, and they share the checks that follow them.

A bad file, or an output that cannot be written, raises
:class:`~cvstyle.errors.ImageError` with a one-line message ``<file>: <problem>``;
misuse of the API (a mis-shaped Picture, quality outside 1-100) raises ValueError.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError, quote
from .files import write_atomically
from .quiet import library_messages, quiet_opencv

DEFAULT_MAX_PIXELS = 200_000_000
MAX_PIXELS_ENV = "CVSTYLE_MAX_PIXELS"
READ_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# What write_image encodes; the CLI names outputs and refuses others from this set.
WRITE_EXTENSIONS = READ_EXTENSIONS
# Formats whose OpenCV encoder and decoder both keep a fourth channel (BMP alpha
# does not survive older OpenCV 4.x readers, JPEG has none).
ALPHA_EXTENSIONS = frozenset({".png", ".webp", ".tif", ".tiff"})


@dataclass
class Picture:
    """A decoded image: upright 8-bit BGR colour and, if the file had one, its alpha."""

    bgr: np.ndarray  # H x W x 3 uint8
    alpha: np.ndarray | None = None  # H x W uint8

    def __post_init__(self) -> None:
        # Checked here so that a colour/alpha mismatch (say, after resizing only the
        # colour) fails where it is made, not deep inside an encoder.
        bgr = self.bgr
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(
                f"Picture.bgr must be an HxWx3 uint8 array, got {bgr.dtype} {bgr.shape}"
            )
        alpha = self.alpha
        if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != bgr.shape[:2]):
            raise ValueError(
                f"Picture.alpha must be an HxW uint8 array matching bgr {bgr.shape[:2]}, "
                f"got {alpha.dtype} {alpha.shape}"
            )


# ---------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> Picture:
    """Read an image file into an upright :class:`Picture`.

    ``max_pixels`` (default: ``$CVSTYLE_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`)
    bounds width x height; larger images are refused before their pixels are decoded.
    """
    name = os.fsdecode(path)
    # stat first: opening a FIFO would block, and a directory deserves its own message.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise _error(name, "no such file") from None
    except OSError as exc:
        raise _error(name, f"cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise _error(name, "is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise _error(name, "not a regular file")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise _error(name, f"cannot read ({exc.strerror})") from None
    return decode_image(data, name, max_pixels)


def decode_image(
    data: bytes, name: str = "<upload>", max_pixels: int | None = None, max_bytes: int | None = None
) -> Picture:
    """Decode an encoded image held in memory; ``name`` only labels error messages.

    ``max_bytes`` bounds the memory the decoded pixels may take (pixels x bytes per
    pixel, as the header declares them): a small file of large 16-bit pixels is refused
    before decoding, like one of too many pixels.
    """
    limit = _pixel_limit(max_pixels)
    if not data:
        raise _error(name, "empty file (0 bytes)")
    kind, width, height, orientation = _read_header(data, name)
    if width * height > limit:
        raise _error(
            name,
            f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{limit:,} (possible decompression bomb; allow more with --max-pixels or {MAX_PIXELS_ENV})",
        )
    decoded_bytes = width * height * _decoded_bytes_per_pixel(kind, data)
    if max_bytes is not None and decoded_bytes > max_bytes:
        raise _error(
            name,
            f"decoding this {width}x{height} {kind} image would take {decoded_bytes / 1e6:,.1f} MB, "
            f"above the limit of {max_bytes / 1e6:,.1f} MB (possible decompression bomb)",
        )
    try:
        with quiet_opencv(), library_messages(_is_codec_message) as messages:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        array = None
    said = f" ({quote(messages[0], 100)})" if messages else ""
    if array is None:
        raise _error(
            name,
            f"cannot decode the {kind} data{said or ' (corrupt or truncated file, or an unsupported variant)'}",
        )
    damage = [m for m in messages if m.startswith(_JPEG_DAMAGE) and "extraneous bytes" not in m]
    if damage:
        # libjpeg greys out what it could not decode: refused, like a truncated file.
        raise _error(name, f"corrupt JPEG data ({quote(damage[0], 100)})")

    if array.dtype == np.uint16:
        # v * 255 / 65535 = v / 257, rounded: 65535 -> 255, and 8-bit values widened
        # by x257 come back exactly. convertScaleAbs rounds and needs no float copy.
        array = cv2.convertScaleAbs(array, alpha=1 / 257)
    elif array.dtype != np.uint8:
        raise _error(
            name, f"unsupported {array.dtype} samples (only 8- and 16-bit images are supported)"
        )
    array = _ORIENT[orientation](array)

    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels == 1:
        return Picture(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))
    if channels == 3:
        return Picture(array)
    if channels == 4:  # OpenCV also expands grey+alpha and palette+tRNS PNGs to BGRA
        return Picture(np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3]))
    raise _error(name, f"unsupported {channels}-channel {kind} image")


# libjpeg's warnings that mean the pixels are damaged (it greys out what it could not
# decode); extraneous bytes before a marker, or "Warning: ..." on a header, do not.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG", "Invalid SOS", "Inconsistent progression")


def _is_codec_message(line: str) -> bool:
    """libjpeg's warnings and libpng's errors and warnings, as they print them."""
    return line.startswith((*_JPEG_DAMAGE, "Warning:", "libpng "))


def _decoded_bytes_per_pixel(kind: str, data: bytes) -> int:
    """At most how many bytes a pixel takes once OpenCV decodes it: up to four channels
    (it expands grey+alpha and palettes to BGRA) of the header's sample size."""
    if kind == "PNG":
        return 8 if data[24] == 16 else 4  # IHDR bit depth
    if kind == "TIFF":
        return 4 * max(1, -(-_tiff_bits_per_sample(data) // 8))
    return 3 if kind == "JPEG" else 4


def _pixel_limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        return max_pixels
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)  # accepts 200_000_000 too
    except ValueError:
        value = 0
    if value <= 0:
        raise ImageError(f"{MAX_PIXELS_ENV} must be a positive whole number, not {text!r}")
    return value


# ------------------------------------------------- headers, without decoding
#
# Each parser returns (width, height, EXIF orientation 1-8). It raises ValueError
# with a user-facing diagnosis, or lets struct.error/KeyError escape for a header
# too short or incomplete to read.


def _read_header(data: bytes, name: str) -> tuple[str, int, int, int]:
    kind = _sniff(data)
    if kind is None:
        raise _error(name, "not an image (expected JPEG, PNG, WebP, BMP or TIFF data)")
    try:
        width, height, orientation = _HEADER_PARSERS[kind](data)
    except ValueError as exc:
        raise _error(name, str(exc)) from None
    except (struct.error, KeyError):
        raise _error(name, f"corrupt or truncated {kind} file") from None
    if width <= 0 or height <= 0:
        raise _error(name, f"corrupt {kind} header (image size {width}x{height})")
    return kind, width, height, orientation


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)


def _sniff(data: bytes) -> str | None:
    """The format named by the file's magic bytes; the extension is not trusted."""
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing), a restart marker
# (0xD0-0xD7) or more 0xFF fill bytes; anything else starts a real marker.
_JPEG_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-SOF15
_JPEG_TRUNCATED = "truncated JPEG file (no end-of-image marker)"


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    # Walk the segments up to the end-of-image marker: libjpeg decodes a truncated
    # file anyway (greying out the rest), so reaching the marker is checked here.
    # Data after it (Motion Photo videos, MPF images) is allowed.
    size: tuple[int, int] | None = None
    orientation = 1
    pos = 2
    while True:
        if pos + 2 > len(data):
            raise ValueError(_JPEG_TRUNCATED)
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                raise ValueError(_JPEG_TRUNCATED)
            continue
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image
            break
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2:
            raise ValueError("corrupt JPEG file (bad segment length)")
        if end > len(data):
            raise ValueError(_JPEG_TRUNCATED)
        if marker in _JPEG_FRAME_MARKERS and size is None:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            size = (width, height)
        elif marker == 0xE1 and data.startswith(b"Exif\x00\x00", pos + 4):
            orientation = _exif_orientation(data[pos + 4 : end])
        pos = end
        if marker == 0xDA:  # start of scan: skip its entropy-coded data
            found = _JPEG_MARKER_AFTER_SCAN.search(data, pos)
            if found is None:
                raise ValueError(_JPEG_TRUNCATED)
            pos = found.start()
    if size is None:
        raise ValueError("corrupt JPEG file (no image frame)")
    return size[0], size[1], orientation


def _png_header(data: bytes) -> tuple[int, int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("corrupt or truncated PNG file (no IHDR chunk)")
    width, height = struct.unpack_from(">II", data, 16)
    orientation = 1
    pos = 8
    # Walk the chunks to IEND, so that a truncated file gets a clear message rather
    # than libpng's complaint on stderr.
    while pos + 8 <= len(data):
        length, chunk = struct.unpack_from(">I4s", data, pos)
        if chunk == b"IEND":
            return width, height, orientation
        if chunk == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
        pos += 12 + length  # length, type, data, CRC
    raise ValueError("truncated PNG file (no IEND chunk)")


def _webp_header(data: bytes) -> tuple[int, int, int]:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    if end > len(data):
        raise ValueError("truncated WebP file")
    size: tuple[int, int] | None = None
    orientation = 1
    pos = 12
    while pos + 8 <= end:
        chunk = data[pos : pos + 4]
        (length,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk == b"VP8X":  # extended format: the canvas size, 24 bits each, minus one
            (sizes,) = struct.unpack_from("6s", data, body + 4)
            size = (
                int.from_bytes(sizes[:3], "little") + 1,
                int.from_bytes(sizes[3:], "little") + 1,
            )
        elif chunk == b"VP8 " and size is None:  # lossy: 14-bit sizes after the start code
            width, height = struct.unpack_from("<HH", data, body + 6)
            size = (width & 0x3FFF, height & 0x3FFF)
        elif chunk == b"VP8L" and size is None:  # lossless: 14-bit sizes minus one
            (bits,) = struct.unpack_from("<I", data, body + 1)
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif chunk == b"EXIF":
            orientation = _exif_orientation(data[body : body + length])
        pos = body + length + (length & 1)  # chunks are padded to an even length
    if size is None:
        raise ValueError("corrupt WebP file (no image data)")
    return size[0], size[1], orientation


def _bmp_header(data: bytes) -> tuple[int, int, int]:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height), 1  # a negative height means rows stored top-down


def _tiff_header(data: bytes) -> tuple[int, int, int]:
    tags = _tiff_tags(data)
    # OpenCV's TIFF reader (libtiff) applies the Orientation tag itself, even with
    # IMREAD_UNCHANGED, so there is nothing left to do after decoding.
    return tags[256], tags[257], 1  # ImageWidth, ImageLength


def _tiff_tags(data: bytes) -> dict[int, int]:
    """The single-number (SHORT or LONG) entries of a TIFF structure's first directory."""
    if data[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF structure")
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, offset)
    tags = {}
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
        if n == 1 and kind in (3, 4):  # SHORT, LONG
            (tags[tag],) = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, entry + 8)
    return tags


def _tiff_bits_per_sample(data: bytes) -> int:
    """The first BitsPerSample value of a TIFF's first directory (1 when absent)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        for entry in range(offset + 2, offset + 2 + 12 * count, 12):
            tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
            if tag == 258:  # SHORTs: inline up to two, else at an offset
                (where,) = struct.unpack_from(order + "I", data, entry + 8) if n > 2 else (entry + 8,)
                return struct.unpack_from(order + "H", data, where)[0]
    except struct.error:
        return 64  # unreadable: assume the widest samples
    return 1


def _exif_orientation(exif: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF block; 1 when absent or unreadable."""
    if exif.startswith(b"Exif\x00\x00"):  # JPEG always has this prefix, WebP/PNG writers vary
        exif = exif[6:]
    try:
        value = _tiff_tags(exif).get(0x0112, 1)
    except (ValueError, struct.error):
        return 1  # a broken EXIF block must not make an otherwise good photo unreadable
    return value if 1 <= value <= 8 else 1


_HEADER_PARSERS: dict[str, Callable[[bytes], tuple[int, int, int]]] = {
    "JPEG": _jpeg_header,
    "PNG": _png_header,
    "WebP": _webp_header,
    "BMP": _bmp_header,
    "TIFF": _tiff_header,
}

# EXIF orientation -> the transform that makes the stored pixels upright.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


# ---------------------------------------------------------------- writing


def encode_image(picture: Picture, ext: str, quality: int = 95) -> bytes:
    """Encode ``picture`` in the format named by ``ext`` (".jpg", "png", ...).

    ``quality`` (1-100) applies to JPEG and WebP. PNG, WebP and TIFF keep the alpha
    channel; JPEG and BMP drop it (the colour is written as is, not composited).
    """
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ImageError(
            f"unsupported output format {ext!r} (use {', '.join(sorted(WRITE_EXTENSIONS))})"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    array = picture.bgr
    if picture.alpha is not None and ext in ALPHA_EXTENSIONS:
        array = np.dstack([picture.bgr, picture.alpha])
    params = {
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        ".webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
    }.get(ext, [])
    try:
        with quiet_opencv():
            ok, buffer = cv2.imencode(ext, array, params)
    except cv2.error:  # older OpenCV raises where newer returns False (e.g. WebP > 16383 px)
        ok = False
    if not ok:
        height, width = array.shape[:2]
        raise ImageError(f"OpenCV could not encode a {width}x{height} image as {ext}")
    return buffer.tobytes()


def write_image(path: str | os.PathLike[str], picture: Picture, quality: int = 95) -> None:
    """Write ``picture`` to ``path`` in the format named by its extension.

    The bytes go to a temporary file in the same folder, which is then renamed over
    ``path``: a failed or interrupted write never leaves a partial file under the
    final name.
    """
    name = os.fsdecode(path)
    try:
        data = encode_image(picture, os.path.splitext(name)[1], quality)
    except ImageError as exc:
        raise _error(name, str(exc)) from None
    folder = os.path.dirname(name) or "."
    try:
        write_atomically(path, data)
    except FileNotFoundError:
        raise _error(name, f"output folder {folder!r} does not exist") from None
    except OSError as exc:
        raise _error(name, f"cannot write a file in {folder!r} ({exc.strerror or exc})") from None


# ---------------------------------------------------------------- helpers


def _error(name: str, problem: str) -> ImageError:
    # One line, whatever characters the file name holds.
    shown = name.replace("\r", "\\r").replace("\n", "\\n")
    return ImageError(f"{shown}: {problem}")
