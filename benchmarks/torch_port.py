"""A PyTorch port of a Torch7 style network, as a PyTorch user would write it: the
third engine of the engines section."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cvstyle.torch7 import TorchObject


def torch_runner(root: TorchObject) -> Callable[[np.ndarray], np.ndarray]:
    """A function of an NCHW float32 blob equivalent to the Torch7 tree ``root``."""
    import torch

    network = build(root)

    def infer(blob: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(blob)).numpy()

    return infer


def tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build(module: TorchObject) -> Callable:
    """The PyTorch function of one Torch7 module (containers recursively)."""
    import torch
    import torch.nn.functional as F

    name, f = module.class_name, module.fields
    if name == "nn.Sequential":
        steps = [build(child) for child in module.children]

        def sequential(x):
            for step in steps:
                x = step(x)
            return x

        return sequential
    if name == "nn.ConcatTable":
        branches = [build(child) for child in module.children]
        return lambda x: [branch(x) for branch in branches]
    if name == "nn.CAddTable":
        return lambda xs: sum(xs[1:], xs[0])
    if name == "nn.ShaveImage":
        s = f["size"]
        return lambda x: x[:, :, s:-s, s:-s]
    if name == "nn.SpatialReflectionPadding":
        pads = (f["pad_l"], f["pad_r"], f["pad_t"], f["pad_b"])
        return lambda x: F.pad(x, pads, mode="reflect")
    if name in ("nn.SpatialConvolution", "nn.SpatialConvolutionMM"):
        weight = tensor(f["weight"]).reshape(f["nOutputPlane"], f["nInputPlane"], f["kH"], f["kW"])
        bias, stride, pad = tensor(f["bias"]), (f["dH"], f["dW"]), (f["padH"], f["padW"])
        return lambda x: F.conv2d(x, weight, bias, stride, pad)
    if name == "nn.SpatialFullConvolution":
        weight, bias = tensor(f["weight"]), tensor(f["bias"])
        stride, pad, adj = (f["dH"], f["dW"]), (f["padH"], f["padW"]), (f["adjH"], f["adjW"])
        return lambda x: F.conv_transpose2d(x, weight, bias, stride, pad, adj)
    if name == "nn.SpatialBatchNormalization":
        mean, var = tensor(f["running_mean"]), tensor(f["running_var"])
        weight, bias, eps = tensor(f["weight"]), tensor(f["bias"]), float(f["eps"])
        return lambda x: F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
    if name == "nn.InstanceNormalization":
        weight, bias, eps = tensor(f["weight"]), tensor(f["bias"]), float(f["eps"])
        return lambda x: F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    if name == "nn.ReLU":
        return torch.relu
    if name == "nn.Tanh":
        return torch.tanh
    if name == "nn.MulConstant":
        constant = float(f["constant_scalar"])
        return lambda x: x * constant
    if name in ("nn.TotalVariation", "nn.Identity"):
        return lambda x: x
    raise ValueError(f"no PyTorch equivalent for {name}")
