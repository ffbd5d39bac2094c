"""Stylize many files on a Ray cluster (``cvstyle apply --ray``), or a Ray Dataset of images.

The driver lists the inputs (paths, folders, globs, or URIs a pyarrow filesystem
understands), names the outputs as ``apply`` does (:func:`cvstyle.batch.plan_outputs`),
leaves out those already written when asked, and streams one row per output through a
Ray Data actor pool. Each actor builds its :class:`~cvstyle.stylizer.Stylizer` objects
once, then reads, stylizes and writes its rows with the same image I/O as ``apply``
(:mod:`cvstyle.imageio`: EXIF, alpha, 16-bit, pixel cap, atomic writes) and returns one
result row per output: written, or the one-line error ``apply`` would report.

Exactness under failures: Ray Data restarts a dead actor and retries its rows; a retried
row writes the same file again, atomically, so every output exists once and whole; the
driver counts each row once, by its index.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import batch
from .errors import CvstyleError, DownloadError, ImageError, ModelError, first_line
from .imageio import READ_EXTENSIONS, Picture, decode_image, read_image, write_image
from .runner import Preprocessing
from .stylizer import ModelSpec, Stylizer, parse_model_spec

INSTALL_COMMAND = "pip install 'cvstyle[ray]'"
ROWS_PER_BLOCK = 4  # small blocks: a dead actor's retry redoes few images
_ERRORS = {cls.exit_code: cls for cls in (CvstyleError, ImageError, ModelError, DownloadError)}
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")  # imageio.write_image's


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or one line saying how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise CvstyleError(f"--ray needs Ray Data, which is not installed: {INSTALL_COMMAND}") from None
    return ray


@dataclass(frozen=True)
class ModelSettings:
    """The models and how to run them, as ``apply`` takes them; each actor builds its own
    Stylizers from these (model files given by path must be where every node sees them)."""

    models: tuple[ModelSpec, ...] = ("sketch",)
    device: str = "auto"
    engine: str = "auto"
    input_format: str | Preprocessing | None = None
    manifest: str | None = None
    fetch: bool = False  # download missing catalogue models on each node

    def absolute(self) -> ModelSettings:
        """The same settings with model files and the manifest as absolute paths (actors
        do not run in the driver's folder); each model as ``(name, weight)`` pairs."""
        models = tuple(
            tuple(
                (os.path.abspath(name) if Path(name).is_file() else name, weight)
                for name, weight in (
                    parse_model_spec(spec) if isinstance(spec, (str, os.PathLike)) else spec
                )
            )
            for spec in self.models
        )
        manifest = os.path.abspath(self.manifest) if self.manifest else None
        return replace(self, models=models, manifest=manifest)

    def stylizers(self, device: str | None = None) -> list[Stylizer]:
        """One Stylizer per model, on ``device`` (default: the settings' own)."""
        if self.fetch:
            from .download import ensure_model  # requests is imported only when fetching

            for spec in self.models:
                for name, _ in parse_model_spec(spec) if isinstance(spec, str) else spec:
                    ensure_model(name, self.manifest)
        return [
            Stylizer(
                spec, device=device or self.device, manifest=self.manifest, engine=self.engine,
                input_format=self.input_format,
            )
            for spec in self.models
        ]


@dataclass(frozen=True)
class ClusterSettings:
    """Where to run and how big each actor is."""

    address: str = "auto"  # auto: $RAY_ADDRESS, else a new local Ray
    actors_per_node: int | None = None  # default: as many as a node's GPUs, else one
    cpus_per_actor: float | None = None  # default: 1 with GPUs, else all of a node's CPUs
    gpus_per_actor: float = 0.0


@dataclass
class RayReport(batch.BatchReport):
    """What a Ray job did: ``written`` and ``failures`` (listing failures first, then in
    the order of the outputs) as in :class:`~cvstyle.batch.BatchReport`, plus counts."""

    planned: int = 0  # outputs sent to the cluster
    skipped: list[Path] = field(default_factory=list)  # outputs that existed already
    listing_failures: int = 0  # arguments that matched no input


def is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def expand_sources(inputs: Iterable[str | os.PathLike]) -> tuple[list[str], list[batch.Failure]]:
    """:func:`cvstyle.batch.expand_inputs` for local arguments; a URI (``s3://...``) is
    listed through its pyarrow filesystem: a file, a folder's images, or a glob."""
    found: list[str] = []
    failures: list[batch.Failure] = []
    for argument in inputs:
        text = os.fspath(argument)
        if is_uri(text):
            sources, problem = _list_uri(text)
        else:
            paths, missing = batch.expand_inputs([text])
            sources, problem = [str(p) for p in paths], missing[0].error if missing else None
        found += sources
        if problem is not None:
            failures.append(batch.Failure(Path(text), problem))
    return list(dict.fromkeys(found)), failures


def _list_uri(uri: str) -> tuple[list[str], CvstyleError | None]:
    import fnmatch

    from pyarrow import fs as pafs

    folder, _, last = uri.rstrip("/").rpartition("/")
    pattern = last if any(c in last for c in "*?[") else None
    try:
        filesystem, path = pafs.FileSystem.from_uri(folder if pattern else uri)
        kind = filesystem.get_file_info(path).type
        if kind == pafs.FileType.File and not pattern:
            return [uri], None
        if kind != pafs.FileType.Directory:
            return [], ImageError(f"{uri}: {'no file matches' if pattern else 'no such file or directory'}")
        folder = folder if pattern else uri.rstrip("/")
        entries = filesystem.get_file_info(pafs.FileSelector(path))
    except (OSError, ValueError) as error:
        return [], ImageError(f"{uri}: cannot list ({first_line(error)})")
    names = sorted(
        entry.base_name for entry in entries
        if entry.type == pafs.FileType.File and (
            fnmatch.fnmatchcase(entry.base_name, pattern) if pattern
            else Path(entry.base_name).suffix.lower() in READ_EXTENSIONS
        )
    )
    if not names:
        return [], ImageError(f"{uri}: {'no file matches' if pattern else 'no images in this directory'}")
    return [f"{folder}/{name}" for name in names], None


def read_uri(uri: str, max_pixels: int | None = None) -> Picture:
    """:func:`cvstyle.imageio.read_image` for a URI of a pyarrow filesystem."""
    from pyarrow import fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except (OSError, ValueError) as error:
        raise ImageError(f"{uri}: cannot read ({first_line(error)})") from None
    return decode_image(data, uri, max_pixels)


# ---------------------------------------------------------------- planning (driver)


def plan_rows(
    inputs: Iterable[str | os.PathLike], stylizers: list[Stylizer], output: str | os.PathLike | None,
    skip_existing: bool = False,
) -> tuple[list[dict], RayReport]:
    """One row per output still to write, named by :func:`cvstyle.batch.plan_outputs`,
    and the report so far (listing failures, outputs skipped because they exist)."""
    sources, failures = expand_sources(inputs)
    report = RayReport(failures=failures, listing_failures=len(failures))
    jobs = batch.plan_outputs([Path(s) for s in sources], stylizers, output) if sources else []
    given = {Path(source): source for source in sources}  # a URI's "//" does not survive Path
    rows = []
    for index, job in enumerate(jobs):
        existing = job.existing_output() if skip_existing else None
        if existing is not None:
            report.skipped.append(existing)
            continue
        source = given[job.source]
        rows.append({
            "index": index, "name": source, "model": stylizers.index(job.stylizer),
            "target": str(job.target), "auto_extension": job.auto_extension,
        })
    report.planned = len(rows)
    return rows, report


# ---------------------------------------------------------------- the actors


class _FileStylizer:
    """A Ray Data actor: builds the Stylizers once, then reads, stylizes and writes rows.

    It works in the driver's folder where its node sees it (a shared file system, or
    the driver's own machine), so that relative names and messages are as ``apply``'s;
    elsewhere names are taken relative to that folder, i.e. as absolute paths."""

    def __init__(self, settings: ModelSettings, options: dict, quality: int, max_pixels: int | None, folder: str):
        self.root = "" if os.path.isdir(folder) else folder
        if not self.root:
            os.chdir(folder)
        self.options, self.quality, self.max_pixels = options, quality, max_pixels
        try:
            self.stylizers, self.error = settings.stylizers(), None
        except CvstyleError as error:  # e.g. a model missing on this node: every row says so
            self.stylizers, self.error = [], error

    def _path(self, name: str) -> str:
        return name if is_uri(name) else os.path.join(self.root, name)

    def _read(self, name: str) -> Picture | CvstyleError:
        try:
            if is_uri(name):
                return read_uri(name, self.max_pixels)
            return read_image(self._path(name), self.max_pixels)
        except CvstyleError as error:
            return error

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list]:
        results: dict[str, list] = {"index": [], "target": [], "error": [], "exit_code": []}

        def record(index: int, target: str, error: CvstyleError | None) -> None:
            results["index"].append(int(index))
            results["target"].append(target)
            results["error"].append("" if error is None else str(error))
            results["exit_code"].append(0 if error is None else error.exit_code)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="cvstyle-io") as pool:
            reads = {name: pool.submit(self._read, name) for name in dict.fromkeys(rows["name"])}
            writes = []
            for index, name, model, target, auto in zip(
                rows["index"], rows["name"], rows["model"], rows["target"], rows["auto_extension"]
            ):
                picture = self.error or reads[name].result()
                if isinstance(picture, CvstyleError):
                    record(index, target, picture)
                    continue
                try:
                    result = batch.stylize_picture(self.stylizers[model], picture, self.options)
                except CvstyleError as error:
                    record(index, target, error)
                    continue
                job = batch.Job(Path(name), self.stylizers[model], Path(target), bool(auto))
                target = str(job.resolve_target(picture.alpha is not None))
                writes.append((index, target, pool.submit(write_image, self._path(target), result, self.quality)))
            for index, target, write in writes:
                try:
                    write.result()
                    record(index, target, None)
                except CvstyleError as error:
                    record(index, target, error)
        return results


