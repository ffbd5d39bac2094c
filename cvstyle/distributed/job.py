"""A Ray job from the driver's side: plan the outputs, run the actor pool, count results."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import batch
from ..errors import CvstyleError, DownloadError, ImageError, ModelError, first_line
from ..runner import Preprocessing
from ..stylizer import ModelSpec
from .actors import ArrayStylizer, FileStylizer
from .settings import ClusterSettings, ModelSettings, require_ray
from .sources import expand_sources

# Each block costs the actor a fixed overhead (Ray's task, the first read and the last
# write not overlapped); a dead actor's retry redoes at most one block.
ROWS_PER_BLOCK = 16
# Blocks an actor works on at once: one block's first read and last write (or its last
# photos, which leave a stream idle) overlap the other's painting; its Stylizers'
# streams still bound the forwards in flight.
BLOCKS_PER_ACTOR = 2
IMAGES_PER_BATCH = 4  # stylize_dataset's batches carry the pixels themselves: kept small
_ERRORS = {cls.exit_code: cls for cls in (CvstyleError, ImageError, ModelError, DownloadError)}
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")  # imageio.write_image's


@dataclass
class RayReport(batch.BatchReport):
    """What a Ray job did: ``written`` and ``failures`` (listing failures first, then in
    the order of the outputs) as in :class:`~cvstyle.batch.BatchReport`, plus counts."""

    planned: int = 0  # outputs sent to the cluster
    skipped: list[Path] = field(default_factory=list)  # outputs that existed already
    listing_failures: int = 0  # arguments that matched no input


def plan_rows(
    inputs: Iterable[str | os.PathLike], stylizers: list[batch.Named], output: str | os.PathLike | None,
    skip_existing: bool = False,
) -> tuple[list[dict], RayReport]:
    """One row per output still to write, named by :func:`cvstyle.batch.plan_outputs`
    after ``stylizers`` (anything with the ``name`` a Stylizer would have), and the
    report so far (listing failures, outputs skipped because they exist)."""
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
    models.check()  # a bad model fails here, once, not in every row
    names = [batch.Named(name) for name in models.names()]
    rows, report = plan_rows(inputs, names, output, skip_existing)
    on_done = progress(len(rows))
    settings = (models, stylize_options or {}, quality, max_pixels, os.getcwd())
    by_index = {row["index"]: row for row in rows}
    failures: dict[int, batch.Failure] = {}
    written: dict[int, Path] = {}
    if rows:
        with _connected(ray, cluster.address):
            for result in _results(ray, _stylized_rows(ray, rows, settings, cluster)):
                index = result["index"]
                if index in written or index in failures:
                    continue  # a row retried after its result was already returned
                row = by_index[index]
                job = batch.Job(Path(row["name"]), names[row["model"]], Path(result["target"]))
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
    per_block = min(ROWS_PER_BLOCK, -(-len(rows) // actors))  # every actor gets work
    blocks = -(-len(rows) // per_block)
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        FileStylizer, fn_constructor_args=settings, batch_size=per_block,
        compute=_actor_pool(ray, actors), num_cpus=cpus, num_gpus=gpus or None,
    )


def _actor_pool(ray, actors: int):
    """``actors`` actors, each working on :data:`BLOCKS_PER_ACTOR` blocks at once."""
    return ray.data.ActorPoolStrategy(
        size=actors, max_concurrent_calls_per_actor=BLOCKS_PER_ACTOR, enable_true_multi_threading=True,
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
    batch_size: int = IMAGES_PER_BATCH,
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
    settings.check()  # a bad model fails here, in one line, not in every actor
    import ray.data

    return dataset.map_batches(
        ArrayStylizer, fn_constructor_args=(settings, stylize_options, column, rgb),
        batch_size=batch_size, compute=_actor_pool(ray, actors), num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
    )
