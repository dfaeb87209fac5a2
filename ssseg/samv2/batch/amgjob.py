"""The ``amg`` job: one image in, ``<key>.json`` (SA-1B style) and optionally ``<key>_overlay.png`` out.

:func:`label_image` is the per-image function both engines run; :class:`AmgWorker` builds the generator once per
process around it. The JSON is an ``image`` record and ``annotations`` (COCO compressed RLE, bbox, area,
predicted_iou, stability_score, point_coords, crop_box), largest mask first, written last so that its presence marks
the image done.
"""

import io
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ssseg.samv2.batch.job import BatchWorker, ModelSpec, apply_threads, done_row, failed_row
from ssseg.samv2.batch.sources import read_bytes
from ssseg.samv2.batch.store import OutputStore

# option name -> (type, default of SAMV2AutomaticMaskGenerator, help)
GENERATOR_OPTIONS = {
    "points_per_side": (int, 32, "grid points per image side"),
    "points_per_batch": (int, 64, "points decoded at once (memory vs speed)"),
    "pred_iou_thresh": (float, 0.8, "keep masks with a predicted IoU above this"),
    "stability_score_thresh": (float, 0.95, "keep masks with a stability score above this"),
    "stability_score_offset": (float, 1.0, "logit offset of the stability score"),
    "box_nms_thresh": (float, 0.7, "IoU threshold of the box NMS between masks"),
    "crop_n_layers": (int, 0, "also run on crops: number of crop layers"),
    "crop_n_points_downscale_factor": (int, 1, "fewer points per side in each crop layer by this factor"),
    "min_mask_region_area": (float, 0.0, "remove holes and islands smaller than this (pixels)"),
}


@dataclass(frozen=True)
class AmgSpec:
    """Everything an ``amg`` worker needs: output root, model, generator options (``GENERATOR_OPTIONS`` names),
    ``use_m2m`` and whether to draw overlays."""

    out: str
    model: ModelSpec = field(default_factory=ModelSpec)
    options: Tuple[Tuple[str, Any], ...] = ()
    use_m2m: bool = False
    overlays: bool = True

    def outputs(self, key: str) -> List[str]:
        """The files of one image, the done marker (the JSON) last."""
        return ([f"{key}_overlay.png"] if self.overlays else []) + [f"{key}.json"]


def annotations(records: List[dict]) -> List[dict]:
    """Generator records (``coco_rle`` computed here without pycocotools) as COCO-style annotations."""
    from ssseg.modules.models.segmentors.samv2.masks import coco_encode_rle

    result = []
    for i, record in enumerate(records):
        rle = coco_encode_rle(record["segmentation"])
        result.append(
            {
                "id": i + 1,
                "segmentation": rle,
                "area": int(record["area"]),
                "bbox": [float(v) for v in record["bbox"]],  # x, y, w, h
                "predicted_iou": float(record["predicted_iou"]),
                "stability_score": float(record["stability_score"]),
                "point_coords": [[float(v) for v in p] for p in record["point_coords"]],
                "crop_box": [float(v) for v in record["crop_box"]],
            }
        )
    return result


def decode_image(data: bytes, source: str) -> np.ndarray:
    """``H x W x 3`` uint8 RGB of an encoded image (alpha dropped, gray expanded); a clear error otherwise."""
    from PIL import Image, UnidentifiedImageError

    from ssseg.samv2.common import CLIError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CLIError(f"cannot read image {source}: {error}") from None


def fetch_image(source: str) -> Tuple[bytes, str]:
    """``(bytes, "")`` of an input, or ``(b"", reason)`` when it cannot be read (the job records it and goes on)."""
    try:
        return read_bytes(source), ""
    except (OSError, ValueError) as error:
        return b"", f"cannot read image {source}: {error}"


def fetch_batch(batch: Dict[str, np.ndarray]) -> Dict[str, List[Any]]:
    """The Ray read stage (CPU tasks, before the model actors): the bytes of each input of a batch."""
    fetched = [fetch_image(str(s)) for s in batch["source"]]
    return {
        "source": list(batch["source"]),
        "key": list(batch["key"]),
        "data": [d for d, _ in fetched],
        "error": [e for _, e in fetched],
    }


def label_image(
    generator, image: np.ndarray, file_name: str, overlays: bool, autocast
) -> Tuple[bytes, Optional[bytes]]:
    """Masks of one image: ``(JSON bytes, overlay PNG bytes or None)``, exactly what the ``amg`` command writes."""
    import json

    from PIL import Image

    from ssseg.modules.models.segmentors.samv2.masks import rle_to_mask
    from ssseg.samv2.overlay import render_overlay

    with autocast:
        records = generator.generate(image)
    records.sort(key=lambda r: -r["area"])  # large first, so small masks stay visible in the overlay
    overlay = None
    if overlays:
        masks = [rle_to_mask(r["segmentation"]) for r in records]
        drawn = render_overlay(image, masks) if masks else image
        buffer = io.BytesIO()
        Image.fromarray(drawn).save(buffer, "PNG")
        overlay = buffer.getvalue()
    result = {
        "image": {"file_name": file_name, "height": image.shape[0], "width": image.shape[1]},
        "annotations": annotations(records),
    }
    return json.dumps(result, indent=1).encode("utf-8"), overlay


def make_generator(spec: AmgSpec, model=None):
    """The generator of ``spec`` (the model is built unless given); an option out of range is a ``CLIError``."""
    from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator
    from ssseg.samv2.common import CLIError, build_model

    if model is None:
        model = build_model(spec.model.namespace())
    try:
        return SAMV2AutomaticMaskGenerator(
            model=model, output_mode="uncompressed_rle", use_m2m=spec.use_m2m, **dict(spec.options)
        )
    except ValueError as error:
        raise CLIError(str(error)) from None


class AmgWorker(BatchWorker):
    """One process's ``amg`` worker: the model and generator are built once, here."""

    def __init__(self, spec: AmgSpec) -> None:
        apply_threads(spec.model)
        self.spec = spec
        self.generator = make_generator(spec)
        self.store = OutputStore(spec.out)

    def process(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """One fetched row (``source``, ``key``, ``data``, ``error``) -> the image's files and its result row."""
        from ssseg.samv2.common import autocast

        source, key = str(row["source"]), str(row["key"])
        if row.get("error"):
            return failed_row(source, key, str(row["error"]))
        image = decode_image(row["data"], source)
        file_name = posixpath.basename(source.replace(os.sep, "/"))
        json_bytes, overlay = label_image(
            self.generator, image, file_name, self.spec.overlays, autocast(self.spec.model.namespace())
        )
        if overlay is not None:
            self.store.write_bytes(f"{key}_overlay.png", overlay)
        self.store.write_bytes(f"{key}.json", json_bytes)  # last: its presence marks the image as done
        return done_row(source, key)
