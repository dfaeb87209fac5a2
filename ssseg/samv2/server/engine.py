"""What the endpoints do with the model, through the public predictors only.

Everything here is synchronous and runs on the :class:`ModelRunner` thread, never on the event loop. The model is
shared by all sessions; its calls go through one worker thread in submission order, so a propagation (one frame
per call) lets the other sessions' clicks in between two frames. One thread, because torch already spreads each
operation over the cores and two forwards at once would only compete for them.
"""

import asyncio
import contextlib
import functools
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ssseg.samv2.server.errors import APIError
from ssseg.samv2.server.schemas import Prompt
from ssseg.samv2.server.sessions import Entry, FramePrompt, ImageObject, ImageSession, VideoSession

# errors the predictors raise for a bad request: their message goes to the client as a 400 (a RuntimeError may come
# from torch itself, so it is not one of them)
PROMPT_ERRORS = (ValueError, TypeError, IndexError, KeyError)


class ModelRunner:
    """Runs model calls on one worker thread (in the chosen compute dtype), awaited from the event loop."""

    def __init__(self, device: str = "cpu", dtype: str = "float32") -> None:
        self.device = device
        self.dtype = dtype
        self.pool: Optional[ThreadPoolExecutor] = None  # started on the first call (again after a shutdown)

    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        return torch.autocast(device_type=device_type, dtype=getattr(torch, self.dtype))

    def _run(self, fn, args, kwargs):
        with self._autocast():
            return fn(*args, **kwargs)

    async def __call__(self, fn, *args, **kwargs):
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssseg-model")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(self._run, fn, args, kwargs))

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def bad_prompt(error: Exception) -> APIError:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return APIError(400, str(message) or type(error).__name__)


# ------------------------------------------------------------------------------------------------ results
def mask_entries(object_ids: Sequence[int], masks: torch.Tensor, scores=None) -> List[Entry]:
    """JSON entries of ``N x H x W`` boolean masks: COCO RLE (string counts), bbox ``x, y, w, h``, area, score."""
    from ssseg.modules.models.segmentors.samv2.masks import (
        batched_mask_to_box,
        box_xyxy_to_xywh,
        coco_encode_rle,
        mask_to_rle,
    )

    if len(object_ids) == 0:
        return []
    masks = masks.to(torch.bool).cpu()
    rles = mask_to_rle(masks)
    boxes = box_xyxy_to_xywh(batched_mask_to_box(masks)).tolist()
    areas = masks.flatten(1).sum(1).tolist()
    entries = []
    for i, k in enumerate(object_ids):
        entries.append(
            {
                "object_id": int(k),
                "mask": coco_encode_rle(rles[i]),
                "score": None if scores is None else float(scores[i]),
                "bbox": [float(v) for v in boxes[i]],
                "area": int(areas[i]),
            }
        )
    return entries


def index_png(index_map: np.ndarray) -> bytes:
    """An ``H x W`` uint8 object-id map as a DAVIS palette PNG."""
    from ssseg.samv2.overlay import index_mask_image

    buffer = io.BytesIO()
    index_mask_image(index_map).save(buffer, "PNG")
    return buffer.getvalue()


def _check_labels(labels: Sequence[int]) -> None:
    if any(label not in (0, 1) for label in labels):
        raise APIError(400, f"labels must be 1 (foreground) or 0 (background), got {list(labels)}")


def _array(values, dtype) -> Optional[np.ndarray]:
    return np.asarray(values, dtype=dtype) if values else None


# ------------------------------------------------------------------------------------------------ images
def open_image(session: ImageSession, model, image: np.ndarray) -> None:
    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor

    predictor = SAMV2ImagePredictor(model=model)
    predictor.setimage(image)
    session.image, session.predictor = image, predictor


def image_prompt(session: ImageSession, prompt: Prompt) -> Dict[str, Any]:
    """A click / box on an image. ``clear_old`` false appends to the object's earlier clicks and feeds the previous
    low-res logits back as mask input (the tutorials' refinement); true starts the object afresh."""
    _check_labels(prompt.labels)
    old = session.objects.get(prompt.object_id)
    points, labels = [list(p) for p in prompt.points], list(prompt.labels)
    box = list(prompt.box) if prompt.box is not None else None
    mask_input = None
    if old is not None and not prompt.clear_old:
        points, labels = old.points + points, old.labels + labels
        box = box if box is not None else old.box
        mask_input = None if old.logits is None else old.logits[None]
    if not points and box is None:
        raise APIError(400, "a prompt needs at least one point (with its label) or a box")
    try:
        masks, scores, logits = session.predictor.predict(
            point_coords=_array(points, np.float32),
            point_labels=_array(labels, np.int32),
            box=None if box is None else np.asarray(box, dtype=np.float32),
            mask_input=mask_input,
            multimask_output=prompt.multimask,
        )
    except PROMPT_ERRORS as error:
        raise bad_prompt(error) from None
    best = int(np.argmax(scores))
    ids = [prompt.object_id] * len(scores)
    candidates = mask_entries(ids, torch.from_numpy(masks > 0.5), scores)
    entry = dict(candidates[best])
    if prompt.multimask:
        entry["candidates"] = [{k: v for k, v in c.items() if k != "object_id"} for c in candidates]
    session.objects[prompt.object_id] = ImageObject(
        prompt.object_id, points, labels, box, logits=logits[best].copy(), entry=candidates[best]
    )
    objects = [entry if e["object_id"] == prompt.object_id else e for e in session.frame_entries(0)]
    return {"frame": 0, "objects": objects}


