"""The model catalogue: ``models.txt`` and users' own manifests in the same format.

The catalogue cvstyle uses is ``models.txt``, then the manifests a user registered with
``cvstyle models add`` (copies kept in ``<home>/manifests``), then a ``--manifest`` given
for one run; a later entry of a name overrides an earlier one.

One model per line, whitespace-separated ``NAME URL DIGEST [input=PRESET] [size=BYTES] [TITLE...]``;
``#`` at the start of a line or after white space starts a comment. NAME is
``family/name``; a model may also be named by its short part (``candy``) when no other
family has a model of that name. A URL ending in ``.onnx`` is an ONNX model, any other a
Torch7 `.t7` one. ``input=PRESET`` (see :mod:`cvstyle.presets`) says how the model wants
its pixels; without it, ``vgg``, what the `.t7` models take. ``size=BYTES`` is the
file's size where it is published: a download is cut off as soon as it grows past it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import presets
from .datadir import manifests_dir
from .errors import ModelError, first_line, quote, unknown_choice
from .files import write_atomically
from .hashes import Digest, parse_digest

# Where Justin Johnson's models are published; ``--base-url`` replaces this prefix.
PUBLISHED_PREFIX = "http://cs.stanford.edu/people/jcjohns/fast-neural-style/models/"
URL_SCHEMES = ("http", "https", "file")

# Each part becomes a path component in the store: starting with a letter or digit
# rules out "", "." and "..".
_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# "#" starts a comment at the start of a line or after white space, so "page#part" in a URL
# or title survives.
_COMMENT = re.compile(r"(?:^|\s)#")
# KEY=VALUE settings between DIGEST and TITLE; a title starts at the first other word.
_SETTING = re.compile(r"([a-z_]+)=(\S*)")
SETTINGS = ("input", "size")
# Model file formats by suffix; a URL with neither suffix is taken for Torch7.
ONNX_SUFFIX, T7_SUFFIX = ".onnx", ".t7"


@dataclass(frozen=True)
class Entry:
    """One catalogue line."""

    name: str  # family/short_name
    url: str
    digest: Digest
    title: str = ""
    source: str = ""  # "FILE:LINE" it was read from, for messages
    input_format: str = presets.DEFAULT  # a key of presets.PRESETS
    size: int | None = None  # bytes, where published: the most a download may take

    @property
    def suffix(self) -> str:
        """``.onnx`` for a URL ending so, else ``.t7``: the stored file keeps it."""
        return ONNX_SUFFIX if urlsplit(self.url).path.lower().endswith(ONNX_SUFFIX) else T7_SUFFIX

    @property
    def family(self) -> str:
        return self.name.partition("/")[0]

    @property
    def short_name(self) -> str:
        return self.name.partition("/")[2]


def bundled_path() -> Path:
    """The catalogue shipped with cvstyle.

    A wheel force-includes it as ``cvstyle/models.txt``; a source checkout keeps the
    single copy at the repository root.
    """
    packaged = Path(__file__).with_name("models.txt")
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "models.txt"


def parse_catalogue(text: str, source: str) -> list[Entry]:
    """Parse catalogue ``text``; ``source`` names the file in error messages."""
    entries: dict[str, Entry] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.split(raw, 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        fields = line.split(None, 3)
        if len(fields) < 3:
            raise ModelError(f"{where}: expected NAME URL DIGEST [input=PRESET] [size=BYTES] [TITLE...], got {quote(repr(line))}")
        name, url, digest_text = fields[:3]
        _check_name(name, where)
        _check_url(url, where)
        try:
            digest = parse_digest(digest_text)
        except ValueError as error:
            raise ModelError(f"{where}: {error}") from None
        if name in entries:
            raise ModelError(f"{where}: {name} is listed twice (first at {entries[name].source})")
        settings, title = _settings(fields[3] if len(fields) > 3 else "", where)
        input_format = settings.get("input", presets.DEFAULT)
        presets.preset(input_format, where)  # an unknown preset fails here, naming the line
        size = _size(settings["size"], where) if "size" in settings else None
        entries[name] = Entry(name, url, digest, title, where, input_format, size)
    return list(entries.values())


def _size(text: str, where: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise ModelError(f"{where}: size= is a file's size in bytes (a positive whole number), not {quote(repr(text))}")
    return int(text)


def _settings(rest: str, where: str) -> tuple[dict[str, str], str]:
    """The ``KEY=VALUE`` words at the start of ``rest``, and the title after them."""
    settings: dict[str, str] = {}
    while (words := rest.split(None, 1)) and (match := _SETTING.fullmatch(words[0])):
        key, value = match.groups()
        if key not in SETTINGS:
            raise unknown_choice("setting", f"{key}=", (f"{known}=" for known in SETTINGS), f"{where}: ", ModelError)
        if key in settings:
            raise ModelError(f"{where}: {key}= is given twice")
        settings[key] = value
        rest = words[1] if len(words) > 1 else ""
    return settings, rest.strip()


def _check_name(name: str, where: str) -> None:
    family, slash, short = name.partition("/")
    # A name never ends in .t7 or .onnx, so that a spec ending so always means a file path.
    if not (slash and _NAME_PART.fullmatch(family) and _NAME_PART.fullmatch(short)) or short.lower().endswith(
        (T7_SUFFIX, ONNX_SUFFIX)
    ):
        raise ModelError(
            f"{where}: model name {quote(repr(name))} is not family/name "
            "(letters, digits, '_', '-' and '.', no .t7 or .onnx suffix; e.g. instance_norm/candy)"
        )


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES or not (parts.netloc or parts.scheme == "file") or not parts.path:
        raise ModelError(f"{where}: {quote(repr(url))} is not an http, https or file URL of a file")


def read_catalogue(path: str | os.PathLike) -> list[Entry]:
    """Read and parse one catalogue file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model catalogue {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read model catalogue {path}: {_reason(error)}") from None
    return parse_catalogue(text, str(path))


def _reason(error: Exception) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)


