"""Section: a folder of JPEGs through ``cvstyle apply`` against forward-only and the
tutorials' recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from harness import Context, fmt_size, log, photo, table, timed
from project import (
    cli_apply, clear_network_cache, engine_name, engine_option, engine_text, load_runner, seed_network,
)

TITLE = "Batch throughput"
SIZE = (640, 480)


def seed_recipe(paths: list[Path], model: Path, out: Path) -> None:
    """What tutorials do: load the network for every photo and run each alone."""
    mean = (103.939, 116.779, 123.680)
    for path in paths:
        net = seed_network(model)
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image, 1.0, (width, height), mean, swapRB=False, crop=False)
        net.setInput(blob)
        output = net.forward()
        output = output.reshape((3, output.shape[2], output.shape[3]))
        output[0] += mean[0]
        output[1] += mean[1]
        output[2] += mean[2]
        output = np.clip(output.transpose(1, 2, 0), 0, 255).astype("uint8")
        cv2.imwrite(str(out / f"{path.stem}_seed.jpg"), output)


def variants(context: Context, model: Path, images: Path, paths: list[Path],
             out: Path) -> dict[str, Callable[[], float]]:
    """Each way of painting the folder, as a function returning its seconds."""
    engine = context.plan.engine

    def forward_only() -> float:
        runner = load_runner(model, engine)
        blobs = [runner.preprocess(cv2.imread(str(p))) for p in paths]
        runner.infer(blobs[0])  # a warm network, blobs already in memory
        return timed(lambda: [runner.infer(blob) for blob in blobs])[0]

    def project(cold: bool) -> float:
        if cold:  # it loads its network, as one `cvstyle apply` process does
            clear_network_cache()
        arguments = [str(images), "-m", str(model), "-o", str(out), "--device", "cpu", *engine_option(context.plan)]
        return timed(cli_apply, arguments)[0]

    return {
        "forward": forward_only,
        "cold": lambda: project(cold=True),
        "warm": lambda: project(cold=False),  # a long-running process (notebook, server): the network is cached
        "seed": lambda: timed(seed_recipe, paths, model, out)[0],
    }


def run(context: Context) -> str:
    plan = context.plan
    images = context.folder / "batch-in"
    images.mkdir()
    paths = []
    for i in range(plan.batch_images):
        paths.append(images / f"photo{i:02d}.jpg")
        cv2.imwrite(str(paths[-1]), photo(SIZE, i), [cv2.IMWRITE_JPEG_QUALITY, 92])
    rows = []
    for family, model in context.models.items():
        log(f"batch {family} {plan.batch_images} x {fmt_size(SIZE)}")
        out = context.folder / f"batch-out-{family}"
        out.mkdir()
        runs = variants(context, model, images, paths, out)
        # Best of the trials, run in A-B-C C-B-A order so that a load burst favours none.
        best: dict[str, float] = {}
        for trial in range(plan.batch_trials):
            for name in runs if trial % 2 == 0 else list(runs)[::-1]:
                best[name] = min(best.get(name, float("inf")), runs[name]())
        n = len(paths)
        rows.append([
            family, engine_name(plan.engine, model), f"{n / best['forward']:.2f}",
            f"{n / best['warm']:.2f}", f"{best['forward'] / best['warm'] * 100:.1f} %",
            f"{n / best['cold']:.2f}", f"{best['forward'] / best['cold'] * 100:.1f} %",
            f"{n / best['seed']:.2f}", f"{best['seed'] / best['cold']:.2f}x",
        ])
    header = ["family", "engine", "forward-only images/s", "batch images/s (network cached)",
              "batch / forward-only", "batch images/s (with network load)", "with load / forward-only",
              "seed recipe images/s", "batch (with load) speed-up over seed"]
    return (
        f"A folder of {plan.batch_images} {fmt_size(SIZE)} JPEGs, best of {plan.batch_trials} "
        "trial(s) per variant. Forward-only: one warm network of the batch's engine "
        f"on blobs already in memory. Project batch: `cvstyle apply folder -m model.t7 -o out/{engine_text(plan)}` "
        "in-process (expand_inputs, plan_outputs, run_jobs with overlapped decode/encode), once "
        "with the network already cached (as in a notebook or a server) and once loading it "
        "first (as one `cvstyle apply` process does: conversion cache on disk, session set-up, "
        "the first, slower forward). Seed recipe: `cv2.dnn.readNetFromTorch` (OpenCV 5: "
        "`readNetFromONNX` on the project's conversion) + imread + "
        "blobFromImage + forward + imwrite per photo, as tutorials do. Goal: batch >= 95 % of "
        "forward-only.\n\n" + table(header, rows)
    )
