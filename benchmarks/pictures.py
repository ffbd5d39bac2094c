"""Paint fixed inputs with both fixture families on both engines and save the pictures,
or compare two such files: how the restructuring was checked to leave pictures alone.

    PYTHONPATH=<checkout> python benchmarks/pictures.py paint OUT.npz
    python benchmarks/pictures.py compare BEFORE.npz AFTER.npz

Run ``paint`` once with each checkout on PYTHONPATH (an older one may still call the
fixture module ``cvstyle.fixtures``), then ``compare``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"


def paint(out: Path) -> None:
    from cvstyle import Stylizer

    try:
        from cvstyle.testing import write_fixture_model
    except ImportError:  # checkouts before the rename
        from cvstyle.fixtures import write_fixture_model
    cat = cv2.imread(str(SAMPLE))
    photo = cv2.resize(cat, (333, 251), interpolation=cv2.INTER_AREA)
    big = cv2.resize(cat, (2200, 1500), interpolation=cv2.INTER_CUBIC)  # tiled
    pictures = {}
    with tempfile.TemporaryDirectory() as folder:
        for family, seed in (("eccv16", 1), ("instance_norm", 2)):
            path = write_fixture_model(Path(folder) / f"{family}.t7", family, seed=seed)
            for engine in ("opencv", "onnxruntime"):
                stylizer = Stylizer(str(path), device="cpu", engine=engine)
                key = f"{family}-{engine}"
                pictures[f"{key}-whole"] = stylizer.stylize(photo)
                pictures[f"{key}-controls"] = stylizer.stylize(photo, strength=0.6, preserve_colors=True, size=200)
                estimate = {"statistics": "estimate"} if "statistics" in stylizer.stylize.__code__.co_varnames else {}
                pictures[f"{key}-tiled"] = stylizer.stylize(big, tile="on", **estimate)
    np.savez(out, **pictures)


def compare(before: Path, after: Path) -> None:
    old, new = np.load(before), np.load(after)
    for key in sorted(old.files):
        a, b = old[key].astype(int), new[key].astype(int)
        verdict = "identical" if np.array_equal(a, b) else f"max {np.abs(a - b).max()} mean {np.abs(a - b).mean():.4f}"
        print(f"{key}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("paint", help="paint and save to OUT.npz").add_argument("out", type=Path)
    check = commands.add_parser("compare", help="compare two saved files")
    check.add_argument("before", type=Path)
    check.add_argument("after", type=Path)
    arguments = parser.parse_args()
    if arguments.command == "paint":
        paint(arguments.out)
    else:
        compare(arguments.before, arguments.after)


if __name__ == "__main__":
    main()
