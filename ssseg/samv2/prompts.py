"""The prompts file of ``ssseg-samv2 video``: which objects to track, from which clicks, boxes or masks.

Schema (JSON)::

    {
      "objects": [
        {"id": 1, "frame": 0, "points": [[210, 350], [250, 220]], "labels": [1, 1]},
        {"id": 2, "frame": 0, "box": [300, 0, 500, 400]},
        {"id": 2, "frame": 30, "box": [310, 5, 505, 410], "points": [[400, 150]], "labels": [0]},
        {"id": 3, "frame": 12, "mask": "masks/object3_frame12.png"}
      ]
    }

Each entry prompts one object on one frame:

* ``id``: the object id, an integer in 1..255 (the palette index of the object in the mask PNGs; 0 is background).
  An id may appear on several frames (corrections), but only once per frame.
* ``frame``: the frame index, 0-based, in the order of the frames (numeric file names of a JPEG folder).
* ``points`` + ``labels``: clicks as ``[x, y]`` pixels of the original frames, labels 1 (foreground) or 0
  (background), one label per point.
* ``box``: ``[x0, y0, x1, y1]`` in pixels, with ``x1 >= x0`` and ``y1 >= y0``; may be combined with points.
* ``mask``: a mask image (PNG; nonzero pixels are the object), relative to the prompts file; not combined with
  points or a box.

Every entry needs points, a box or a mask. Unknown keys are errors (a typo must not be silently ignored).
"""

import json
import numbers
import os
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

KEYS = {"id", "frame", "points", "labels", "box", "mask"}


class PromptsError(ValueError):
    """The prompts file is malformed; the message names the file and the entry."""


@dataclass
class ObjectPrompt:
    """One validated entry: ``points`` N x 2 float32 / ``labels`` N int32, ``box`` 4 float32, ``mask`` H x W bool."""

    obj_id: int
    frame: int
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _numbers(value: Any, where: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond float range
        raise PromptsError(f"{where}: {what}, got {json.dumps(value)[:80]}") from None
    if array.dtype == object or not np.all(np.isfinite(array)):
        raise PromptsError(f"{where}: {what}, got {json.dumps(value)[:80]}")
    return array


def _parse_entry(entry: Any, where: str, base_dir: str) -> ObjectPrompt:
    if not isinstance(entry, dict):
        raise PromptsError(f'{where}: expected an object like {{"id": 1, "frame": 0, "points": ...}}')
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise PromptsError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(KEYS)}")
    for key in ("id", "frame"):
        if key not in entry:
            raise PromptsError(f"{where}: missing '{key}'")
    obj_id, frame = entry["id"], entry["frame"]
    if not _is_int(obj_id) or not 1 <= obj_id <= 255:
        raise PromptsError(f"{where}.id: must be an integer in 1..255 (its palette index), got {obj_id!r}")
    if not _is_int(frame) or frame < 0:
        raise PromptsError(f"{where}.frame: must be an integer >= 0, got {frame!r}")
    prompt = ObjectPrompt(obj_id=int(obj_id), frame=int(frame))
    if ("points" in entry) != ("labels" in entry):
        raise PromptsError(f"{where}: 'points' and 'labels' go together (one label per point)")
    if "points" in entry:
        points = _numbers(entry["points"], f"{where}.points", "expected a list of [x, y] pairs")
        labels = _numbers(entry["labels"], f"{where}.labels", "expected a list of 0/1 labels")
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise PromptsError(f"{where}.points: expected a non-empty list of [x, y] pairs, got shape {points.shape}")
        if labels.shape != (len(points),):
            raise PromptsError(f"{where}.labels: expected {len(points)} labels (one per point), got {labels.tolist()}")
        if not np.isin(labels, (0, 1)).all():
            raise PromptsError(f"{where}.labels: must be 1 (foreground) or 0 (background), got {labels.tolist()}")
        prompt.points, prompt.labels = points.astype(np.float32), labels.astype(np.int32)
    if "box" in entry:
        box = _numbers(entry["box"], f"{where}.box", "expected [x0, y0, x1, y1]")
        if box.shape != (4,):
            raise PromptsError(f"{where}.box: expected [x0, y0, x1, y1], got {entry['box']}")
        if box[2] < box[0] or box[3] < box[1]:
            raise PromptsError(f"{where}.box: needs x1 >= x0 and y1 >= y0, got {box.tolist()}")
        prompt.box = box.astype(np.float32)
    if "mask" in entry:
        if prompt.points is not None or prompt.box is not None:
            raise PromptsError(f"{where}: a 'mask' cannot be combined with points or a box")
        prompt.mask = _read_mask(entry["mask"], f"{where}.mask", base_dir)
    if prompt.points is None and prompt.box is None and prompt.mask is None:
        raise PromptsError(f"{where}: give 'points' with 'labels', a 'box', or a 'mask'")
    return prompt


def _read_mask(value: Any, where: str, base_dir: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str):
        raise PromptsError(f"{where}: expected the path of a mask image, got {value!r}")
    path = value if os.path.isabs(value) else os.path.join(base_dir, value)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) > 0
    except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError) as error:  # ValueError: a NUL in the path
        raise PromptsError(f"{where}: cannot read mask image {path!r}: {error}") from None


def load_prompts(path: str, num_frames: Optional[int] = None) -> List[ObjectPrompt]:
    """Read and validate a prompts file (see the module docs); frames are checked against ``num_frames``."""
    if not os.path.isfile(path):
        raise PromptsError(f"prompts file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise PromptsError(f"{path}: not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise PromptsError(f"{path}: not a UTF-8 text file ({error})") from None
    except RecursionError:
        raise PromptsError(f"{path}: JSON nested too deeply") from None
    return parse_prompts(data, path, os.path.dirname(os.path.abspath(path)), num_frames)


def parse_prompts(data: Any, path: str, base_dir: str, num_frames: Optional[int] = None) -> List[ObjectPrompt]:
    """Validate prompts already read as JSON (``path`` names them in errors; mask paths are relative to
    ``base_dir``), e.g. the inline prompts of a batch manifest line."""
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise PromptsError(f'{path}: expected {{"objects": [...]}} with one entry per object and frame')
    if not data["objects"]:
        raise PromptsError(f"{path}: 'objects' is empty; nothing to track")
    prompts, seen = [], set()
    for i, entry in enumerate(data["objects"]):
        where = f"{path}: objects[{i}]"
        prompt = _parse_entry(entry, where, base_dir)
        if (prompt.obj_id, prompt.frame) in seen:
            raise PromptsError(f"{where}: object {prompt.obj_id} already has a prompt on frame {prompt.frame}")
        seen.add((prompt.obj_id, prompt.frame))
        prompts.append(prompt)
    if num_frames is not None:
        check_frames(prompts, num_frames, path)
    return prompts


def check_frames(prompts: List[ObjectPrompt], num_frames: int, path: str) -> None:
    """Every prompt's frame exists in a video of ``num_frames`` frames (known only once the video is open)."""
    for i, prompt in enumerate(prompts):
        if prompt.frame >= num_frames:
            raise PromptsError(
                f"{path}: objects[{i}].frame: {prompt.frame} is out of range for a video of {num_frames} frames"
            )
