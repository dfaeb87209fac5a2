"""Inputs of a batch job: which files, and the output name (key) of each.

A source is a folder (walked recursively), a glob, a text file listing one path or URI per line, or one file; each
may be a local path or a URI of any filesystem fsspec opens (``s3://``, ``gs://``, ``file://``, ``memory://``...).

An input's key is its path relative to the source's root folder without the extension (``sub/a.jpg`` -> ``sub/a``),
so same-named images in different subfolders get different outputs. Two inputs of one folder that share a stem
(``a.jpg``, ``a.png``) keep their extension instead (``a_jpg``, ``a_png``), as the ``amg`` command always did.
"""

import glob as globlib
import os
import posixpath
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LIST_SUFFIXES = (".txt", ".lst", ".list")


class SourceError(ValueError):
    """The source names no readable inputs; the message says what was looked for where."""


@dataclass(frozen=True)
class Item:
    """One input: ``source`` is what was listed (a local path or a URI), ``key`` the output name without suffix."""

    source: str
    key: str


def has_protocol(path: str) -> bool:
    return "://" in path


def url_to_fs(path: str):
    """``(fsspec filesystem, path inside it)`` of a local path or a URI."""
    from fsspec.core import url_to_fs as _url_to_fs

    return _url_to_fs(path)


def read_bytes(source: str) -> bytes:
    """The bytes of a local file or of a URI (raises ``OSError`` / ``FileNotFoundError`` when unreadable)."""
    if not has_protocol(source):
        with open(source, "rb") as file:
            return file.read()
    fs, path = url_to_fs(source)
    return fs.cat_file(path)


def list_sources(source: str, suffixes: Tuple[str, ...] = IMAGE_SUFFIXES) -> List[Item]:
    """The inputs of ``source`` (see the module docs), sorted by relative path; :class:`SourceError` when there are
    none. Local paths keep the user's spelling (relative stays relative); URIs are listed through fsspec."""
    if has_protocol(source):
        fs, path = url_to_fs(source)
        isdir, isfile = fs.isdir, fs.isfile

        def find(folder):
            return [fs.unstrip_protocol(p) for p in fs.find(folder)]

        def glob(pattern):
            return [fs.unstrip_protocol(p) for p in fs.glob(pattern) if fs.isfile(p)]

        root_of = fs.unstrip_protocol
    else:
        path, isdir, isfile = source, os.path.isdir, os.path.isfile

        def find(folder):
            return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]

        def glob(pattern):
            return [p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p)]

        def root_of(p):
            return p

    if globlib.has_magic(path):
        paths = [p for p in glob(path) if p.lower().endswith(suffixes)]
        if not paths:
            raise SourceError(f"no files ({', '.join(suffixes)}) match {source}")
        return make_items(paths, root_of(_glob_root(path)))
    if isdir(path):
        paths = [p for p in find(path) if p.lower().endswith(suffixes)]
        if not paths:
            raise SourceError(f"no images ({', '.join(suffixes)}) in folder {source}")
        return make_items(paths, root_of(path))
    if isfile(path) and path.lower().endswith(LIST_SUFFIXES):
        return _from_list(source)
    if isfile(path):
        return [Item(source, posixpath.splitext(posixpath.basename(path.replace(os.sep, "/")))[0])]
    raise SourceError(f"input not found: {source}")


def _glob_root(pattern: str) -> str:
    """The folder above the first glob character (``data/*/x*.jpg`` -> ``data``)."""
    parts = pattern.replace(os.sep, "/").split("/")
    fixed = []
    for part in parts:
        if globlib.has_magic(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def _from_list(source: str) -> List[Item]:
    """A text file listing one path or URI per line (blank lines and ``#`` comments skipped); relative paths are
    relative to the list file's folder."""
    text = read_bytes(source).decode("utf-8")
    base = posixpath.dirname(source) if has_protocol(source) else os.path.dirname(source)
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if has_protocol(line) or os.path.isabs(line):
            entries.append(line)
        else:
            entries.append(posixpath.join(base, line) if has_protocol(source) else os.path.join(base, line))
    if not entries:
        raise SourceError(f"the list file {source} names no inputs")
    return make_items(entries)


def _split(name: str) -> Tuple[str, str]:
    """``(scheme-less key space, original)``: URIs compare by ``protocol/path`` so different buckets stay apart."""
    if has_protocol(name):
        protocol, _, rest = name.partition("://")
        return f"{protocol}/{rest.lstrip('/')}", name
    return os.path.abspath(name).replace(os.sep, "/").lstrip("/"), name


def _common_root(entries: Iterable[str]) -> str:
    folders = [posixpath.dirname(_split(e)[0]) for e in entries]
    return posixpath.commonpath(folders) if folders else ""


def make_items(paths: List[str], root: Optional[str] = None) -> List[Item]:
    """Items of ``paths`` keyed by their path relative to ``root`` (default: their common folder; see the module
    docs), in the order of those relative paths."""
    space_root = _split(root)[0] if root is not None else _common_root(paths)
    rel = []
    for p in paths:
        space = _split(p)[0]
        rel.append(posixpath.relpath(space, space_root) if space_root else space)
    stems = [posixpath.splitext(r)[0] for r in rel]
    counts = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    items = []
    for p, r, stem in zip(paths, rel, stems):
        if counts[stem] > 1:
            folder, name = posixpath.split(r)
            stem = posixpath.join(folder, name.replace(".", "_"))
        items.append(Item(p, stem))
    if len({i.key for i in items}) != len(items):
        raise SourceError(f"inputs of {root} map to the same output name twice (the same file listed twice?)")
    order = sorted(range(len(items)), key=lambda i: rel[i])
    return [items[i] for i in order]
