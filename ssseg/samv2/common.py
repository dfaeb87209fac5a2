"""Pieces shared by the ``ssseg-samv2`` subcommands: argument parsing, model building, atomic output files."""

import argparse
import contextlib
import json
import os
from typing import Any, Callable, Tuple

import numpy as np

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
    group.add_argument("--onnx", metavar="DIR", help="run the folder of 'ssseg-samv2 export' on ONNX Runtime (CPU)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def build_model(args: argparse.Namespace, video: bool = False):
    """The model chosen by ``--model`` / ``--config`` / ``--ckpt`` / ``--device``; with ``video``, the options of the
    official video builder (click masks binarised for the memory encoder)."""
    from ssseg.configs.samv2 import VARIANTS, loadconfigfile
    from ssseg.modules.models.segmentors.samv2 import buildsamv2

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda was asked for but no CUDA GPU is available")
    from ssseg.modules.models.segmentors.samv2.checkpoint import CheckpointDownloadError

    extra = {"binarize_mask_from_pts_for_mem_enc": True} if video else None
    if getattr(args, "onnx", None):
        from ssseg.modules.models.segmentors.samv2.build import selectmodel

        if args.device != "cpu" or args.dtype != "float32":
            raise CLIError("--onnx runs float32 on ONNX Runtime's CPU provider: leave --device and --dtype unset")
        if not os.path.isdir(args.onnx):
            raise CLIError(f"--onnx folder not found: {args.onnx}")
        return selectmodel(onnxdir=args.onnx, extra_options=extra)
    if args.config:
        cfg, url = loadconfigfile(args.config)
        if not (args.ckpt or url):
            raise CLIError(f"--config {args.config} names no checkpoint URL: pass --ckpt PATH (a .pt file or URL)")
        name_or_cfg, ckpt = cfg, args.ckpt or url
    elif args.model not in VARIANTS:
        raise CLIError(f"unknown model {args.model!r}; expected one of {', '.join(VARIANTS)}")
    else:
        name_or_cfg, ckpt = args.model, args.ckpt
    try:
        return buildsamv2(name_or_cfg, ckptpath=ckpt, device=args.device, extra_options=extra)
    except CheckpointDownloadError as error:  # the Python message says ckptpath=; here it is a flag
        raise CLIError(error.explain("pass --ckpt {file}")) from error


def autocast(args: argparse.Namespace):
    """A context for the chosen compute dtype (float32 runs without autocast)."""
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


def write_atomic(path: str, write: Callable[[str], Any]) -> None:
    """Write through a temporary file and rename, so an interrupted run never leaves a half file.

    The temporary name keeps the extension (``out.tmp123.mp4``): some writers pick the format from it.
    """
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path: str, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)

    write_atomic(path, write)


def write_png_atomic(path: str, image) -> None:
    """A PIL image as PNG, written atomically."""
    write_atomic(path, lambda tmp: image.save(tmp, "PNG"))
