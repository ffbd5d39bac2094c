"""Input presets: how a model wants its pixels, by name.

A `.t7` model always takes fast-neural-style's ``vgg`` input. An ``.onnx`` model may have
been trained with another one; a catalogue line declares it (``input=rgb255``), and so
do ``--input-format`` and ``Stylizer(..., input_format=...)`` for a model file given by
path. Every preset is also applied in reverse to the network's output.
"""

from __future__ import annotations

from .errors import ModelError, unknown_choice
from .runner import VGG, Preprocessing

DEFAULT = "vgg"
PRESETS: dict[str, Preprocessing] = {
    # fast-neural-style (Torch7) and `cvstyle convert`: BGR 0-255 minus the ImageNet mean.
    "vgg": VGG,
    # RGB 0-255, no mean: the PyTorch example trainer (pytorch/examples fast_neural_style).
    "rgb255": Preprocessing(mean_bgr=(0.0, 0.0, 0.0), swap_rb=True),
    # RGB scaled to 0-1, no mean (output 0-1 as well).
    "rgb01": Preprocessing(mean_bgr=(0.0, 0.0, 0.0), scale=1 / 255, swap_rb=True),
}
DESCRIPTIONS = {
    "vgg": "BGR 0-255 minus the ImageNet mean (B 103.939 G 116.779 R 123.680), added back to the output",
    "rgb255": "RGB 0-255, no mean; the output is RGB 0-255",
    "rgb01": "RGB scaled to 0-1, no mean; the output is RGB 0-1",
}


def describe(name: str) -> str:
    return f"{name}: {DESCRIPTIONS[name]}"


def preset(name: str, where: str = "") -> Preprocessing:
    """The pre-processing called ``name``; :class:`ModelError` (prefixed by ``where``,
    e.g. ``FILE:LINE``) naming the valid presets otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise unknown_choice("input format", name, PRESETS, f"{where}: " if where else "", ModelError) from None
