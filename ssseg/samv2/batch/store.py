"""The output side of a batch job: a folder or an object-store prefix, written so that no half file is ever done.

A local folder is written through a temporary file in the same folder and an atomic rename (the temporary name
keeps the extension, ``a.tmp123.json``, and is never an output name). An object store (anything fsspec opens that is
not the local disk: ``s3://``, ``gs://``, ``memory://``...) has no rename; there each file is one PUT of the complete
bytes, which the store makes visible only once it is complete. An input is done exactly when its *marker* (the file
written last: the JSON of an image, ``summary.json`` of a video) exists, so a job killed at any moment and started
again redoes only what has no marker.
"""

import json
import os
import posixpath
from typing import Iterable, List, Optional, Set

from ssseg.samv2.batch.sources import has_protocol, url_to_fs


class OutputStore:
    """Files under ``root`` (a local folder or a URI); ``name`` arguments are ``/``-separated relative names."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.is_local = not has_protocol(root) or root.startswith("file://")
        if self.is_local:
            self.fs, self.base = None, url_to_fs(root)[1] if has_protocol(root) else root
        else:
            self.fs, self.base = url_to_fs(root)

    def path(self, name: str) -> str:
        """Where ``name`` lives (a local path, or the path inside the object store)."""
        if self.is_local:
            return os.path.join(self.base, *name.split("/"))
        return posixpath.join(self.base, name)

    def uri(self, name: str) -> str:
        """``name`` as the user would address it (for messages)."""
        return self.path(name) if self.is_local else self.fs.unstrip_protocol(self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` as ``name`` so that the file exists either complete or not at all."""
        path = self.path(name)
        if not self.is_local:
            self.fs.pipe_file(path, data)  # one PUT: an object store shows the object only once complete
            return
        from ssseg.samv2.common import write_atomic

        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as file:
                file.write(data)

        write_atomic(path, write)

    def put_file(self, name: str, local_path: str) -> None:
        """Copy a finished local file to ``name`` (atomic as :meth:`write_bytes`)."""
        with open(local_path, "rb") as file:
            self.write_bytes(name, file.read())

    def exists(self, name: str) -> bool:
        if self.is_local:
            return os.path.isfile(self.path(name))
        return self.fs.isfile(self.path(name))

    def remove(self, name: str) -> None:
        if self.exists(name):
            if self.is_local:
                os.remove(self.path(name))
            else:
                self.fs.rm_file(self.path(name))

    def existing(self) -> Set[str]:
        """The relative names of every file under the root, listed once (a resume check for millions of inputs
        must not ask the store about each one)."""
        if self.is_local:
            if not os.path.isdir(self.base):
                return set()
            found = set()
            for folder, _, names in os.walk(self.base):
                rel = os.path.relpath(folder, self.base)
                prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
                found.update(prefix + n for n in names)
            return found
        if not self.fs.exists(self.base):
            return set()
        base = self.base.rstrip("/") + "/"
        return {p[len(base) :] for p in self.fs.find(self.base) if p.startswith(base)}


ERRORS_FILE = "errors.jsonl"


def write_errors(store: OutputStore, errors: Iterable[dict]) -> Optional[str]:
    """``errors.jsonl`` (one ``{"input": ..., "reason": ...}`` per line) when there are errors; a stale one from an
    earlier run is removed when there are none. Returns its location or ``None``."""
    lines: List[str] = [json.dumps({"input": e["input"], "reason": e["reason"]}) for e in errors]
    if not lines:
        store.remove(ERRORS_FILE)
        return None
    store.write_bytes(ERRORS_FILE, ("\n".join(lines) + "\n").encode("utf-8"))
    return store.uri(ERRORS_FILE)
