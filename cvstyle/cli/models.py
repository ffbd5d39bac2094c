"""``cvstyle fetch-models`` and ``cvstyle models``: get, list, check and remove models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from .. import store
from ..catalogue import PUBLISHED_PREFIX, forget_manifest, load_catalogue, register_manifest, registered_manifests
from ..download import FetchSettings, fetch_models, normalise_base_url
from ..transfer import DEFAULT_MAX_MB
from ..errors import DownloadError, ModelError
from ..modelinfo import describe
from . import cli
from .options import echo_note, manifest_option

BUILTIN_TITLE = "Pencil sketch (hand-made, untrained; no download)"

def format_size(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


def echo_table(headers: Sequence[str], rows: list[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last column is left ragged."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers) - 1)]
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)] + [str(row[-1])]
        click.echo("  ".join(cells).rstrip())


@cli.command("fetch-models")
@click.argument("names", nargs=-1)
@click.option(
    "--base-url",
    metavar="URL",
    help=f"Fetch from a mirror: replaces {PUBLISHED_PREFIX} in the catalogue's URLs. "
    "http(s), file:// or a local directory laid out as FAMILY/NAME.t7 (.onnx for ONNX models).",
)
@manifest_option
@click.option("--force", is_flag=True, help="Download again even if a verified copy is present.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=FetchSettings.timeout, metavar="SECONDS",
    show_default=True, help="Seconds to wait for a connection, and for data while downloading.",
)
@click.option(
    "--retries", type=click.IntRange(min=0), default=FetchSettings.retries, metavar="N", show_default=True,
    help="Further attempts after a connection error or a server error (5xx).",
)
@click.option(
    "--retry-delay", type=click.FloatRange(min=0), default=FetchSettings.retry_delay, metavar="SECONDS",
    show_default=True,
    help="Seconds before the first retry; doubles on each further one.",
)
@click.option(
    "--max-download-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_MAX_MB, metavar="MB",
    show_default=True,
    help="Refuse a download growing past this many MiB, for models whose catalogue line has no size=.",
)
def fetch_models_command(
    names: tuple[str, ...], base_url: str | None, manifest: Path | None, force: bool,
    timeout: float, retries: int, retry_delay: float, max_download_mb: float,
) -> None:
    """Download and verify models (default: every model in the catalogue).

    NAME is a catalogue name (instance_norm/candy) or a unique short name (candy).
    Files appear under their final names only once their digest has been checked.
    """
    builtin = [name for name in names if name in store.BUILTIN_MODELS]
    for name in builtin:
        click.echo(f"{name}: built into cvstyle, nothing to fetch")
    wanted = [name for name in names if name not in builtin]
    if names and not wanted:
        return
    entries = load_catalogue(manifest).select(wanted)
    settings = FetchSettings(
        base_url=normalise_base_url(base_url) if base_url else None,
        force=force, timeout=timeout, retries=retries, retry_delay=retry_delay,
        max_bytes=int(max_download_mb * 1024**2), notify=echo_note,
    )
    results = fetch_models(entries, settings)
    click.echo()
    echo_table(
        ["MODEL", "RESULT", "SIZE", "DETAIL"],
        [[r.entry.name, r.outcome, format_size(r.size), r.detail or str(r.path)] for r in results],
    )
    failed = [r for r in results if not r.ok]
    if failed:
        raise DownloadError(f"{len(failed)} of {len(results)} models failed: {', '.join(r.entry.name for r in failed)}")


def _manifest(own: Path | None) -> Path | None:
    """A subcommand's --manifest, else the one given to ``cvstyle models``."""
    parent = click.get_current_context().parent
    return own if own is not None else parent.params.get("manifest") if parent else None