class _ArrayStylizer:
    """A Ray Data actor for :func:`stylize_dataset`: stylizes an image column in place."""

    def __init__(self, settings: ModelSettings, options: dict, column: str, rgb: bool):
        [self.stylizer] = settings.stylizers()
        self.options, self.column, self.rgb = options, column, rgb

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        painted = []
        for image in rows[self.column]:
            image = np.asarray(image, dtype=np.uint8)
            if self.rgb and image.ndim == 3:
                image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]
            result = self.stylizer.stylize(image, **self.options)
            painted.append(result[:, :, [2, 1, 0, 3][: result.shape[2]]] if self.rgb else result)
        shapes = {image.shape for image in painted}
        # Equal shapes make one tensor column; mixed sizes a column of arrays.
        rows[self.column] = np.stack(painted) if len(shapes) == 1 else _object_array(painted)
        return rows


def _object_array(images: list[np.ndarray]) -> np.ndarray:
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return column


# ---------------------------------------------------------------- running (driver)


def apply_on_ray(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    models: ModelSettings = ModelSettings(),
    cluster: ClusterSettings = ClusterSettings(),
    stylize_options: dict | None = None,
    quality: int = 95,
    max_pixels: int | None = None,
    skip_existing: bool = False,
    progress: Callable[[int], Callable[[batch.Job, CvstyleError | None], None]] = lambda total: _ignore,
) -> RayReport:
    """``cvstyle apply`` on a Ray cluster: stylize ``inputs`` (paths, folders, globs,
    URIs) with each of ``models`` into ``output`` (a folder every node sees, or one file
    name), as :func:`cvstyle.batch.run_jobs` would. ``skip_existing`` leaves outputs
    already written alone. ``progress(total)`` is called once the outputs to write are
    known, and the function it returns, ``on_done(job, error)``, once for each of them.
    """
    ray = require_ray()
    models = models.absolute()
    # Built here (on the CPU) to name the outputs, and to fail once on a bad model.
    stylizers = models.stylizers(device="cpu")
    rows, report = plan_rows(inputs, stylizers, output, skip_existing)
    on_done = progress(len(rows))
    if not rows:
        return report
    settings = (models, stylize_options or {}, quality, max_pixels, os.getcwd())
    by_index = {row["index"]: row for row in rows}
    failures: dict[int, batch.Failure] = {}
    written: dict[int, Path] = {}
    with _connected(ray, cluster.address):
        for result in _results(ray, _stylized_rows(ray, rows, settings, cluster)):
            index = result["index"]
            if index in written or index in failures:
                continue  # a row retried after its result was already returned
            row = by_index[index]
            job = batch.Job(Path(row["name"]), stylizers[row["model"]], Path(result["target"]))
            error = _ERRORS.get(result["exit_code"], CvstyleError)(result["error"]) if result["error"] else None
            if error is None:
                written[index] = job.target
            else:
                failures[index] = batch.Failure(job.source, error)
            on_done(job, error)
    remove_temporaries([row["target"] for row in rows] + report.skipped)
    report.written = [written[index] for index in sorted(written)]
    report.failures += [failures[index] for index in sorted(failures)]
    return report


