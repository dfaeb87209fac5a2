"""``ssseg-samv2 amg``: automatic mask generation for one image or a folder of images, resumable.

Per image ``<stem>.json`` (COCO-style: an ``image`` record and ``annotations`` with compressed RLE) and
``<stem>_overlay.png``. Both are written atomically and the JSON last, so an image counts as done exactly when its JSON
and overlay exist; a folder run that was interrupted skips those images when started again.
"""

import argparse
import os
import re
from typing import List, Tuple

from ssseg.samv2.common import (
    CLIError,
    add_model_arguments,
    autocast,
    build_model,
    read_image,
    write_json_atomic,
    write_png_atomic,
)
from ssseg.samv2.overlay import render_overlay

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
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


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "amg",
        help="segment everything in an image or a folder of images (automatic mask generation)",
        description="Automatic mask generation. For each image, writes <stem>.json (COCO-style annotations with "
        "compressed RLE) and <stem>_overlay.png into --out. A folder run resumes: images whose outputs exist are "
        "skipped.",
    )
    parser.add_argument("input", help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="output folder")
    group = parser.add_argument_group("generator options")
    for name, (kind, default, text) in GENERATOR_OPTIONS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{text} ({default})")
    group.add_argument("--use-m2m", action="store_true", help="refine each mask with a second decoder pass")
    group.add_argument("--overwrite", action="store_true", help="recompute images whose outputs already exist")
    add_model_arguments(parser)
    parser.set_defaults(run=run_amg)


def as_flags(message: str) -> str:
    """A generator error in command-line terms: ``points_per_side`` becomes ``--points-per-side``."""
    names = "|".join(sorted(GENERATOR_OPTIONS, key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


def list_images(path: str) -> List[str]:
    """The input image, or the images of a folder in name order."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise CLIError(f"input not found: {path}")
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise CLIError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return [os.path.join(path, n) for n in names]


def output_stems(images: List[str]) -> List[str]:
    """File stems of the outputs; images that share a stem (``a.jpg``, ``a.png``) keep their extension."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    return [stem if stems.count(stem) == 1 else os.path.basename(p).replace(".", "_") for stem, p in zip(stems, images)]


def output_paths(out: str, stem: str) -> Tuple[str, str]:
    return os.path.join(out, f"{stem}.json"), os.path.join(out, f"{stem}_overlay.png")


def is_done(out: str, stem: str) -> bool:
    return all(os.path.isfile(p) for p in output_paths(out, stem))


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


def run_amg(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator
    from ssseg.modules.models.segmentors.samv2.masks import rle_to_mask

    images = list_images(args.input)
    stems = output_stems(images)
    todo = [(p, s) for p, s in zip(images, stems) if args.overwrite or not is_done(args.out, s)]
    skipped = len(images) - len(todo)
    if not todo:
        print(f"all {len(images)} image(s) already done in {args.out} (use --overwrite to recompute)")
        return 0
    options = {name: getattr(args, name) for name in GENERATOR_OPTIONS}
    try:
        generator = SAMV2AutomaticMaskGenerator(
            model=build_model(args), output_mode="uncompressed_rle", use_m2m=args.use_m2m, **options
        )
    except ValueError as error:  # an option out of range: name it as the flag the user typed
        raise CLIError(as_flags(str(error))) from None
    os.makedirs(args.out, exist_ok=True)
    progress = tqdm(todo, desc="amg", unit="image", disable=len(images) == 1)
    for path, stem in progress:
        progress.set_postfix_str(os.path.basename(path))
        image = read_image(path)
        with autocast(args):
            records = generator.generate(image)
        records.sort(key=lambda r: -r["area"])  # large first, so small masks stay visible in the overlay
        json_path, overlay_path = output_paths(args.out, stem)
        masks = [rle_to_mask(r["segmentation"]) for r in records]
        drawn = render_overlay(image, masks) if masks else image
        write_png_atomic(overlay_path, Image.fromarray(drawn))
        result = {
            "image": {"file_name": os.path.basename(path), "height": image.shape[0], "width": image.shape[1]},
            "annotations": annotations(records),
        }
        write_json_atomic(json_path, result)  # last: its presence marks the image as done
    done = len(todo)
    note = f" (skipped {skipped} already done)" if skipped else ""
    print(f"wrote masks of {done} image(s) to {args.out}{note}")
    return 0