def image_clear(session: ImageSession, object_id: Optional[int]) -> Dict[str, Any]:
    """Remove the prompts (and so the masks) of one object, or of all, on the image."""
    ids = [object_id] if object_id is not None else list(session.objects)
    for k in ids:
        session.objects[k] = ImageObject(k)
    return {"frame": 0, "objects": session.frame_entries(0)}


def everything(session: ImageSession, model, options: Dict[str, Any]) -> Dict[str, Any]:
    """Automatic mask generation on the session's image: the records of ``ssseg-samv2 amg``, largest first."""
    from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator
    from ssseg.samv2.batch.amgjob import annotations

    options = dict(options)
    use_m2m = options.pop("use_m2m", False)
    try:
        generator = SAMV2AutomaticMaskGenerator(model=model, output_mode="uncompressed_rle", use_m2m=use_m2m, **options)
    except (ValueError, TypeError) as error:
        raise bad_prompt(error) from None
    records = generator.generate(session.image)
    records.sort(key=lambda r: -r["area"])
    height, width = session.image.shape[:2]
    return {"image": {"width": width, "height": height}, "annotations": annotations(records)}


# ------------------------------------------------------------------------------------------------ videos
def open_video(session: VideoSession, predictor, source: str) -> None:
    from ssseg.samv2.server.uploads import check_pixels

    try:
        state = predictor.initstate(source)
    except (ValueError, FileNotFoundError, TypeError, RuntimeError) as error:  # RuntimeError: a frame won't decode
        raise APIError(415, f"cannot read video '{session.name}': {error}") from None
    try:
        check_pixels(state.video_width, state.video_height, session.name)
    except APIError:
        state.close()
        raise
    session.state = state
    session.width, session.height, session.num_frames = state.video_width, state.video_height, state.num_frames


def record_frame(session: VideoSession, frame: int, obj_ids, logits: torch.Tensor) -> List[Entry]:
    """Keep a video frame's result: each object's mask (logits > 0) and the DAVIS index map (highest logit wins,
    as ``ssseg-samv2 video`` writes it)."""
    from ssseg.samv2.videocmd import index_map

    ids = [int(k) for k in obj_ids]
    entries = mask_entries(ids, logits[:, 0] > 0)
    session.results[frame] = {e["object_id"]: e for e in entries}
    session.index_pngs[frame] = index_png(index_map(ids, logits)) if ids else b""
    return entries


def video_prompt(session: VideoSession, predictor, prompt: Prompt) -> Dict[str, Any]:
    if prompt.multimask:
        raise APIError(400, "multimask is for image sessions; video prompts give one mask per object")
    _check_labels(prompt.labels)
    try:
        frame, obj_ids, logits = predictor.addnewpointsorbox(
            session.state,
            prompt.frame,
            prompt.object_id,
            points=_array(prompt.points, np.float32),
            labels=_array(prompt.labels, np.int32),
            clear_old_points=prompt.clear_old,
            box=None if prompt.box is None else np.asarray(prompt.box, dtype=np.float32),
        )
    except PROMPT_ERRORS as error:
        raise bad_prompt(error) from None
    frames = session.frame_prompts.setdefault(prompt.object_id, {})
    old = frames.get(prompt.frame)
    new = FramePrompt([list(p) for p in prompt.points], list(prompt.labels), None)
    new.box = list(prompt.box) if prompt.box is not None else None
    if old is not None and not prompt.clear_old:
        new = FramePrompt(old.points + new.points, old.labels + new.labels, old.box)
    frames[prompt.frame] = new
    return {"frame": frame, "objects": record_frame(session, frame, obj_ids, logits)}


def video_clear(session: VideoSession, predictor, frame: int, object_id: Optional[int]) -> Dict[str, Any]:
    ids = [object_id] if object_id is not None else session.object_ids()
    result = None
    for k in ids:
        try:
            result = predictor.clearallpromptsinframe(session.state, frame, k)
        except PROMPT_ERRORS as error:
            raise bad_prompt(error) from None
        session.frame_prompts.get(k, {}).pop(frame, None)
    if result is None:
        return {"frame": frame, "objects": session.frame_entries(frame)}
    _, obj_ids, logits = result
    return {"frame": frame, "objects": record_frame(session, frame, obj_ids, logits)}


def video_remove(session: VideoSession, predictor, object_id: int) -> None:
    """Remove an object. Its pixels in the kept DAVIS maps go to the remaining objects whose masks cover them
    (ascending id where several do: the logits that decided overlaps are no longer kept)."""
    from PIL import Image

    from ssseg.modules.models.segmentors.samv2.masks import decode_rle

    try:
        predictor.removeobject(session.state, object_id, strict=True, need_output=False)
    except PROMPT_ERRORS as error:
        raise bad_prompt(error) from None
    session.frame_prompts.pop(object_id, None)
    session.names.pop(object_id, None)
    for frame, entries in session.results.items():
        if entries.pop(object_id, None) is None:
            continue
        with Image.open(io.BytesIO(session.index_pngs[frame])) as png:
            ids = np.array(png)
        freed = ids == object_id
        ids[freed] = 0
        for k in sorted(entries):
            take = freed & decode_rle(entries[k]["mask"]) & (ids == 0)
            ids[take] = k
        session.index_pngs[frame] = index_png(ids)