def _results(ray, dataset) -> Iterator[dict]:
    try:
        yield from dataset.iter_rows()
    except ray.exceptions.RayError as error:  # e.g. cvstyle missing on a node; the details are in Ray's logs
        raise CvstyleError(f"the Ray job failed: {first_line(error, last=True)}") from None


def _ignore(job: batch.Job, error: CvstyleError | None) -> None:
    pass


def _stylized_rows(ray, rows: list[dict], settings: tuple, cluster: ClusterSettings):
    actors, cpus, gpus = actor_shape(ray, cluster, len(rows))
    blocks = max(1, -(-len(rows) // ROWS_PER_BLOCK))
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _FileStylizer, fn_constructor_args=settings, batch_size=ROWS_PER_BLOCK,
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus or None,
    )


def actor_shape(ray, cluster: ClusterSettings, rows: int) -> tuple[int, float, float]:
    """How many actors the cluster's live nodes hold, and each one's CPUs and GPUs."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    gpus = cluster.gpus_per_actor
    per_node = cluster.actors_per_node or (None if gpus else 1)
    cpus = cluster.cpus_per_actor
    if cpus is None:
        usable = [node["CPU"] for node in nodes if node.get("CPU", 0) > 0]
        cpus = 1.0 if gpus or not usable else min(usable) / per_node
    count = 0
    for node in nodes:
        fits = [per_node] if per_node else []
        fits += [int(node.get("CPU", 0) // cpus)] if cpus else []
        fits += [int(node.get("GPU", 0) // gpus)] if gpus else []
        count += min(fits) if fits else 0
    if count < 1:
        raise CvstyleError(
            f"no node of the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs for an actor "
            "(see --cpus-per-actor, --gpus-per-actor)"
        )
    return min(count, rows), cpus, gpus


@contextlib.contextmanager
def _connected(ray, address: str) -> Iterator[None]:
    """Connected to Ray at ``address`` for the block (``auto``: ``$RAY_ADDRESS``, else a
    new local Ray); a session the caller opened already is used as it is."""
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS") if address == "auto" else address
    # Actors on other nodes see the driver's cvstyle settings (model store, pixel cap).
    variables = {name: value for name, value in os.environ.items() if name.startswith("CVSTYLE_")}
    try:
        ray.init(
            address=address or "local", logging_level=logging.ERROR, log_to_driver=False,
            include_dashboard=False, runtime_env={"env_vars": variables},
        )
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise CvstyleError(f"cannot connect to Ray at {address}: {first_line(error)}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def remove_temporaries(targets: Iterable[str]) -> None:
    """Delete the temporary files that writers killed mid-write left beside ``targets``
    (default names: with either extension)."""
    targets = [Path(target) for target in targets]
    wanted = {target.name for target in targets}
    for folder in {target.parent for target in targets}:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match and (match["name"] in wanted or Path(match["name"]).stem in wanted):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def stylize_dataset(
    dataset: Any,
    model: ModelSpec = "sketch",
    *,
    column: str = "image",
    rgb: bool = True,
    device: str = "auto",
    engine: str = "auto",
    input_format: str | Preprocessing | None = None,
    manifest: str | os.PathLike | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
    gpus_per_actor: float = 0.0,
    batch_size: int = ROWS_PER_BLOCK,
    **stylize_options: Any,
) -> Any:
    """``dataset`` (a ``ray.data.Dataset``) with each image of ``column`` stylized by
    ``model``, lazily, for use inside a Ray Data pipeline.

    Images are HxW, HxWx3 or HxWx4 uint8 arrays, RGB(A) as ``ray.data.read_images``
    gives them (``rgb=False``: BGR(A) as OpenCV's); results come back in the same order
    of channels, transparency kept. ``stylize_options`` are those of
    :meth:`cvstyle.Stylizer.stylize` (``size``, ``strength``, ``preserve_colors``...).
    ``actors`` actors each load the model once.
    """
    require_ray()
    settings = ModelSettings((model,), device, engine, input_format, manifest and os.fspath(manifest)).absolute()
    settings.stylizers(device="cpu")  # a bad model fails here, in one line, not in every actor
    import ray.data

    return dataset.map_batches(
        _ArrayStylizer, fn_constructor_args=(settings, stylize_options, column, rgb),
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
    )
