"""cvstyle benchmark: one markdown document with the figures of every section.

    python benchmarks/bench.py                    # full run (about 25 minutes on 2 cores)
    python benchmarks/bench.py --quick            # fewer sizes and repeats, no 48 or 100 MP
    python benchmarks/bench.py --only 1,7         # some sections, by number ...
    python benchmarks/bench.py --only live --quick  # ... or by name
    python benchmarks/bench.py --list             # the sections
    python benchmarks/bench.py -o docs/benchmarks-run.md   # also write the document to a file

The document goes to stdout (progress to stderr). It runs on the architecture-faithful
fixture networks of :mod:`cvstyle.testing` (the published checkpoints' layers and
shapes, so the same work per frame), written to a temporary folder. Each section is a
module of ``benchmarks/sections`` (listed in ``sections.SECTIONS``); what they share is
in :mod:`harness`, and everything that reaches into cvstyle in :mod:`project`.

Not part of the test suite. Timings are medians after a warm-up; configurations compared
with each other are interleaved run by run, so that load from other processes hits them
alike. Run it on a quiet machine: the load average at start and end is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from cvstyle.testing import FAMILIES

import sections
from flops import matmul_gflops
from harness import FULL, QUICK, Context, fixture_models, log
from machine import load_average, machine_description
from project import engine_name


def section_names(only: str, parser: argparse.ArgumentParser) -> list[str]:
    """The sections ``--only`` names (numbers or names), in the document's order."""
    wanted = set()
    for token in (part.strip() for part in only.split(",") if part.strip()):
        if token.isdigit() and 1 <= int(token) <= len(sections.SECTIONS):
            wanted.add(sections.SECTIONS[int(token) - 1])
        elif token in sections.SECTIONS:
            wanted.add(token)
        else:
            parser.error(f"unknown section {token!r}: choose numbers 1-{len(sections.SECTIONS)} "
                         f"or names {', '.join(sections.SECTIONS)}")
    return [name for name in sections.SECTIONS if name in wanted or not wanted]


def arguments_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats, no 48 or 100 MP")
    parser.add_argument("--only", default="", help="comma-separated section numbers or names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated model families")
    parser.add_argument("--engine", default="auto", choices=("auto", "opencv", "onnxruntime", "openvino"),
                        help="engine of the project's own paths (apply, batch, large, live), as "
                        "`cvstyle apply --engine`; default auto, the project's default")
    parser.add_argument("-o", "--output", type=Path, help="also write the document to this file")
    # A section measuring in a subprocess runs this script again: --child NAME ARGUMENTS...
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the document."""
    parts = ["python benchmarks/bench.py"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append(f"--only {args.only}")
    if args.engine != "auto":
        parts.append(f"--engine {args.engine}")
    if args.families != ",".join(FAMILIES):
        parts.append(f"--families {args.families}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = arguments_parser()
    args = parser.parse_args(argv)
    if args.child:
        sections.load(args.child[0]).child(args.child[1:])
        return 0
    if args.list:
        for name in sections.SECTIONS:
            print(f"{sections.number(name)}. {name}: {sections.load(name).TITLE}")
        return 0
    wanted = section_names(args.only, parser)
    plan = dataclasses.replace(QUICK if args.quick else FULL, engine=args.engine)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    started = time.perf_counter()
    document: list[str] = []

    def emit(text: str) -> None:
        document.append(text)
        print(text + "\n", flush=True)

    emit(f"# cvstyle benchmark{' (QUICK run)' if plan.quick else ''}\n\n"
         f"Run on {time.strftime('%Y-%m-%d %H:%M %Z')} with `{command_line(args)}`."
         "\n\n## Machine\n\n" + machine_description(plan))
    with tempfile.TemporaryDirectory(prefix="cvstyle-bench-") as temp:
        folder = Path(temp)
        log("numpy matmul")
        context = Context(plan, fixture_models(folder, families), folder, matmul_gflops())
        chosen = {engine_name(plan.engine, path) for path in context.models.values()}
        emit(f"numpy float32 matmul (2048x2048 @ 2048x2048, best of 7): **{context.peak_gflops:.1f} GFLOP/s**; "
             "the 'ratio to matmul' columns divide by this figure. The forward and settings sections "
             "measure OpenCV's DNN; apply, batch, large and live run the project's own paths on engine "
             f"`{plan.engine}`, which is **{', '.join(sorted(chosen))}** here; the engines section puts "
             "the engines side by side.")
        for name in wanted:
            section = sections.load(name)
            log(f"section {sections.number(name)} ({name}): {section.TITLE}")
            emit(f"## {sections.number(name)}. {section.TITLE}\n\n{section.run(context)}")
        end_peak = matmul_gflops(repeat=3)
    minutes = (time.perf_counter() - started) / 60
    emit(f"Finished in {minutes:.1f} min; load average at end {load_average()}; numpy matmul at end "
         f"{end_peak:.1f} GFLOP/s (a large change from the start means the machine was busy).")
    if args.output:
        args.output.write_text("\n\n".join(document) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
