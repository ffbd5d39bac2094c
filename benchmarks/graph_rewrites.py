"""Graph rewrites tried for issue 13's last gap: each against the project's own graph
(``cvstyle.fast_graph.faster_graph``) on ONNX Runtime and OpenVINO, whole networks.

    PYTHONPATH=. .venv/bin/python benchmarks/graph_rewrites.py [--size 640x480] [--repeat 7]

- ``space-to-depth``: the last, narrow convolution computed per 2x2 block after
  rearranging its input with SpaceToDepth (padded to whole blocks), a convolution with
  half the kernel at half resolution and DepthToSpace: the form ``faster_graph`` used
  before its one stride-2 convolution.
- ``winograd rows``: every 3x3, stride-1 convolution as a one-dimensional Winograd
  F(2,3) along the rows: four row combinations of the input, four 1x3 convolutions on
  half the rows (two thirds of the multiplications), two output combinations and the
  rows interleaved again.
- ``separable last conv``: the narrow 9x9 convolution as a 9x1 convolution to
  3x9 channels and a grouped 1x9 one that sums them, instead of the block form.
- ``winograd trunk``: :func:`cvstyle.fast_graph.winograd_residuals`, Winograd F(4,3)
  along the rows for eccv16's residual trunk, the four phases of its rows kept apart
  from the trunk's first convolution to its last (what the openvino engine runs on the
  CPU for shapes that come back).

The openvino engine's own trunk rewrite is switched off while these networks are built
and run, so that every graph runs as written.

Both fixture families, float32, one stream, the engines' own settings (latency hint,
two threads), one engine at a time. Each rewrite runs against ``faster_graph`` in
``--repeat`` pairs whose order alternates, each timed forward after an untimed one of its
own; the median of the pairs' time ratios is the steadier figure (forwards drift by
10-20 % on this kind of VM). Also prints each rewrite's largest difference from
``faster_graph``'s output in grey levels before rounding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from cvstyle import engines, fast_graph
from cvstyle.fast_graph import _attributes, _is_narrow_convolution, _Rewriter, faster_graph, rewrite_nodes, winograd_residuals
from cvstyle.model import open_model
from cvstyle.runner import INPUT
from cvstyle.testing import write_fixture_model

from machine import machine_line

BLOCK = 2  # pixels per block side in the space-to-depth form
ROWS = 2  # output rows per Winograd tile
END = 2**62  # a Slice end past any size


def _is_3x3(onnx, node, weights: dict) -> bool:
    if node.op_type != "Conv" or node.input[1] not in weights:
        return False
    attributes = _attributes(onnx, node)
    return (
        list(weights[node.input[1]].dims[2:]) == [3, 3] and attributes.get("strides", [1, 1]) == [1, 1]
        and attributes.get("dilations", [1, 1]) == [1, 1] and attributes.get("group", 1) == 1
        and attributes.get("pads", [0, 0, 0, 0])[0::2] == [0, 0]
    )


def _winograd_rows(onnx, node, weights: dict) -> tuple[list, list]:
    weight = onnx.numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
    pads = _attributes(onnx, node).get("pads", [0, 0, 0, 0])
    r = _Rewriter(onnx, node)
    source = node.input[0]
    rows = r.add("Shape", [source], "w_rows", start=2, end=3)
    odd = r.add("Mod", [rows, r.constant("w_two", np.array([ROWS], np.int64))], "w_odd")
    pad_to_even = r.add("Concat", [r.constant("w_zeros", np.zeros(6, np.int64)), odd, r.constant("w_zero", np.zeros(1, np.int64))], "w_pads", axis=0)
    even = r.add("Pad", [source, pad_to_even], "w_even", mode="constant")
    axis, step = r.constant("w_axis", np.array([2], np.int64)), r.constant("w_step", np.array([ROWS], np.int64))
    d = [r.add("Slice", [even, r.constant(f"w_start{k}", np.array([k], np.int64)), r.constant(f"w_end{k}", np.array([end], np.int64)), axis, step], f"w_d{k}")
         for k, end in enumerate([-2, -1, END, END])]
    t = [r.add("Sub", [d[0], d[2]], "w_t0"), r.add("Add", [d[1], d[2]], "w_t1"),
         r.add("Sub", [d[2], d[1]], "w_t2"), r.add("Sub", [d[1], d[3]], "w_t3")]
    g0, g1, g2 = weight[:, :, 0:1], weight[:, :, 1:2], weight[:, :, 2:3]
    kernels = [g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2]
    bias = [r.constant("w_bias", onnx.numpy_helper.to_array(weights[node.input[2]]))] if len(node.input) > 2 and node.input[2] else []
    m = [r.add("Conv", [t[j], r.constant(f"w_kernel{j}", kernels[j].astype(np.float32)), *(bias if j == 1 else [])], f"w_m{j}",
               kernel_shape=[1, 3], pads=[0, pads[1], 0, pads[3]]) for j in range(4)]
    upper = r.add("Add", [r.add("Add", [m[0], m[1]], "w_a0"), m[2]], "w_upper")
    lower = r.add("Sub", [r.add("Sub", [m[1], m[2]], "w_a1"), m[3]], "w_lower")
    pair_axis = r.constant("w_pair_axis", np.array([3], np.int64))
    pairs = r.add("Concat", [r.add("Unsqueeze", [upper, pair_axis], "w_u0"), r.add("Unsqueeze", [lower, pair_axis], "w_u1")], "w_pairs", axis=3)
    shape = r.add("Concat", [r.add("Shape", [source], "w_nc", start=0, end=2), r.constant("w_any", np.array([-1], np.int64)),
                             r.add("Shape", [upper], "w_cols", start=3, end=4)], "w_shape", axis=0)
    interleaved = r.add("Reshape", [pairs, shape], "w_interleaved")
    out_rows = r.add("Sub", [rows, r.constant("w_shrink", np.array([2], np.int64))], "w_out_rows")
    r.add("Slice", [interleaved, r.constant("w_origin", np.array([0], np.int64)), out_rows, axis], "", output=node.output[0])
    return r.nodes, r.initializers


def _taps(kernel: int) -> np.ndarray:
    """For output phase r, input phase p and block offset a: the kernel index
    ``BLOCK*a + p - r`` it takes, or ``kernel`` (a zero weight) where that is outside."""
    count = -(-(kernel + BLOCK - 1) // BLOCK)
    r, p, a = np.meshgrid(range(BLOCK), range(BLOCK), range(count), indexing="ij")
    index = BLOCK * a + p - r
    return np.where((index >= 0) & (index < kernel), index, kernel)


def _space_to_depth(onnx, node, weights: dict) -> tuple[list, list]:
    weight = onnx.numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
    out, inp, kh, kw = weight.shape
    top, left, bottom, right = _attributes(onnx, node).get("pads", [0, 0, 0, 0])
    padded = np.zeros((out, inp, kh + 1, kw + 1), np.float32)
    padded[:, :, :kh, :kw] = weight
    rows, cols = _taps(kh), _taps(kw)
    gathered = padded[:, :, rows[:, :, :, None, None, None], cols[None, None, None]]
    # SpaceToDepth orders channels (ph, pw, in); DepthToSpace (CRD) reads (out, rh, rw).
    ordered = gathered.transpose(0, 2, 5, 3, 6, 1, 4, 7)
    new_weight = np.ascontiguousarray(ordered.reshape(out * BLOCK * BLOCK, BLOCK * BLOCK * inp, rows.shape[2], cols.shape[2]))
    taps = np.array(new_weight.shape[2:], np.int64)
    r = _Rewriter(onnx, node)
    inputs = [r.constant("s2d_weight", new_weight)]
    if len(node.input) > 2 and node.input[2]:
        bias = onnx.numpy_helper.to_array(weights[node.input[2]]).astype(np.float32)
        inputs.append(r.constant("s2d_bias", np.repeat(bias, BLOCK * BLOCK)))
    # The padded input covers whole blocks of the output plus the taps.
    size = r.add("Shape", [node.input[0]], "s2d_size", start=2, end=4)
    out_size = r.add("Add", [size, r.constant("s2d_grow", np.array([top + bottom - kh + 1, left + right - kw + 1], np.int64))], "s2d_out_size")
    short = r.add("Mod", [r.add("Neg", [out_size], "s2d_neg"), r.constant("s2d_block", np.full(2, BLOCK, np.int64))], "s2d_short")
    spare = BLOCK * (taps - 1) - np.array([kh - 1, kw - 1], np.int64) + np.array([bottom, right], np.int64)
    ends = r.add("Add", [short, r.constant("s2d_spare", spare)], "s2d_ends")
    pads = r.add("Concat", [r.constant("s2d_starts", np.array([0, 0, top, left, 0, 0], np.int64)), ends], "s2d_pads", axis=0)
    blocks = r.add("SpaceToDepth", [r.add("Pad", [node.input[0], pads], "s2d_padded", mode="constant")], "s2d_blocks", blocksize=BLOCK)
    convolved = r.add("Conv", [blocks, *inputs], "s2d_conv", kernel_shape=[int(t) for t in taps])
    pixels = r.add("DepthToSpace", [convolved], "s2d_pixels", blocksize=BLOCK, mode="CRD")
    zeros, axes = r.constant("s2d_zero", np.zeros(2, np.int64)), r.constant("s2d_axes", np.array([2, 3], np.int64))
    r.add("Slice", [pixels, zeros, out_size, axes], "", output=node.output[0])
    return r.nodes, r.initializers


def _separable(onnx, node, weights: dict) -> tuple[list, list]:
    weight = onnx.numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
    out, inp, kh, kw = weight.shape
    r = _Rewriter(onnx, node)
    columns = np.ascontiguousarray(weight.transpose(0, 3, 1, 2).reshape(out * kw, inp, kh, 1))
    sums = np.zeros((out, kw, 1, kw), np.float32)
    sums[:, np.arange(kw), 0, np.arange(kw)] = 1
    pads = _attributes(onnx, node).get("pads", [0, 0, 0, 0])
    z = r.add("Conv", [node.input[0], r.constant("sep_columns", columns)], "sep_rows", kernel_shape=[kh, 1], pads=pads)
    bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
    r.add("Conv", [z, r.constant("sep_sums", sums), *bias], "", output=node.output[0], kernel_shape=[1, kw], group=out)
    return r.nodes, r.initializers


def _pairs(runs: dict, repeat: int) -> dict[str, list[float]]:
    """Seconds per forward of each configuration in ``runs`` (two), taken in pairs whose
    order alternates, each timed forward after an untimed one of its own."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    for index in range(repeat):
        for key in list(runs)[:: 1 if index % 2 == 0 else -1]:
            runs[key]()
            start = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    print(machine_line())
    print("family, engine, rewrite: its forward and faster_graph's (ms, medians), the median of the "
          "pairs' time ratios (above 1: the rewrite is slower), its largest difference in grey levels")
    blob = np.random.default_rng(0).normal(0.0, 60.0, (1, 3, height, width)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        for family in ("eccv16", "instance_norm"):
            plain = open_model(write_fixture_model(Path(folder) / f"{family}.t7", family)).graph
            base = faster_graph(plain)
            variants = {
                "space-to-depth": rewrite_nodes(plain, _is_narrow_convolution, _space_to_depth),
                "winograd rows": rewrite_nodes(base, _is_3x3, _winograd_rows),
                "separable last conv": rewrite_nodes(plain, _is_narrow_convolution, _separable),
            }
            winograd = winograd_residuals(base)
            if winograd is not base:
                variants["winograd trunk"] = winograd
            for engine in ("onnxruntime", "openvino"):
                _measure(family, engine, base, variants, blob, args.repeat)


def _measure(family: str, engine: str, base, variants: dict, blob: np.ndarray, repeat: int) -> None:
    """Each variant against ``base`` on ``engine``, every graph run as written: the
    openvino engine's own trunk rewrite stays off while the networks build and run (it
    is made when a shape first comes back); faster_graph, which the engines apply,
    leaves these graphs as they are."""
    with mock.patch.object(fast_graph, "winograd_residuals", lambda model: model):
        networks = {label: engines.build_network(graph, engine, "cpu", family)
                    for label, graph in {"faster_graph": base, **variants}.items()}
        forward = {label: (lambda n: lambda: n.run({INPUT: blob})[0])(network) for label, network in networks.items()}
        for run in forward.values():  # OpenVINO compiles a model for the shape at its second forward
            run(), run()
        reference = forward["faster_graph"]()
        for label in variants:
            times = _pairs({"faster_graph": forward["faster_graph"], label: forward[label]}, repeat)
            ratio = statistics.median(b / a for a, b in zip(times["faster_graph"], times[label]))
            difference = float(np.abs(forward[label]() - reference).max())
            print(f"{family} {engine} {label}: {1000 * statistics.median(times[label]):.1f} against "
                  f"{1000 * statistics.median(times['faster_graph']):.1f} ms, ratio {ratio:.3f}, "
                  f"max difference {difference:.4f}")


if __name__ == "__main__":
    main()
