"""Work and rate: multiply-accumulates counted from a Torch7 tree, and numpy's matmul
rate as the machine's practical peak to compare achieved rates with."""

from __future__ import annotations

import numpy as np

from cvstyle.torch7 import TorchObject

from harness import timed


def count_macs(module: TorchObject, shape: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """Multiply-accumulates of the convolutions and transposed convolutions of a Torch7
    module tree on an input of ``shape`` (channels, height, width), and the output shape.
    Padding layers (the 40-pixel reflection border) enlarge what the following layers see."""
    name, f = module.class_name, module.fields
    channels, height, width = shape
    if name == "nn.Sequential":
        total = 0
        for child in module.children:
            work, shape = count_macs(child, shape)
            total += work
        return total, shape
    if name == "nn.ConcatTable":
        results = [count_macs(child, shape) for child in module.children]
        return sum(work for work, _ in results), results[0][1]
    if name in ("nn.SpatialReflectionPadding", "nn.SpatialZeroPadding"):
        return 0, (channels, height + f["pad_t"] + f["pad_b"], width + f["pad_l"] + f["pad_r"])
    if name == "nn.ShaveImage":
        return 0, (channels, height - 2 * f["size"], width - 2 * f["size"])
    if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM"):
        out_h = (height + 2 * f["padH"] - f["kH"]) // f["dH"] + 1
        out_w = (width + 2 * f["padW"] - f["kW"]) // f["dW"] + 1
        work = out_h * out_w * f["nOutputPlane"] * f["nInputPlane"] * f["kH"] * f["kW"]
        return work, (f["nOutputPlane"], out_h, out_w)
    if name == "nn.SpatialFullConvolution":
        out_h = (height - 1) * f["dH"] - 2 * f["padH"] + f["kH"] + f.get("adjH", 0)
        out_w = (width - 1) * f["dW"] - 2 * f["padW"] + f["kW"] + f.get("adjW", 0)
        # Each input pixel scatters a kH x kW x out kernel: the work of the forward conv.
        work = height * width * f["nOutputPlane"] * f["nInputPlane"] * f["kH"] * f["kW"]
        return work, (f["nOutputPlane"], out_h, out_w)
    return 0, shape  # normalisation, activations, CAddTable, TotalVariation: no MACs counted


def gmac(root: TorchObject, blob_shape: tuple[int, ...]) -> float:
    """Giga multiply-accumulates of the network ``root`` on a blob of ``blob_shape`` (NCHW)."""
    return count_macs(root, tuple(blob_shape[1:]))[0] / 1e9


def matmul_gflops(repeat: int = 7, n: int = 2048) -> float:
    """numpy float32 matrix multiply, best of ``repeat``: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(timed(np.matmul, a, b)[0] for _ in range(repeat))
    return 2 * n**3 / best / 1e9
