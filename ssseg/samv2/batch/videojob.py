"""The ``video`` job: a manifest of videos with their prompts in, one output folder per video out.

Manifest (JSON lines; blank lines and ``#`` comments skipped)::

    {"video": "clips/a.mp4", "prompts": {"objects": [{"id": 1, "frame": 0, "box": [10, 10, 80, 60]}]}}
    {"video": "s3://bucket/b", "prompts_file": "prompts/b.json"}

``video`` is a video file or a folder of ``<index>.jpg`` frames, local or a URI (copied to a local temporary place
first); relative paths are relative to the manifest's folder, as are mask paths of inline prompts. Each video's
folder is ``DST/<key>/`` (the key as for images: the path relative to the videos' common folder, without extension)
with what the ``video`` command writes: ``masks/*.png``, ``overlay.mp4`` (unless ``overlay`` is off) and
``summary.json``, written last and the done marker.
"""

import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ssseg.samv2.batch.job import BatchWorker, ModelSpec, apply_threads, done_row
from ssseg.samv2.batch.sources import has_protocol, make_items, url_to_fs
from ssseg.samv2.batch.store import OutputStore

MANIFEST_KEYS = {"video", "prompts", "prompts_file"}


@dataclass(frozen=True)
class VideoSpec:
    """Everything a ``video`` worker needs: output root, model, overlay video on/off and its frame rate."""

    out: str
    model: ModelSpec = field(default_factory=ModelSpec)
    overlay: bool = True
    fps: Optional[float] = None

    def outputs(self, key: str) -> List[str]:
        return [f"{key}/summary.json"]  # written last by track_video: the done marker


def _resolve(path: str, base: str) -> str:
    if has_protocol(path) or os.path.isabs(path):
        return path
    return posixpath.join(base, path) if has_protocol(base) else os.path.join(base, path)


def read_manifest(manifest: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, str]]]:
    """``(rows, failed)``: a row per valid line (``source``, ``key``, ``prompts`` as JSON text, ``where``,
    ``base_dir``), and ``{"input", "reason"}`` for lines that are not valid (the rest of the job still runs)."""
    from ssseg.samv2.batch.sources import SourceError, read_bytes

    try:
        text = read_bytes(manifest).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"cannot read manifest {manifest}: {error}") from None
    base = posixpath.dirname(manifest) if has_protocol(manifest) else os.path.dirname(os.path.abspath(manifest))
    entries, failed = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{manifest}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            failed.append({"input": where, "reason": f"{where}: not valid JSON ({error})"})
            continue
        reason = _check_entry(entry, where)
        if reason:
            failed.append({"input": str(entry.get("video", where)) if isinstance(entry, dict) else where,
                           "reason": reason})  # fmt: skip
            continue
        entries.append((entry, where))
    if not entries and not failed:
        raise SourceError(f"the manifest {manifest} names no videos")
    videos = [_resolve(e["video"], base) for e, _ in entries]
    items = make_items(videos) if videos else []
    keys = {i.source: i.key for i in items}
    rows = []
    for (entry, where), video in zip(entries, videos):
        if "prompts" in entry:
            prompts, prompts_where, prompts_base = entry["prompts"], f"{where}: prompts", base
        else:
            prompts, prompts_where, prompts_base = None, _resolve(entry["prompts_file"], base), ""
        rows.append(
            {
                "source": video,
                "key": keys[video],
                "prompts": json.dumps(prompts),
                "where": prompts_where,
                "base_dir": prompts_base,
            }
        )
    rows.sort(key=lambda r: r["key"])
    return rows, failed


def _check_entry(entry: Any, where: str) -> Optional[str]:
    if not isinstance(entry, dict):
        return f'{where}: expected {{"video": ..., "prompts": {{...}}}} or {{"video": ..., "prompts_file": ...}}'
    unknown = sorted(set(entry) - MANIFEST_KEYS)
    if unknown:
        return f"{where}: unknown key(s) {unknown}; allowed: {sorted(MANIFEST_KEYS)}"
    if not isinstance(entry.get("video"), str) or not entry["video"]:
        return f"{where}: 'video' must be the path or URI of a video file or frame folder"
    if ("prompts" in entry) == ("prompts_file" in entry):
        return f"{where}: give exactly one of 'prompts' (the prompts inline) and 'prompts_file' (a path)"
    if "prompts_file" in entry and not isinstance(entry["prompts_file"], str):
        return f"{where}: 'prompts_file' must be a path"
    return None


def load_row_prompts(row: Dict[str, Any]):
    """The validated prompts of a row (inline JSON, or the file it names, local or a URI)."""
    from ssseg.samv2.batch.sources import read_bytes
    from ssseg.samv2.prompts import PromptsError, load_prompts, parse_prompts

    prompts, where = json.loads(str(row["prompts"])), str(row["where"])
    if prompts is not None:
        return parse_prompts(prompts, where, str(row["base_dir"]))
    if not has_protocol(where):
        return load_prompts(where)
    try:
        data = json.loads(read_bytes(where).decode("utf-8"))
    except (OSError, ValueError) as error:
        raise PromptsError(f"cannot read prompts file {where}: {error}") from None
    return parse_prompts(data, where, posixpath.dirname(where))


def _local_copy(source: str, folder: str) -> str:
    """A local path of ``source``: itself, or a copy of a URI's file or frame folder inside ``folder``."""
    from ssseg.samv2.common import CLIError

    if not has_protocol(source):
        if not os.path.exists(source):
            raise CLIError(f"video not found: {source}")
        return source
    fs, path = url_to_fs(source)
    if not fs.exists(path):
        raise CLIError(f"video not found: {source}")
    target = os.path.join(folder, posixpath.basename(path.rstrip("/")) or "video")
    fs.get(path, target, recursive=fs.isdir(path))
    return target


class VideoWorker(BatchWorker):
    """One process's ``video`` worker: the video predictor is built once, here."""

    def __init__(self, spec: VideoSpec) -> None:
        from ssseg.modules.models.segmentors.samv2 import SAMV2VideoPredictor
        from ssseg.samv2.common import build_model

        apply_threads(spec.model)
        self.spec = spec
        self.predictor = SAMV2VideoPredictor(model=build_model(spec.model.namespace(), video=True))
        self.store = OutputStore(spec.out)

    def process(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """One manifest row -> the video's output folder and its result row (``units``: frames)."""
        from ssseg.samv2.common import autocast
        from ssseg.samv2.videocmd import track_video

        source, key = str(row["source"]), str(row["key"])
        prompts = load_row_prompts(row)
        with tempfile.TemporaryDirectory(prefix="ssseg-video-") as scratch:
            video = _local_copy(source, scratch)
            out = self.store.path(key) if self.store.is_local else os.path.join(scratch, "out")
            summary = track_video(
                self.predictor,
                video,
                prompts,
                str(row["where"]),
                out,
                autocast(self.spec.model.namespace()),
                overlay=self.spec.overlay,
                fps=self.spec.fps,
                progress=False,
                input_name=source if has_protocol(source) else None,
            )
            if not self.store.is_local:  # upload, the marker last
                names = sorted(os.path.relpath(os.path.join(d, n), out).replace(os.sep, "/")
                               for d, _, files in os.walk(out) for n in files)  # fmt: skip
                names.remove("summary.json")
                for name in names + ["summary.json"]:
                    self.store.put_file(f"{key}/{name}", os.path.join(out, name))
                shutil.rmtree(out, ignore_errors=True)
        return done_row(source, key, units=int(summary["num_frames"]))
