"""What every benchmark section shares: the run plan, timing, photos, tables, memory.

Of cvstyle it uses only the fixture models; how the benchmarks reach into the project
is :mod:`project`'s job.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cvstyle.testing import write_fixture_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SIZES = ((320, 240), (640, 480), (1024, 768), (1920, 1080))
LARGE = ((4000, 3000), (8000, 6000), (12000, 8400))  # 12, 48 and 100.8 MP
REFERENCE = (1024, 768)  # the size the end-to-end and per-megapixel figures refer to
GREY_LIMIT = 1  # an output-preserving change moves no pixel by more than this


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run (full or ``--quick``)."""

    quick: bool
    forward_sizes: tuple
    forward_repeat: int
    apply_repeat: int
    batch_images: int
    batch_trials: int
    large_sizes: tuple
    live_sizes: tuple
    live_frames: int
    engine_sizes: tuple
    engine_repeat: int
    settings_size: tuple
    settings_repeat: int
    ratio_rounds: int  # rounds of estimate, exact, exact, estimate at 12 MP
    engine: str = "auto"  # the engine the project's own paths run on, as --engine


FULL = Plan(
    quick=False, forward_sizes=SIZES, forward_repeat=5, apply_repeat=5, batch_images=20, batch_trials=2,
    large_sizes=LARGE, live_sizes=((320, 240), (640, 480)), live_frames=12,
    engine_sizes=((640, 480), (1024, 768)), engine_repeat=9,
    settings_size=(640, 480), settings_repeat=5, ratio_rounds=3,
)
QUICK = Plan(
    quick=True, forward_sizes=SIZES[:3], forward_repeat=3, apply_repeat=2, batch_images=6, batch_trials=1,
    large_sizes=LARGE[:1], live_sizes=((320, 240), (640, 480)), live_frames=4,
    engine_sizes=((640, 480),), engine_repeat=3,
    settings_size=(320, 240), settings_repeat=3, ratio_rounds=1,
)


@dataclass
class Context:
    """What a section gets: the plan, the fixture models by family, a scratch folder,
    numpy's matmul rate (GFLOP/s, the machine's practical peak) and the figures earlier
    sections measured (``results``, keyed by tuples) for later ones to reuse."""

    plan: Plan
    models: dict[str, Path]
    folder: Path
    peak_gflops: float
    results: dict = field(default_factory=dict)


def fixture_models(folder: Path, families: list[str]) -> dict[str, Path]:
    """The architecture-faithful fixture model of each family, written to ``folder``."""
    return {family: write_fixture_model(folder / f"{family}.t7", family, seed=1) for family in families}


def log(message: str) -> None:
    """Progress, on stderr: the document goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(notes: list[str]) -> str:
    """``notes`` as a markdown list after a blank line, or nothing."""
    return "\n\n" + "\n".join(f"- {note}" for note in notes) if notes else ""


def timed(function: Callable, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def interleaved(runs: dict[str, Callable[[], object]], repeat: int, warm_up: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, round-robin so that load affects all alike."""
    for _ in range(warm_up):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(timed(run)[0])
    return times


def photo(size: tuple[int, int], variant: int = 0) -> np.ndarray:
    """A photo of ``size`` made from the bundled samples (different crops per variant)."""
    names = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    image = cv2.imread(str(names[variant % len(names)]), cv2.IMREAD_COLOR)
    if variant >= len(names):  # vary crop and orientation for more distinct inputs
        shift = (variant // len(names)) * 17
        image = np.roll(image, shift, axis=1)
        if (variant // len(names)) % 2:
            image = image[:, ::-1]
    width, height = size
    interpolation = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def grey_diff(a: np.ndarray, b: np.ndarray) -> int:
    """The largest difference between two uint8 pictures, in grey levels."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the current address space,
    which exec replaces; ru_maxrss also keeps the peak of the pre-exec fork of the parent
    (this whole benchmark's memory), so it is only the fallback."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
