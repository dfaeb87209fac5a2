"""Command-line options shared by the SAM 2 tutorial examples.

Every example takes the same model options: ``--model`` (one of the 8 official SAM 2 / SAM 2.1 variants, default
``sam2_hiera_large`` as in the tutorial) or ``--config`` (a config ``.py`` file defining ``SAMV2_CFG``), ``--ckpt``
(a checkpoint file or URL; default: the official download of the variant, or the config file's ``CKPT_URL``),
``--device`` (default ``cpu``) and ``--outdir`` (where the figures go, default the current folder).
:func:`predictor_kwargs` turns them into the keyword arguments of ``SAMV2ImagePredictor``,
``SAMV2AutomaticMaskGenerator`` and ``SAMV2VideoPredictor``.
"""

import argparse
import os
from typing import Any, Dict, List, Optional, Sequence

import torch

from ssseg.configs.samv2 import loadconfigfile
from ssseg.modules.models.segmentors.samv2.framereaders import jpeg_frame_paths

# --model name -> the predictors' use_default_* flag that selects it
MODEL_FLAGS = {
    "sam2_hiera_tiny": "use_default_samv2_t",
    "sam2_hiera_small": "use_default_samv2_s",
    "sam2_hiera_base_plus": "use_default_samv2_bplus",
    "sam2_hiera_large": "use_default_samv2_l",
    "sam2.1_hiera_tiny": "use_default_samv21_t",
    "sam2.1_hiera_small": "use_default_samv21_s",
    "sam2.1_hiera_base_plus": "use_default_samv21_bplus",
    "sam2.1_hiera_large": "use_default_samv21_l",
}
DEFAULT_MODEL = "sam2_hiera_large"  # the tutorial's SAMV2...(use_default_samv2_l=True)


def parser(
    description: str,
    image: Optional[str] = None,
    images: Optional[Sequence[str]] = None,
    video: Optional[str] = None,
) -> argparse.ArgumentParser:
    """An argument parser with the model options and the input option(s) given a default here.

    Args:
        description: what the example does (``--help`` shows it).
        image: default of ``--image`` (one image file); no ``--image`` option when None.
        images: defaults of ``--images`` (exactly that many image files); no ``--images`` option when None.
        video: default of ``--video`` (a folder of ``<index>.jpg`` frames); no ``--video`` option when None.
    """
    result = argparse.ArgumentParser(description=description)
    if image is not None:
        result.add_argument("--image", default=image, help="input image (default: %(default)s)")
    if images is not None:
        result.add_argument(
            "--images",
            nargs=len(images),
            default=list(images),
            metavar="IMAGE",
            help="input images (default: %(default)s)",
        )
    if video is not None:
        result.add_argument(
            "--video", default=video, help="folder of JPEG frames named <index>.jpg (default: %(default)s)"
        )
    model = result.add_mutually_exclusive_group()
    model.add_argument(
        "--model",
        choices=list(MODEL_FLAGS),
        default=DEFAULT_MODEL,
        metavar="NAME",
        help=f"official model variant, one of {', '.join(MODEL_FLAGS)} (default: %(default)s)",
    )
    model.add_argument("--config", metavar="PATH", help="config .py file defining SAMV2_CFG, instead of --model")
    result.add_argument(
        "--ckpt", help="checkpoint file or URL (default: the official download, or the config file's CKPT_URL)"
    )
    result.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")
    result.add_argument("--outdir", default=".", help="folder for the saved figures (default: %(default)s)")
    return result


def positiveint(text: str) -> int:
    """argparse type of options such as ``--vis-stride``: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def predictor_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """The model-choice keyword arguments of a predictor / mask generator for the parsed ``args``."""
    if args.config:
        cfg, url = loadconfigfile(args.config)
        ckptpath = args.ckpt or url
        if ckptpath is None:
            raise SystemExit(f"error: {args.config} defines no CKPT_URL; pass the checkpoint with --ckpt")
        return {"samv2_cfg": cfg, "ckptpath": ckptpath, "device": args.device}
    return {MODEL_FLAGS[args.model]: True, "ckptpath": args.ckpt, "device": args.device}


def initenvironment(device: str) -> None:
    """As in the tutorial: bfloat16 autocast, and TF32 matmuls on Ampere or newer, but only for a CUDA device."""
    device = torch.device(device)
    if device.type != "cuda":
        return
    torch.autocast(device_type="cuda", dtype=torch.bfloat16).__enter__()
    if torch.cuda.get_device_properties(device).major >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def outpath(args: argparse.Namespace, filename: str) -> str:
    """``<--outdir>/<filename>``, creating the folder if needed."""
    os.makedirs(args.outdir, exist_ok=True)
    return os.path.join(args.outdir, filename)


def framenames(video_dir: str) -> List[str]:
    """The JPEG frames of ``video_dir`` (file names) sorted by their numeric index, as in the tutorial."""
    if not os.path.isdir(video_dir):
        raise SystemExit(f"error: --video {video_dir} is not a folder of JPEG frames named <index>.jpg")
    try:
        return [os.path.basename(path) for path in jpeg_frame_paths(video_dir)]
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
