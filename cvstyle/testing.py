"""Architecture-faithful stand-ins for the pretrained checkpoints, for tests and benchmarks.

The published `.t7` files cannot be downloaded or redistributed here, so the test suite,
the downloader tests and the benchmarks run on files built by this factory: the same
module types, nesting, field names and layer shapes as fast-neural-style's ``models.lua``
builds with ``-padding_type reflect-start``, saved as ``{model = nn.Sequential, opt = {...}}``,
with seeded weights scaled so that activations stay in a trained network's range.
They paint nothing in particular and are never offered to users as styles.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from . import torch7, torch7_modules
from .torch7 import TorchObject

FAMILIES = ("eccv16", "instance_norm")
ARCH = {
    "eccv16": "c9s1-32,d64,d128,R128,R128,R128,R128,R128,u64,u32,c9s1-3",
    "instance_norm": "c9s1-16,d32,d64,R64,R64,R64,R64,R64,u32,u16,c9s1-3",
}
TANH_CONSTANT = 150.0
BORDER = 40  # reflect-start padding; the residual blocks shave it off again
PIXEL_STD = 60.0  # spread of mean-subtracted photo pixels


class _Builder:
    def __init__(self, family: str, seed: int):
        self.instance = family == "instance_norm"
        self.rng = np.random.default_rng(seed)
        self.energy = PIXEL_STD**2  # E[x^2] of the current activation
        self.pre_norm_energy = self.energy  # E[x^2] entering the next normalisation

    def _weights(self, shape: tuple[int, ...], fan_in: float, gain: float = 1.0) -> np.ndarray:
        # Variance gain/fan_in keeps E[x^2] roughly constant through each layer.
        return self.rng.normal(0.0, np.sqrt(gain / fan_in), shape)

    def _bias(self, channels: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.01, channels)

    def norm(self, channels: int) -> TorchObject:
        weight = self.rng.uniform(0.6, 1.4, channels)
        bias = self.rng.normal(0.0, 0.2, channels)
        self.energy = 0.5 * float(np.mean(weight**2 + bias**2))
        if self.instance:
            return torch7_modules.instance_norm(weight, bias)
        variance = self.pre_norm_energy * self.rng.uniform(0.5, 2.0, channels)
        mean = self.rng.normal(0.0, 0.1, channels) * np.sqrt(variance)
        return torch7_modules.batch_norm(mean, variance, weight, bias)

    def conv(self, n_in: int, n_out: int, kernel: int, stride: int, pad: int, gain=1.0):
        self.pre_norm_energy = self.energy * gain
        weight = self._weights((n_out, n_in, kernel, kernel), n_in * kernel * kernel, gain)
        return torch7_modules.convolution(weight, self._bias(n_out), stride, pad)

    def up(self, n_in: int, n_out: int) -> TorchObject:
        self.pre_norm_energy = self.energy
        # A stride-2 3x3 transposed convolution feeds each output from ~9/4 inputs per plane.
        weight = self._weights((n_in, n_out, 3, 3), n_in * 9 / 4)
        return torch7_modules.full_convolution(weight, self._bias(n_out), stride=2, pad=1, adj=1)

    def residual(self, channels: int) -> TorchObject:
        energy = self.energy
        block = torch7_modules.sequential(
            self.conv(channels, channels, 3, 1, 0), self.norm(channels), torch7_modules.relu(),
            self.conv(channels, channels, 3, 1, 0), self.norm(channels),
        )
        self.energy += energy
        return torch7_modules.sequential(
            torch7_modules.concat_table(block, torch7_modules.shave_image(2)), torch7_modules.cadd_table()
        )

    def build(self, arch: str) -> TorchObject:
        layers: list[TorchObject] = [torch7_modules.reflection_padding(BORDER, BORDER, BORDER, BORDER)]
        specs = arch.split(",")
        channels = 3
        for position, spec in enumerate(specs):
            last = position == len(specs) - 1
            if spec.startswith("c"):
                kernel, stride, width = int(spec[1]), int(spec[3]), int(spec[5:])
                # Final layer: aim tanh's input at a spread of about 0.7.
                gain = 0.5 / self.energy if last else 1.0
                layers.append(self.conv(channels, width, kernel, stride, (kernel - 1) // 2, gain))
            elif spec.startswith("d"):
                width = int(spec[1:])
                layers.append(self.conv(channels, width, 3, 2, 1))
            elif spec.startswith("u"):
                width = int(spec[1:])
                layers.append(self.up(channels, width))
            elif spec.startswith("R"):
                width = int(spec[1:])
                layers.append(self.residual(width))
                channels = width
                continue
            else:
                raise ValueError(f"unsupported layer spec {spec!r}")
            channels = width
            if not last:
                layers += [self.norm(width), torch7_modules.relu()]
        layers += [torch7_modules.tanh(), torch7_modules.mul_constant(TANH_CONSTANT), torch7_modules.total_variation(1e-6)]
        return torch7_modules.sequential(*layers)


def build_checkpoint(family: str, seed: int = 0) -> dict:
    """The checkpoint table ``{model=..., opt=...}`` of one fixture network."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    model = _Builder(family, seed).build(ARCH[family])
    opt = {
        "arch": ARCH[family],
        "use_instance_norm": 1 if family == "instance_norm" else 0,
        "padding_type": "reflect-start",
        "tanh_constant": TANH_CONSTANT,
        "tv_strength": 1e-6,
        "preprocessing": "vgg",
        "task": "style",
        "style_image_size": 384,
        "content_weights": "1.0",
        "style_weights": "5.0",
        "batch_size": 4,
        "learning_rate": 0.001,
        "num_iterations": 40000,
        "fixture_seed": seed,
    }
    return {"model": model, "opt": opt}


def fixture_bytes(family: str, seed: int = 0) -> bytes:
    """The `.t7` bytes of one fixture network."""
    buffer = io.BytesIO()
    torch7.dump(build_checkpoint(family, seed), buffer)
    return buffer.getvalue()


def write_fixture_model(path: str | os.PathLike, family: str, seed: int = 0) -> Path:
    """Write a fixture checkpoint of ``family`` ("eccv16" or "instance_norm") to ``path``."""
    path = Path(path)
    path.write_bytes(fixture_bytes(family, seed))
    return path
