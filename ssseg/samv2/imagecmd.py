"""``ssseg-samv2 image``: masks of objects in one image from clicks and boxes."""

import argparse
import os

import numpy as np

from ssseg.samv2.common import (
    CLIError,
    add_model_arguments,
    autocast,
    build_model,
    parse_box,
    parse_point,
    read_image,
    write_json_atomic,
    write_png_atomic,
)
from ssseg.samv2.overlay import render_overlay


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "image",
        help="segment objects in an image from points and/or boxes",
        description="Segment objects in an image from clicks and/or boxes. Writes <stem>_mask<i>.png, "
        "<stem>_overlay.png and <stem>.json (scores, boxes, RLE) into --out.",
    )
    parser.add_argument("image", help="image file")
    parser.add_argument("--point", action="append", type=parse_point, default=[], help="X,Y[:LABEL], repeatable")
    parser.add_argument("--box", action="append", type=parse_box, default=[], help="X0,Y0,X1,Y1, repeatable")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--multimask",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="three candidate masks (default: only for a single click)",
    )
    add_model_arguments(parser)
    parser.set_defaults(run=run_image)


def run_image(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
    from ssseg.modules.models.segmentors.samv2.masks import batched_mask_to_box, mask_to_rle

    if not args.point and not args.box:
        raise CLIError("give at least one --point X,Y[:LABEL] or --box X0,Y0,X1,Y1")
    if args.box and len(args.box) > 1 and args.point:
        raise CLIError("several --box prompts cannot be combined with --point (one box + points is fine)")
    image = read_image(args.image)
    predictor = SAMV2ImagePredictor(model=build_model(args))
    points = np.array([p[:2] for p in args.point], dtype=np.float32) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    boxes = np.array(args.box, dtype=np.float32) if args.box else None
    box = boxes[0] if boxes is not None and len(boxes) == 1 else boxes
    multimask = args.multimask if args.multimask is not None else (boxes is None and len(args.point) == 1)
    with autocast(args):
        predictor.setimage(image)
        masks, scores, _ = predictor.predict(points, labels, box=box, multimask_output=multimask)
    masks = masks.reshape(-1, *masks.shape[-2:]).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes is None or len(boxes) == 1:
        order = np.argsort(-scores)  # best first
        masks, scores = masks[order], scores[order]

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.image))[0]
    mask_tensor = torch.from_numpy(masks)
    rles = mask_to_rle(mask_tensor)
    boxes_xyxy = batched_mask_to_box(mask_tensor).tolist()  # [0, 0, 0, 0] for an empty mask
    records = []
    for i, (mask, score, rle, bbox) in enumerate(zip(masks, scores, rles, boxes_xyxy)):
        name = f"{stem}_mask{i}.png"
        write_png_atomic(os.path.join(args.out, name), Image.fromarray(mask.astype(np.uint8) * 255))
        records.append({"file": name, "score": float(score), "area": int(mask.sum()), "bbox_xyxy": bbox, "rle": rle})
    overlay = os.path.join(args.out, f"{stem}_overlay.png")
    shown = masks[:1] if boxes is None or len(boxes) == 1 else masks
    drawn = render_overlay(image, shown, points=points, labels=labels, boxes=boxes)
    write_png_atomic(overlay, Image.fromarray(drawn))
    result = {
        "image": os.path.abspath(args.image),
        "height": image.shape[0],
        "width": image.shape[1],
        "points": args.point,
        "boxes": args.box,
        "masks": records,
    }
    write_json_atomic(os.path.join(args.out, f"{stem}.json"), result)
    print(f"wrote {len(records)} mask(s), {stem}_overlay.png and {stem}.json to {args.out}")
    return 0
