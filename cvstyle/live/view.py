"""What the live window shows: the styles composed in a grid, and the overlay (status
line, tile labels, key help) drawn over it on screen only, never recorded."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .keys import KEY_HELP, LiveState
from .meter import Meter
from .painter import Painter


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns for ``count`` tiles: as square as possible, wider than tall."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def compose(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """Tiles of one size in a grid (row by row); empty cells are black."""
    rows, columns = grid_shape(len(tiles))
    height, width = tiles[0].shape[:2]
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    for i, tile in enumerate(tiles):
        row, column = divmod(i, columns)
        canvas[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile
    return canvas


def render(painter: Painter, image: np.ndarray, state: LiveState) -> tuple[np.ndarray, list[str]]:
    """The composed view of a frame for ``state``, and its tiles' labels."""
    original, painted = painter.paint(
        image, state.visible(), preserve_colors=state.preserve_colors, strength=state.strength
    )
    labels = [painter.labels[i] for i in state.visible()]
    if state.side_by_side:
        return compose([original, *painted]), ["original", *labels]
    return compose(painted), labels


def status_line(meter: Meter, state: LiveState) -> str:
    parts = [f"{meter.fps:.1f} FPS", f"{meter.latency * 1000:.0f} ms"]
    if state.strength < 1:
        parts.append(f"strength {state.strength:.1f}")
    if state.preserve_colors:
        parts.append("colours kept")
    if state.paused:
        parts.append("PAUSED")
    return "  ".join(parts) + "   h: help"


def draw_overlay(
    view: np.ndarray,
    status: str,
    labels: Sequence[str] = (),
    show_help: bool = False,
) -> np.ndarray:
    """A copy of ``view`` with the status line at the top, each grid tile's label at
    its bottom left and, if asked, the key help."""
    shown = view.copy()
    scale = max(0.35, min(0.7, view.shape[1] / 1400))
    _text(shown, [[status]], (6, 6), scale)
    if labels:
        rows, columns = grid_shape(len(labels))
        tile_h, tile_w = view.shape[0] // rows, view.shape[1] // columns
        for i, label in enumerate(labels):
            row, column = divmod(i, columns)
            _text(shown, [[label]], (column * tile_w + 6, (row + 1) * tile_h - 6), scale, bottom=True)
    if show_help:
        _text(shown, KEY_HELP, (6, 6 + int(30 * scale) + 6), scale)
    return shown


def _text(
    image: np.ndarray, rows: Sequence[Sequence[str]], origin: tuple[int, int], scale: float,
    bottom: bool = False,
) -> None:
    """White text in aligned columns on a dark box, readable over any painting."""
    font, thickness, gap = cv2.FONT_HERSHEY_SIMPLEX, 1, int(20 * scale)
    line_h = int(28 * scale) + 4
    widths = [
        max(cv2.getTextSize(row[c], font, scale, thickness)[0][0] for row in rows)
        for c in range(len(rows[0]))
    ]
    x, y = origin
    top = y - line_h * len(rows) if bottom else y
    right = x + sum(widths) + gap * (len(widths) - 1)
    cv2.rectangle(image, (x - 4, top - 2), (right + 4, top + line_h * len(rows) + 2), (0, 0, 0), -1)
    for i, row in enumerate(rows):
        baseline = top + line_h * (i + 1) - 4
        column_x = x
        for text, width in zip(row, widths):
            cv2.putText(image, text, (column_x, baseline), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
            column_x += width + gap