class Catalogue:
    """The models cvstyle knows about, by full name, in catalogue order."""

    def __init__(self, entries: Iterable[Entry]):
        self._entries: dict[str, Entry] = {}
        for entry in entries:  # a later entry of the same name replaces an earlier one
            self._entries[entry.name] = entry

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def lookup(self, spec: str) -> Entry:
        """The entry for a full name (``instance_norm/candy``) or a unique short name (``candy``)."""
        if spec in self._entries:
            return self._entries[spec]
        candidates = [entry for entry in self if entry.short_name == spec]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            names = ", ".join(entry.name for entry in candidates)
            raise ModelError(f"model name {spec!r} is ambiguous: use one of {names}")
        raise ModelError(f"unknown model {spec!r}{self._suggest(spec)} (`cvstyle models` lists them)")

    def _suggest(self, spec: str) -> str:
        """The "did you mean" hint: models close to ``spec``, each named as briefly as it can be."""
        by_spelling: dict[str, list[Entry]] = {}
        for entry in self:
            by_spelling.setdefault(entry.name, []).append(entry)
            by_spelling.setdefault(entry.short_name, []).append(entry)
        close = difflib.get_close_matches(spec, list(by_spelling), n=3, cutoff=0.6)
        entries = dict.fromkeys(entry for spelling in close for entry in by_spelling[spelling])
        names = [e.short_name if len(by_spelling[e.short_name]) == 1 else e.name for e in entries]
        return f"; did you mean {' or '.join(names)}?" if names else ""

    def select(self, specs: Iterable[str]) -> list[Entry]:
        """The entries named by ``specs`` without repeats, or every entry if there are none."""
        specs = list(specs)
        if not specs:
            return list(self)
        return list({entry.name: entry for entry in map(self.lookup, specs)}.values())


def load_catalogue(manifest: str | os.PathLike | None = None) -> Catalogue:
    """The bundled catalogue, then the registered manifests, then ``manifest``: each adds
    entries and overrides those of the same name."""
    entries = read_catalogue(bundled_path())
    for path in registered_manifests():
        entries += read_catalogue(path)
    if manifest is not None:
        entries += read_catalogue(manifest)
    return Catalogue(entries)


def registered_manifests() -> list[Path]:
    """The manifests added with :func:`register_manifest`, by name."""
    try:
        return sorted(path for path in manifests_dir().glob("*.txt") if _NAME_PART.fullmatch(path.stem))
    except OSError:
        return []


def register_manifest(path: str | os.PathLike) -> tuple[Path, list[Entry]]:
    """Keep a copy of the manifest at ``path`` in the store, under its file name, so that
    its models are known without ``--manifest``; a manifest of that name is replaced.

    The manifest is checked first: a bad line is refused with its file and line number.
    Returns the kept copy and its entries.
    """
    source = Path(path)
    entries = read_catalogue(source)
    if not _NAME_PART.fullmatch(source.stem):
        raise ModelError(f"{source}: a manifest's file name must start with a letter or digit")
    target = manifests_dir() / f"{source.stem}.txt"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, source.read_bytes())
    except OSError as error:
        raise ModelError(f"cannot keep a copy of {source} in {target.parent}: {_reason(error)}") from None
    return target, entries


def forget_manifest(name: str) -> Path:
    """Delete the registered manifest ``name`` (its stem, or its file name); return its path."""
    stem = Path(name).stem if name.endswith(".txt") else name
    known = {path.stem: path for path in registered_manifests()}
    if stem not in known:
        if not known:
            raise ModelError(f"no manifest named {name!r} was added (`cvstyle models add FILE` adds one)")
        raise unknown_choice("manifest", name, known, kind=ModelError)
    try:
        known[stem].unlink()
    except OSError as error:
        raise ModelError(f"cannot remove {known[stem]}: {_reason(error)}") from None
    return known[stem]
