"""Constructors for the Torch7 ``nn`` modules the fast-neural-style checkpoints use.

Each returns a :class:`~cvstyle.torch7.TorchObject` with the fields that the Lua
constructor of that module sets (after ``clearState()``, as ``train.lua`` saves them),
so files written from these trees are laid out like the published checkpoints.
"""

from __future__ import annotations

import numpy as np

from .torch7 import TorchObject

_FLOAT = "torch.FloatTensor"


def _empty() -> np.ndarray:
    return np.zeros((0,), dtype=np.float32)


def _module(class_name: str, **fields) -> TorchObject:
    base = {"output": _empty(), "gradInput": _empty(), "_type": _FLOAT, "train": False}
    base.update(fields)
    return TorchObject(class_name, base)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def sequential(*modules: TorchObject) -> TorchObject:
    return _module("nn.Sequential", modules=list(modules))


def concat_table(*modules: TorchObject) -> TorchObject:
    return _module("nn.ConcatTable", modules=list(modules), output={})


def cadd_table() -> TorchObject:
    return _module("nn.CAddTable", gradInput={}, inplace=False)


def identity() -> TorchObject:
    return _module("nn.Identity")


def shave_image(size: int) -> TorchObject:
    return _module("nn.ShaveImage", size=size)


def reflection_padding(left: int, right: int, top: int, bottom: int) -> TorchObject:
    return _module(
        "nn.SpatialReflectionPadding", pad_l=left, pad_r=right, pad_t=top, pad_b=bottom
    )


def convolution(weight: np.ndarray, bias: np.ndarray, stride: int = 1, pad: int = 0) -> TorchObject:
    """``nn.SpatialConvolution``; ``weight`` is (out, in, kH, kW)."""
    n_out, n_in, k_h, k_w = weight.shape
    return _module(
        "nn.SpatialConvolution",
        nInputPlane=n_in, nOutputPlane=n_out, kW=k_w, kH=k_h, dW=stride, dH=stride,
        padW=pad, padH=pad, weight=_f32(weight), bias=_f32(bias),
        gradWeight=np.zeros_like(_f32(weight)), gradBias=np.zeros_like(_f32(bias)),
    )


def full_convolution(
    weight: np.ndarray, bias: np.ndarray, stride: int, pad: int, adj: int
) -> TorchObject:
    """``nn.SpatialFullConvolution`` (transposed convolution); ``weight`` is (in, out, kH, kW)."""
    n_in, n_out, k_h, k_w = weight.shape
    return _module(
        "nn.SpatialFullConvolution",
        nInputPlane=n_in, nOutputPlane=n_out, kW=k_w, kH=k_h, dW=stride, dH=stride,
        padW=pad, padH=pad, adjW=adj, adjH=adj, weight=_f32(weight), bias=_f32(bias),
        gradWeight=np.zeros_like(_f32(weight)), gradBias=np.zeros_like(_f32(bias)),
    )


def batch_norm(
    running_mean: np.ndarray, running_var: np.ndarray, weight: np.ndarray, bias: np.ndarray,
    eps: float = 1e-5,
) -> TorchObject:
    return _module(
        "nn.SpatialBatchNormalization",
        eps=eps, momentum=0.1, affine=True, nDim=4,
        running_mean=_f32(running_mean), running_var=_f32(running_var),
        weight=_f32(weight), bias=_f32(bias),
        gradWeight=np.zeros_like(_f32(weight)), gradBias=np.zeros_like(_f32(bias)),
    )


def instance_norm(weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> TorchObject:
    """fast-neural-style's custom ``nn.InstanceNormalization`` (per-image statistics)."""
    channels = weight.shape[0]
    return _module(
        "nn.InstanceNormalization",
        nOutput=channels, eps=eps, momentum=0.0, affine=True, prev_batch_size=-1,
        running_mean=np.zeros(channels, np.float32), running_var=np.ones(channels, np.float32),
        weight=_f32(weight), bias=_f32(bias),
        gradWeight=np.zeros_like(_f32(weight)), gradBias=np.zeros_like(_f32(bias)),
    )


def relu() -> TorchObject:
    return _module("nn.ReLU", threshold=0, val=0, inplace=True)


def tanh() -> TorchObject:
    return _module("nn.Tanh")


def mul_constant(constant: float) -> TorchObject:
    return _module("nn.MulConstant", constant_scalar=constant, inplace=False)


def total_variation(strength: float) -> TorchObject:
    """fast-neural-style's TV regulariser: the identity at inference time."""
    return _module("nn.TotalVariation", strength=strength, x_diff=_empty(), y_diff=_empty())
