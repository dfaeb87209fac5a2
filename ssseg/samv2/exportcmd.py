"""``ssseg-samv2 export``: the model as four ONNX graphs plus ``config.json`` (see docs/export.md)."""

import argparse
import os
import time

from ssseg.samv2.common import CLIError


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "export",
        help="export a model to ONNX (image encoder, prompt decoder, memory encoder, memory attention)",
        description="Export SAM 2 to ONNX: writes image_encoder.onnx, prompt_decoder.onnx, memory_encoder.onnx, "
        "memory_attention.onnx and config.json into --out; the predictors run them with onnxdir=DIR and the other "
        "subcommands with --onnx DIR.",
    )
    parser.add_argument("--model", default="sam2.1_hiera_large", help="official variant, e.g. sam2.1_hiera_tiny")
    parser.add_argument("--config", help="a config .py file defining SAMV2_CFG (overrides --model)")
    parser.add_argument("--ckpt", help="checkpoint file or URL (default: the variant's official weights)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--image-size", type=int, help="input side S (a multiple of 16; default: the config's)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; 18 or newer)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ssseg.configs.samv2 import VARIANTS, getconfig, loadconfigfile
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.utils.optional import import_optional

    import_optional("onnx", "onnx", "ssseg-samv2 export")
    from ssseg.samv2.export import export_model

    if args.opset < 18:
        raise CLIError(f"--opset {args.opset} is too old: the graphs need opset 18 or newer")
    if args.config:
        cfg, url = loadconfigfile(args.config)
        name = os.path.splitext(os.path.basename(args.config))[0]
    elif args.model in VARIANTS:
        cfg, url = getconfig(args.model)
        name = args.model
    else:
        raise CLIError(f"unknown model {args.model!r}; expected one of {', '.join(VARIANTS)}")
    if args.image_size is not None:
        stride = cfg.get("backbone_stride", 16)
        if args.image_size <= 0 or args.image_size % stride != 0:
            raise CLIError(f"--image-size must be a positive multiple of {stride}, got {args.image_size}")
        cfg["image_size"] = args.image_size
    start = time.perf_counter()
    model = buildsamv2(cfg, ckptpath=args.ckpt or url)
    print(f"built {name} at image size {model.image_size} in {time.perf_counter() - start:.1f} s")
    export_model(model, args.out, name=name, opset=args.opset, log=print)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
