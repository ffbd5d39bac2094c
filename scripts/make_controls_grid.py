"""Make the controls picture (docs/controls.jpg): one bundled sample under each artistic control.

Uses the built-in sketch model and a fixture instance_norm network (cvstyle.testing,
seeded random weights: an architecture stand-in, not a real style), since the
pretrained models cannot be shipped.

    .venv/bin/python scripts/make_controls_grid.py -o docs/controls.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from cvstyle import Stylizer
from cvstyle.testing import write_fixture_model

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 300


def label(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((28, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (40, 40, 40), 1, cv2.LINE_AA)
    return np.vstack([image, bar])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="the JPEG to write (docs/controls.jpg in the README)")
    args = parser.parse_args(argv)
    photo = cv2.imread(str(ROOT / "samples" / "astronaut.png"))
    photo = cv2.resize(photo, (WIDTH, WIDTH * photo.shape[0] // photo.shape[1]), interpolation=cv2.INTER_AREA)
    with tempfile.TemporaryDirectory() as folder:
        fixture = write_fixture_model(Path(folder) / "fixture.t7", "instance_norm", seed=7)
        fixture_style = Stylizer(fixture, device="cpu")
        sketch = Stylizer("sketch", device="cpu")
        tiles = [
            label(photo, "photo"),
            label(sketch.stylize(photo), "sketch"),
            label(sketch.stylize(photo, preserve_colors=True), "sketch, colours kept"),
            label(sketch.stylize(photo, strength=0.5), "sketch, strength 0.5"),
            label(fixture_style.stylize(photo), "fixture network"),
            label(Stylizer(f"sketch:0.5+{fixture}:0.5", device="cpu").stylize(photo), "mix 0.5 sketch + 0.5 fixture"),
        ]
    grid = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    if not cv2.imwrite(str(args.output), grid, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        parser.error(f"cannot write {args.output}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
