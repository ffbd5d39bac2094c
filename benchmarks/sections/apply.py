"""Section: ``cvstyle apply`` end to end on one JPEG against the forward it wraps."""

from __future__ import annotations

import statistics

import cv2

from cvstyle import Stylizer
from cvstyle.imageio import read_image, write_image

from harness import REFERENCE, Context, fmt_size, interleaved, log, ms, photo, table, timed
from project import cli_apply, clear_network_cache, engine_argument, engine_option, engine_text, stylizer_runner

TITLE = "End-to-end `cvstyle apply` versus forward"


def run(context: Context) -> str:
    plan = context.plan
    source = context.folder / "apply-1024x768.jpg"
    cv2.imwrite(str(source), photo(REFERENCE), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = context.folder / "apply-out"
    rows = []
    for family, path in context.models.items():
        log(f"apply {family} {fmt_size(REFERENCE)}")
        clear_network_cache()
        arguments = [str(source), "-m", str(path), "-o", str(out), "--device", "cpu", *engine_option(plan)]
        cold = timed(cli_apply, arguments)[0]  # loads the network, first forward at this shape
        # The runner apply used: the cached one.
        runner = stylizer_runner(Stylizer(str(path), device="cpu", **engine_argument(plan)))
        picture = read_image(source)
        blob = runner.preprocess(picture.bgr)
        output = runner.infer(blob)
        painted = runner.postprocess(output, *picture.bgr.shape[:2])
        times = interleaved(
            {
                "apply": lambda: cli_apply(arguments),
                "forward": lambda: runner.infer(blob),
                "read": lambda: read_image(source),
                "preprocess": lambda: runner.preprocess(picture.bgr),
                "postprocess": lambda: runner.postprocess(output, *picture.bgr.shape[:2]),
                "write": lambda: write_image(out / "parts.jpg", type(picture)(painted, None), 95),
            },
            plan.apply_repeat,
            warm_up=0,
        )
        median = {name: statistics.median(values) for name, values in times.items()}
        context.results["apply", family] = median["apply"]
        overhead = median["apply"] / median["forward"] - 1
        rows.append([
            family, runner.engine, ms(cold), ms(median["apply"]), ms(median["forward"]), f"{overhead * 100:+.1f} %",
            ms(median["read"]), ms(median["preprocess"]), ms(median["postprocess"]), ms(median["write"]),
        ])
    header = ["family", "engine", "first apply ms (loads the net)", "apply ms (median)", "forward ms",
              "overhead", "read ms", "preprocess ms", "postprocess ms", "write JPEG ms"]
    return (
        f"`cvstyle apply photo.jpg -m model.t7 -o out/{engine_text(plan)}` run in-process through `cvstyle.cli.main` "
        f"on a {fmt_size(REFERENCE)} JPEG, interleaved with a forward of the same cached network "
        f"on the same photo's blob (median of {plan.apply_repeat}). Overhead = apply / forward - 1 "
        "(goal: <= 5 %). The parts (sequential in a single-image run) are timed alone.\n\n"
        + table(header, rows)
    )
