"""An independent float64 NumPy implementation of the fast-neural-style modules.

It walks the module tree that cvstyle's Torch7 reader returns and follows the Lua
definitions of each module (torch/nn and fast-neural-style), sharing no code with
OpenCV or with cvstyle's runner, so that it can check what cv2.dnn computes.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cvstyle.torch7 import TorchObject


COLUMN_BLOCK = 2**25  # unfolded input values per block of output rows (photos of megapixels)


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    n_out, n_in, k_h, k_w = weight.shape
    windows = sliding_window_view(x, (k_h, k_w), axis=(1, 2))[:, ::stride, ::stride]
    kernel = weight.reshape(n_out, -1).T.astype(np.float64)
    out = np.empty((windows.shape[1], windows.shape[2], n_out))
    rows = max(1, COLUMN_BLOCK // (windows.shape[2] * kernel.shape[0]))
    for top in range(0, windows.shape[1], rows):
        # windows: (in, h, W', kH, kW) -> (h, W', in*kH*kW)
        block = windows[:, top : top + rows]
        cols = block.transpose(1, 2, 0, 3, 4).reshape(block.shape[1], block.shape[2], -1)
        out[top : top + rows] = cols @ kernel + bias
    return out.transpose(2, 0, 1)


def _full_conv(x, weight, bias, stride, pad, adj):
    """Transposed convolution as in nn.SpatialFullConvolution (weight is in x out x kH x kW)."""
    n_in, n_out, k_h, k_w = weight.shape
    _, height, width = x.shape
    full = np.zeros((n_out, (height - 1) * stride + k_h + adj, (width - 1) * stride + k_w + adj))
    for i in range(k_h):
        for j in range(k_w):
            contribution = np.tensordot(weight[:, :, i, j].astype(np.float64), x, axes=(0, 0))
            full[:, i : i + stride * height : stride, j : j + stride * width : stride] += contribution
    out_h = (height - 1) * stride - 2 * pad + k_h + adj
    out_w = (width - 1) * stride - 2 * pad + k_w + adj
    return full[:, pad : pad + out_h, pad : pad + out_w] + bias[:, None, None]


def forward(module: TorchObject, x):
    """Run ``module`` on a (C, H, W) float64 array (or a list, for table modules)."""
    f = module.fields
    name = module.class_name.removeprefix("nn.")
    if name == "Sequential":
        for child in module.children:
            x = forward(child, x)
        return x
    if name == "ConcatTable":
        return [forward(child, x) for child in module.children]
    if name == "CAddTable":
        return sum(x)
    if name in ("Identity", "TotalVariation"):
        return x
    if name == "ShaveImage":
        s = f["size"]
        return x[:, s:-s, s:-s]
    if name == "SpatialReflectionPadding":
        return np.pad(x, ((0, 0), (f["pad_t"], f["pad_b"]), (f["pad_l"], f["pad_r"])), mode="reflect")
    if name == "SpatialConvolution":
        assert f["dW"] == f["dH"] and f["padW"] == f["padH"]
        return _conv(x, f["weight"], f["bias"].astype(np.float64), f["dW"], f["padW"])
    if name == "SpatialFullConvolution":
        return _full_conv(x, f["weight"], f["bias"].astype(np.float64), f["dW"], f["padW"], f["adjW"])
    if name == "SpatialBatchNormalization":
        scale = f["weight"] / np.sqrt(f["running_var"].astype(np.float64) + f["eps"])
        return (x - f["running_mean"][:, None, None]) * scale[:, None, None] + f["bias"][:, None, None]
    if name == "InstanceNormalization":
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = x.var(axis=(1, 2), keepdims=True)
        return (x - mean) / np.sqrt(var + f["eps"]) * f["weight"][:, None, None] + f["bias"][:, None, None]
    if name == "ReLU":
        return np.maximum(x, 0)
    if name == "Tanh":
        return np.tanh(x)
    if name == "MulConstant":
        return x * f["constant_scalar"]
    raise NotImplementedError(module.class_name)


def stylize(model: TorchObject, bgr: np.ndarray, multiple: int = 4, min_side: int = 44) -> np.ndarray:
    """Reference pipeline: vgg pre-processing, reflect-pad to a multiple of ``multiple``
    and at least ``min_side`` (the 40-pixel reflection border needs 41), forward, crop.

    Returns float64 pixels (mean added back, clipped to [0, 255], not rounded).
    """
    mean = np.array([103.939, 116.779, 123.680])
    height, width = bgr.shape[:2]
    x = (bgr.astype(np.float64) - mean).transpose(2, 0, 1)
    pad_h = max(-height % multiple, min_side - height)
    pad_w = max(-width % multiple, min_side - width)
    x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    out = forward(model, x)[:, :height, :width]
    return np.clip(out.transpose(1, 2, 0) + mean, 0, 255)
