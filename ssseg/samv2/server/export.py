"""Dataset exports of a session: COCO JSON and DAVIS palette PNGs.

* COCO: one image per video frame (``<frame:05d>.jpg``; an image session has one, named after the upload), one
  category per object id (its name, else ``object <id>``), and one annotation per object and frame with a non-empty
  mask: COCO RLE segmentation (string counts), ``bbox`` ``x, y, w, h``, ``area``, ``iscrowd`` 0.
* DAVIS: a zip of ``<frame:05d>.png`` palette PNGs (pixel value = object id, DAVIS palette), one per frame; frames
  without results are all background. Videos use the maps kept at tracking time (where objects overlap, the
  highest logit won, as in ``ssseg-samv2 video``); images paint objects in ascending id, so a higher id wins.
"""

import io
import os
import time
import zipfile
from typing import Any, Dict

import numpy as np

from ssseg.samv2.server.sessions import ImageSession, Session, VideoSession

FORMATS = ("coco", "davis")


def export_name(session: Session) -> str:
    stem = os.path.splitext(os.path.basename(session.name))[0] or "session"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)


def coco(session: Session) -> Dict[str, Any]:
    """The session's masks as a COCO instance-segmentation dict."""
    is_video = isinstance(session, VideoSession)
    images = [
        {
            "id": t + 1,
            "file_name": f"{t:05d}.jpg" if is_video else os.path.basename(session.name),
            "width": session.width,
            "height": session.height,
            "frame_index": t,
        }
        for t in range(session.num_frames)
    ]
    ids = sorted(set(session.object_ids()) | set(session.names))
    categories = [{"id": k, "name": session.names.get(k) or f"object {k}", "supercategory": "object"} for k in ids]
    annotations = []
    for t in range(session.num_frames):
        for entry in session.frame_entries(t):
            if entry["area"] == 0:
                continue
            annotation = {
                "id": len(annotations) + 1,
                "image_id": t + 1,
                "category_id": entry["object_id"],
                "segmentation": entry["mask"],
                "area": entry["area"],
                "bbox": entry["bbox"],
                "iscrowd": 0,
            }
            if entry.get("score") is not None:
                annotation["score"] = entry["score"]
            annotations.append(annotation)
    info = {"description": f"ssseg-samv2 serve: {session.name}", "date_created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _image_index_map(session: ImageSession) -> np.ndarray:
    from ssseg.modules.models.segmentors.samv2.masks import decode_rle

    ids = np.zeros((session.height, session.width), dtype=np.uint8)
    for entry in session.frame_entries(0):  # ascending id: a higher id wins where masks overlap
        ids[decode_rle(entry["mask"])] = entry["object_id"]
    return ids


def davis(session: Session) -> bytes:
    """The zip of DAVIS palette PNGs, one per frame."""
    from ssseg.samv2.server.engine import index_png

    blank = None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are already compressed
        for t in range(session.num_frames):
            if isinstance(session, ImageSession):
                png = index_png(_image_index_map(session))
            else:
                png = session.index_pngs.get(t) or b""
            if not png:
                if blank is None:
                    blank = index_png(np.zeros((session.height, session.width), dtype=np.uint8))
                png = blank
            archive.writestr(f"{t:05d}.png", png)
    return buffer.getvalue()
