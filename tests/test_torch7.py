"""The Torch7 reader and writer: round trips, and clear refusals of anything else."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from cvstyle import torch7
from cvstyle.testing import fixture_bytes
from cvstyle.modelinfo import inspect_model
from cvstyle.torch7 import TorchObject, Torch7Error


def roundtrip(value):
    buffer = io.BytesIO()
    torch7.dump(value, buffer)
    return torch7.loads(buffer.getvalue())


def test_roundtrip_of_every_value_kind():
    weight = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    module = TorchObject("nn.SpatialConvolution", {"weight": weight, "kW": 2, "train": False})
    value = roundtrip({"model": module, "opt": {"arch": "c9s1-32", "lr": 0.5}, 1: [1, 2, "x"]})
    assert value["opt"] == {"arch": "c9s1-32", "lr": 0.5}
    assert value[1] == {1: 1, 2: 2, 3: "x"}
    read = value["model"]
    assert read.class_name == "nn.SpatialConvolution" and read.fields["train"] is False
    assert read.fields["weight"].dtype == np.float32
    assert np.array_equal(read.fields["weight"], weight)
    assert roundtrip(np.zeros(0, np.float32)).size == 0
    assert np.array_equal(roundtrip(np.arange(5, dtype=np.int64)), np.arange(5))


def test_fixture_checkpoints_have_the_published_layout():
    for family, norm, width in [("eccv16", "nn.SpatialBatchNormalization", 32), ("instance_norm", "nn.InstanceNormalization", 16)]:
        checkpoint = torch7.loads(fixture_bytes(family, seed=3))
        model = checkpoint["model"]
        assert model.class_name == "nn.Sequential" and checkpoint["opt"]["arch"].startswith(f"c9s1-{width},")
        names = [m.class_name for m in model.children]
        assert names[0] == "nn.SpatialReflectionPadding" and names[1:4] == ["nn.SpatialConvolution", norm, "nn.ReLU"]
        assert names[-3:] == ["nn.Tanh", "nn.MulConstant", "nn.TotalVariation"]
        assert names.count("nn.SpatialFullConvolution") == 2
        residual = model.children[10]
        assert [m.class_name for m in residual.children] == ["nn.ConcatTable", "nn.CAddTable"]
        assert residual.children[0].children[1].class_name == "nn.ShaveImage"
        assert model.children[1].fields["weight"].shape == (width, 3, 9, 9)


def test_same_seed_same_bytes_other_seed_other_weights():
    assert fixture_bytes("instance_norm", 5) == fixture_bytes("instance_norm", 5)
    assert fixture_bytes("instance_norm", 5) != fixture_bytes("instance_norm", 6)


@pytest.mark.parametrize(
    "data,problem",
    [
        (b"", "empty"),
        (b"<!DOCTYPE HTML PUBLIC><html><head><title>301 Moved Permanently</title>", "text file"),
        (b"\x07\x00\x00\x00garbage", "unknown type tag"),
        (struct.pack("<ii", 3, 1) + struct.pack("<i", 2**30), "does not fit"),
        (struct.pack("<i", 2) + struct.pack("<i", 2**31 - 1) + b"ab", "truncated"),
    ],
)
def test_garbage_is_refused_with_a_reason(data, problem):
    with pytest.raises(Torch7Error, match=problem) as error:
        torch7.loads(data)
    assert str(error.value).startswith("not a Torch7 model: ")


def test_every_truncation_of_a_model_is_refused():
    model = fixture_bytes("instance_norm", 1)
    for cut in list(range(0, 4000, 37)) + [len(model) // 2, len(model) - 1]:
        with pytest.raises(Torch7Error):
            torch7.loads(model[:cut])


def test_nesting_bomb_is_bounded():
    depth = 100_000
    bomb = b"".join(struct.pack("<iii", 3, i + 1, 1) + struct.pack("<id", 1, 1.0) for i in range(depth))
    with pytest.raises(Torch7Error, match="nesting"):
        torch7.loads(bomb)


def test_inspect_describes_a_model(eccv16_model):
    info = inspect_model(eccv16_model)
    assert info.family == "eccv16"
    # c9s1-32, d64, d128, 10 residual convs, u64, u32, c9s1-3 plus biases and norms.
    convs = 3 * 32 * 81 + 32 * 64 * 9 + 64 * 128 * 9 + 10 * 128 * 128 * 9 + 128 * 64 * 9 + 64 * 32 * 9 + 32 * 3 * 81
    assert convs < info.parameters < convs * 1.01
    assert "SpatialBatchNormalization" in info.summary()
