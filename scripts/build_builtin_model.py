"""Build cvstyle's built-in "sketch" model: a small hand-designed Torch7 network.

It is not trained and paints no particular artwork. Its weights are written down
here: a luminance projection, a difference-of-Gaussians line detector at two scales
(the XDoG idea of Winnenmoeller et al.), and a 1x1 mix that draws graphite-grey lines
and soft shading on cream paper. It lets `cvstyle apply` run offline, with nothing
downloaded, through exactly the code path the real models take.

    .venv/bin/python scripts/build_builtin_model.py --check                      # is the shipped file this build?
    .venv/bin/python scripts/build_builtin_model.py -o cvstyle/data/sketch.t7    # rebuild it
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cvstyle import torch7_modules, torch7  # noqa: E402
from cvstyle.runner import VGG_MEAN_BGR  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "cvstyle" / "data" / "sketch.t7"
LUMA_BGR = np.array([0.114, 0.587, 0.299])
RADIUS = 6  # of the widest Gaussian's kernel
SIGMAS = (0.8, 1.6, 2.4)  # fine line, its surround, broad surround
LINE_THRESHOLDS = (2.0, 3.0)  # grey levels of DoG response before a stroke shows
LINE_DARKNESS = (9.0, 5.0)  # grey levels of graphite per grey level of DoG response
SHADING = 0.45  # how much of the photo's darkness survives as soft shading
PAPER_BGR = np.array([222.0, 236.0, 244.0])  # cream
GRAPHITE_BGR = np.array([1.0, 0.96, 0.92])  # strokes a little cooler than neutral grey


def gaussian(sigma: float) -> np.ndarray:
    axis = np.arange(-RADIUS, RADIUS + 1)
    kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    return kernel / kernel.sum()


def build() -> dict:
    # 1. Luminance 0..255 from the mean-subtracted input: the bias adds the mean back.
    luma = torch7_modules.convolution(
        LUMA_BGR.reshape(1, 3, 1, 1), np.array([LUMA_BGR @ np.array(VGG_MEAN_BGR)])
    )
    # 2. Three channels: two "dark side of an edge" responses (negated DoG at two
    #    scales, minus a threshold) and a blurred tone; ReLU keeps what is positive.
    fine, mid, broad = (gaussian(s) for s in SIGMAS)
    kernels = np.stack([-(fine - mid), -(mid - broad), fine])[:, None]
    strokes = torch7_modules.convolution(kernels, np.array([-LINE_THRESHOLDS[0], -LINE_THRESHOLDS[1], 0.0]))
    # 3. Paper minus graphite minus shading, per output channel, minus the mean
    #    (the runner adds the mean back).
    weights = np.zeros((3, 3, 1, 1))
    weights[:, 0, 0, 0] = -LINE_DARKNESS[0] * 255 / PAPER_BGR.max() * GRAPHITE_BGR
    weights[:, 1, 0, 0] = -LINE_DARKNESS[1] * 255 / PAPER_BGR.max() * GRAPHITE_BGR
    weights[:, 2, 0, 0] = SHADING * PAPER_BGR / 255
    bias = PAPER_BGR * (1 - SHADING) - np.array(VGG_MEAN_BGR)
    compose = torch7_modules.convolution(weights, bias)
    model = torch7_modules.sequential(
        luma,
        torch7_modules.reflection_padding(RADIUS, RADIUS, RADIUS, RADIUS),
        strokes,
        torch7_modules.relu(),
        compose,
    )
    opt = {"arch": "builtin pencil sketch (hand-designed, untrained)", "preprocessing": "vgg"}
    return {"model": model, "opt": opt}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("-o", "--output", type=Path, help=f"write the model here (the shipped one is {SHIPPED})")
    action.add_argument("--check", action="store_true", help="compare a fresh build with the shipped file; write nothing")
    args = parser.parse_args(argv)
    buffer = io.BytesIO()
    torch7.dump(build(), buffer)
    data = buffer.getvalue()
    if args.check:
        same = SHIPPED.is_file() and SHIPPED.read_bytes() == data
        print(f"{SHIPPED}: {'same as' if same else 'differs from'} a fresh build ({len(data):,} bytes)")
        return 0 if same else 1
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
