"""Stylize many files: expand inputs, name outputs, and keep the network busy.

Decoding the next photo and encoding the previous result run in background threads
while the network works on the current one (OpenCV releases the GIL in both).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from .engines.streams import in_order, throughput_streams
from .errors import CvstyleError, ImageError, quote
from .imageio import READ_EXTENSIONS, WRITE_EXTENSIONS, Picture, read_image, write_image
from .stylizer import Stylizer
from .video.containers import DEFAULT_SUFFIX as VIDEO_SUFFIX
from .video.containers import OUTPUT_FORMATS as VIDEO_OUTPUTS
from .video.containers import VIDEO_EXTENSIONS, is_video

_LISTED_EXTENSIONS = READ_EXTENSIONS | VIDEO_EXTENSIONS  # what a folder contributes


def expand_inputs(patterns: Iterable[str | os.PathLike]) -> tuple[list[Path], list["Failure"]]:
    """Files, directories (their images, sorted) and glob patterns, in the order given.

    Returns the image paths and a failure for each argument that matched nothing.
    """
    found: list[Path] = []
    failures: list[Failure] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in _LISTED_EXTENSIONS)
            if not images:
                failures.append(Failure(path, ImageError(f"{path}: no images or videos in this directory")))
            found += images
        elif path.exists():
            found.append(path)
        elif glob.has_magic(os.fspath(pattern)):
            matches = sorted(Path(p) for p in glob.glob(os.fspath(pattern)))
            if not matches:
                failures.append(Failure(path, ImageError(f"{pattern}: no file matches")))
            found += [p for p in matches if p.is_file()]
        else:
            failures.append(Failure(path, ImageError(f"{path}: no such file or directory")))
    unique = list(dict.fromkeys(found))
    return unique, failures


@dataclass
class Failure:
    source: Path
    error: CvstyleError


@dataclass(frozen=True)
class Named:
    """What naming outputs needs of a Stylizer, without loading it (a Ray driver names
    the outputs while the nodes load the networks)."""

    name: str


@dataclass
class Job:
    source: Path
    stylizer: Stylizer | Named
    target: Path
    # Default names get their extension once the input is read: .png if it has
    # transparency (so the alpha survives), else .jpg.
    auto_extension: bool = False

    def resolve_target(self, has_alpha: bool) -> Path:
        return self._with_extension(".png" if has_alpha else ".jpg")

    def resolve_video_target(self) -> Path:
        return self._with_extension(VIDEO_SUFFIX)

    def _with_extension(self, extension: str) -> Path:
        if self.auto_extension:
            self.target = self.target.with_name(self.target.name + extension)
            self.auto_extension = False
        return self.target

    def existing_output(self) -> Path | None:
        """The output already written under this job's name, if any (a default name with
        either extension). Outputs are renamed into place only once complete, so one that
        exists is whole."""
        names = [self.target.name + ext for ext in (".jpg", ".png")] if self.auto_extension else [self.target.name]
        return next((self.target.with_name(n) for n in names if self.target.with_name(n).is_file()), None)


@dataclass
class VideoSettings:
    """What only videos take: temporal stabilisation, and a per-frame progress callback
    ``progress(job, frames done, frames expected or None)``."""

    stabilize: bool = False
    progress: Callable[[Job, int, int | None], None] | None = None


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def streams_for(sources: list[Path], models: int) -> int:
    """Streams a Stylizer gets for a job over ``sources`` with ``models`` styles: several
    for more than one photo or for any video, where photos per second count; one for a
    single photo, where its own time does (:mod:`cvstyle.engines.streams`)."""
    if len(sources) * models > 1 or any(is_video(source) for source in sources):
        return throughput_streams()
    return 1


def plan_outputs(
    sources: list[Path], stylizers: list[Stylizer] | list[Named], output: str | os.PathLike | None
) -> list[Job]:
    """One job per (input, model): ``<stem>_<model>.jpg`` in ``output`` (a directory,
    default the current one; ``.png`` for inputs with transparency, ``.mp4`` for
    videos), or exactly ``output`` when it names a single image or video file. A name
    ending in another extension is refused unless it is an existing folder.
    """
    jobs = len(sources) * len(stylizers)
    out = Path(output) if output is not None else Path.cwd()
    suffix = out.suffix.lower()
    known = set(WRITE_EXTENSIONS) | set(VIDEO_OUTPUTS)
    if output is not None and suffix and suffix not in known and not out.is_dir():
        # Taken for a folder name, "-o out.gif" would quietly create a folder out.gif/.
        raise ImageError(
            f"-o {out}: unsupported output format {quote(repr(suffix))} (supported: "
            f"{', '.join(sorted(known))}); to write into a folder of that name, create it first"
        )
    if output is not None and suffix in known and not out.is_dir():
        if jobs != 1:
            raise CvstyleError(
                f"-o {out} names one file, but there are {jobs} outputs: give a directory"
            )
        return [Job(sources[0], stylizers[0], out)]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageError(f"{out}: cannot create the output folder ({error.strerror})") from None
    return [
        Job(source, stylizer, out / f"{source.stem}_{stylizer.name}", auto_extension=True)
        for source in sources
        for stylizer in stylizers
    ]


def _read(source: Path, max_pixels: int | None) -> Picture | CvstyleError:
    try:
        return read_image(source, max_pixels)
    except CvstyleError as error:
        return error


def run_jobs(
    jobs: list[Job],
    stylize_options: dict | None = None,
    quality: int = 95,
    max_pixels: int | None = None,
    on_done: Callable[[Job, CvstyleError | None], None] = lambda job, error: None,
    video: VideoSettings | None = None,
) -> BatchReport:
    """Run ``jobs`` in order, each input decoded once, with reads and writes overlapped.
    Photos are painted as many at a time as their Stylizer has streams. Inputs whose
    content is a video are painted frame by frame into a video."""
    options = stylize_options or {}
    report = BatchReport()
    videos = {job.source for job in jobs if is_video(job.source)}
    painters = max((job.stylizer.streams for job in jobs), default=1)
    with (
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="cvstyle-io") as pool,
        ThreadPoolExecutor(max_workers=painters, thread_name_prefix="cvstyle-paint") as painting,
    ):
        reads: dict[Path, Future] = {}
        writes: list[tuple[Job, Future]] = []

        def prefetch(index: int) -> None:
            if index < len(jobs) and jobs[index].source not in reads and jobs[index].source not in videos:
                reads[jobs[index].source] = pool.submit(_read, jobs[index].source, max_pixels)

        def decoded() -> Iterator[tuple[Job, Picture | CvstyleError | None]]:
            """Each job with its photo (None for a video), decoded one job ahead."""
            prefetch(0)
            for index, job in enumerate(jobs):
                if job.source in videos:
                    prefetch(index + 1)
                    yield job, None
                    continue
                picture = reads[job.source].result()
                prefetch(index + 1)
                # Drop decoded photos no later job needs, to bound memory on big folders.
                if index + 1 == len(jobs) or jobs[index + 1].source != job.source:
                    reads.pop(job.source)
                yield job, picture

        for job, painted in paint_in_order(decoded(), lambda job: job.stylizer, options, painting, painters):
            if painted is None:
                error = _run_video(job, options, quality, video or VideoSettings())
            elif isinstance(painted, CvstyleError):
                error = painted
            else:
                target = job.resolve_target(painted.alpha is not None)
                writes.append((job, pool.submit(write_image, target, painted, quality)))
                writes = _collect_writes(writes, report, on_done, wait=False)
                continue
            if error is None:
                report.written.append(job.target)
            else:
                report.failures.append(Failure(job.source, error))
            on_done(job, error)
        _collect_writes(writes, report, on_done, wait=True)
    return report


def _run_video(job: Job, options: dict, quality: int, settings: VideoSettings) -> CvstyleError | None:
    try:
        from .video import pipeline
    except ModuleNotFoundError as missing:
        if missing.name != "av":
            raise
        return ImageError(f"{job.source}: videos need PyAV: pip install -e '.[video]'")
    frame_options = {key: value for key, value in options.items() if key != "size"}
    progress = settings.progress
    try:
        pipeline.stylize_video(
            job.source, job.resolve_video_target(),
            lambda bgr: job.stylizer.stylize(bgr, **frame_options),
            size=options.get("size"), quality=quality, stabilized=settings.stabilize,
            progress=(lambda done, total: progress(job, done, total)) if progress else None,
            painters=job.stylizer.streams,
        )
    except CvstyleError as error:
        return error
    return None


Item = TypeVar("Item")


def paint_in_order(
    decoded: Iterable[tuple[Item, Picture | CvstyleError | None]], stylizer_of: Callable[[Item], Stylizer],
    options: dict, painting: ThreadPoolExecutor, painters: int,
) -> Iterator[tuple[Item, Picture | CvstyleError | None]]:
    """Each item with its painted picture, or the error that reading or painting it
    gave, in the order of ``decoded`` (items without a picture pass as they come);
    ``painters`` paintings run at once on ``painting``'s threads."""
    def start(pair: tuple[Item, Picture | CvstyleError | None]) -> Future | None:
        item, picture = pair
        if not isinstance(picture, Picture):
            return None
        return painting.submit(stylize_picture, stylizer_of(item), picture, options)

    for (item, picture), painted in in_order(decoded, start, painters):
        if painted is not None:
            try:
                picture = painted.result()
            except CvstyleError as error:
                picture = error
        yield item, picture


def stylize_picture(stylizer: Stylizer, picture: Picture, options: dict) -> Picture:
    """``stylizer``'s painting of ``picture``, its transparency kept."""
    image = picture.bgr if picture.alpha is None else np.dstack([picture.bgr, picture.alpha])
    painted = stylizer.stylize(image, **options)
    if picture.alpha is None:
        return Picture(painted, None)
    return Picture(np.ascontiguousarray(painted[:, :, :3]), painted[:, :, 3])


def _collect_writes(writes, report: BatchReport, on_done, wait: bool):
    pending = []
    for job, future in writes:
        if not wait and not future.done():
            pending.append((job, future))
            continue
        try:
            future.result()
            report.written.append(job.target)
            on_done(job, None)
        except CvstyleError as error:
            report.failures.append(Failure(job.source, error))
            on_done(job, error)
    return pending


def iter_stylized(
    sources: Iterable[Path], stylizer: Stylizer, **options
) -> Iterator[tuple[Path, Picture]]:
    """For notebooks: yield ``(path, stylized picture)`` for each readable image."""
    for source in sources:
        yield source, stylize_picture(stylizer, read_image(source), options)