@cli.group("models", invoke_without_command=True)
@manifest_option
@click.pass_context
def models_group(ctx: click.Context, manifest: Path | None) -> None:
    """List the models: the built-in sketch, then the catalogue's with their size on disk
    and status (missing, ok, corrupt)."""
    if ctx.invoked_subcommand is not None:
        return
    states = [store.status(entry) for entry in load_catalogue(manifest)]
    sketch = store.BUILTIN_DIR / store.BUILTIN_MODELS["sketch"]
    echo_table(
        ["NAME", "FAMILY", "SIZE", "STATUS", "TITLE"],
        [["sketch", "builtin", format_size(sketch.stat().st_size), "built-in", BUILTIN_TITLE]]
        + [[s.entry.short_name, s.entry.family, format_size(s.size), s.status.value, s.entry.title] for s in states],
    )
    present = sum(s.status is store.Status.OK for s in states)
    click.echo(
        f"\n{present} of {len(states)} downloaded; the store takes {format_size(store.store_size())} "
        f"in {store.models_dir()} (set {store.ENV_HOME} to move it)"
    )
    if present < len(states):
        click.echo(f"fetch the others with: {store.fetch_command([], manifest)} [NAME...]")
    for path in registered_manifests():
        click.echo(f"added manifest {path.stem} ({path}); `cvstyle models forget {path.stem}` removes it")


@models_group.command("add")
@click.argument("manifest_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
def add_command(manifest_file: Path) -> None:
    """Remember the models of a manifest (same format as models.txt) without --manifest.

    A copy is kept in the store under the file's name; add it again after editing it.
    """
    kept, entries = register_manifest(manifest_file)
    click.echo(f"added {len(entries)} model{'s' * (len(entries) != 1)} from {manifest_file} (kept as {kept})")
    if entries:
        click.echo(f"fetch them with: {store.fetch_command(entries)}")


@models_group.command("forget")
@click.argument("name")
def forget_command(name: str) -> None:
    """Forget a manifest added with `cvstyle models add` (downloaded files stay until removed)."""
    path = forget_manifest(name)
    click.echo(f"forgot manifest {path.stem} ({path} removed)")


@models_group.command("verify")
@click.argument("names", nargs=-1)
@manifest_option
def verify_command(names: tuple[str, ...], manifest: Path | None) -> None:
    """Re-hash downloaded models (default: all) and compare with the catalogue's digests."""
    manifest = _manifest(manifest)
    entries = load_catalogue(manifest).select(names)
    bad = []
    for entry in entries:
        state = store.verify(entry)
        click.echo(f"{entry.name}: {state.status.value}" + (f" ({state.detail})" if state.detail else ""))
        # A model not downloaded is a failure only when it was asked for by name.
        if state.status is store.Status.CORRUPT or (names and state.status is store.Status.MISSING):
            bad.append(entry)
    if bad:
        raise ModelError(f"{len(bad)} of {len(entries)} models did not verify: run `{store.fetch_command(bad, manifest)}`")


@models_group.command("remove")
@click.argument("names", nargs=-1, required=True)
@manifest_option
def remove_command(names: tuple[str, ...], manifest: Path | None) -> None:
    """Delete downloaded models with their unfinished downloads and ONNX conversions."""
    for entry in load_catalogue(_manifest(manifest)).select(names):
        removed = store.remove(entry)
        click.echo(f"{entry.name}: {'removed' if removed else 'not downloaded, nothing to remove'}")


@models_group.command("path")
@click.argument("name")
@manifest_option
def path_command(name: str, manifest: Path | None) -> None:
    """Print the file of a downloaded model (fails with the fetch command if it is not)."""
    click.echo(store.resolve_model(name, _manifest(manifest)))


@models_group.command("info")
@click.argument("model", metavar="NAME|PATH")
@manifest_option
def info_command(model: str, manifest: Path | None) -> None:
    """Describe a model's architecture, read from the file itself (.t7 or .onnx)."""
    path, entry = store.locate_model(model, _manifest(manifest))
    click.echo(describe(path, entry.input_format if entry is not None else None))
