"""``ssseg-samv2``: SAM 2 / SAM 2.1 inference from the command line.

Errors are one readable line and a non-zero exit; ``--debug`` shows the traceback.
"""

import argparse
import json
import os
import sys
from typing import Optional, Sequence, Tuple

import numpy as np

from ssseg.samv2.overlay import render_overlay

DTYPES = ("float32", "bfloat16", "float16")


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def parse_point(text: str) -> Tuple[float, float, int]:
    """``X,Y`` or ``X,Y:LABEL`` (label 1 foreground, 0 background)."""
    coords, _, label = text.partition(":")
    parts = coords.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label_value = int(label) if label else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"malformed point {text!r}: expected X,Y or X,Y:LABEL (e.g. 500,375:1)"
        ) from None
    if label_value not in (0, 1):
        raise argparse.ArgumentTypeError(f"malformed point {text!r}: LABEL must be 1 (foreground) or 0 (background)")
    return x, y, label_value


def parse_box(text: str) -> Tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1`` in pixels."""
    try:
        values = [float(v) for v in text.split(",")]
        if len(values) != 4:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"malformed box {text!r}: expected X0,Y0,X1,Y1 (e.g. 425,600,700,875)"
        ) from None
    return tuple(values)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="sam2.1_hiera_large", help="official variant, e.g. sam2.1_hiera_tiny")
    group.add_argument("--config", help="a config .py file defining SAMV2_CFG (overrides --model)")
    group.add_argument("--ckpt", help="checkpoint file or URL (default: the variant's official weights)")
    group.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    group.add_argument("--dtype", default="float32", choices=DTYPES, help="compute dtype (autocast for bf16/fp16)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def build_model(args: argparse.Namespace):
    from ssseg.configs.samv2 import VARIANTS, loadconfigfile
    from ssseg.modules.models.segmentors.samv2 import buildsamv2

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda was asked for but no CUDA GPU is available")
    if args.config:
        cfg, url = loadconfigfile(args.config)
        return buildsamv2(cfg, ckptpath=args.ckpt or url, device=args.device)
    if args.model not in VARIANTS:
        raise CLIError(f"unknown model {args.model!r}; expected one of {', '.join(VARIANTS)}")
    return buildsamv2(args.model, ckptpath=args.ckpt, device=args.device)


def autocast(args: argparse.Namespace):
    """A context for the chosen compute dtype (float32 runs without autocast)."""
    import contextlib

    import torch

    if args.dtype == "float32":
        return contextlib.nullcontext()
    device_type = "cuda" if args.device.startswith("cuda") else "cpu"
    return torch.autocast(device_type=device_type, dtype=getattr(torch, args.dtype))


def read_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise CLIError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise CLIError(f"cannot read image {path}: {error}") from None


def write_atomic(path: str, write) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves a half file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_image(args: argparse.Namespace) -> int:
    from PIL import Image

    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
    from ssseg.modules.models.segmentors.samv2.masks import mask_to_rle

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
    import torch

    rles = mask_to_rle(torch.from_numpy(masks))
    records = []
    for i, (mask, score, rle) in enumerate(zip(masks, scores, rles)):
        name = f"{stem}_mask{i}.png"
        write_atomic(
            os.path.join(args.out, name), lambda p, m=mask: Image.fromarray(m.astype(np.uint8) * 255).save(p, "PNG")
        )
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else [0, 0, 0, 0]
        records.append({"file": name, "score": float(score), "area": int(mask.sum()), "bbox_xyxy": bbox, "rle": rle})
    overlay = os.path.join(args.out, f"{stem}_overlay.png")
    shown = masks[:1] if boxes is None or len(boxes) == 1 else masks
    drawn = render_overlay(image, shown, points=points, labels=labels, boxes=boxes)
    write_atomic(overlay, lambda p: Image.fromarray(drawn).save(p, "PNG"))
    result = {
        "image": os.path.abspath(args.image),
        "height": image.shape[0],
        "width": image.shape[1],
        "points": args.point,
        "boxes": args.box,
        "masks": records,
    }
    write_atomic(os.path.join(args.out, f"{stem}.json"), lambda p: open(p, "w").write(json.dumps(result, indent=1)))
    print(f"wrote {len(records)} mask(s), {stem}_overlay.png and {stem}.json to {args.out}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssseg-samv2", description="SAM 2 / SAM 2.1 inference")
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image", help="segment objects in an image from points and/or boxes")
    image.add_argument("image", help="image file")
    image.add_argument("--point", action="append", type=parse_point, default=[], help="X,Y[:LABEL], repeatable")
    image.add_argument("--box", action="append", type=parse_box, default=[], help="X0,Y0,X1,Y1, repeatable")
    image.add_argument("--out", required=True, help="output folder")
    image.add_argument(
        "--multimask",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="three candidate masks (default: only for a single click)",
    )
    add_model_arguments(image)
    image.set_defaults(run=run_image)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("ssseg-samv2: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one readable line unless --debug
        if getattr(args, "debug", False):
            raise
        print(f"ssseg-samv2 {args.command}: error: {error}", file=sys.stderr)
        return 2
