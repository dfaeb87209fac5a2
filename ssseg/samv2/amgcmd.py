"""``ssseg-samv2 amg``: automatic mask generation for an image, a folder (recursive), a glob, a list or a URI.

Per image ``<key>.json`` (SA-1B / COCO style: an ``image`` record and ``annotations`` with compressed RLE) and, with
overlays (the default of the local engine), ``<key>_overlay.png``; the key is the image's path relative to the
input folder without extension (see ``ssseg.samv2.batch.sources``). Every file is written atomically and the JSON
last, so an image counts as done exactly when its files exist; a run that was interrupted skips those images when
started again. ``--engine ray`` runs the same per-image code on a Ray cluster (``ssseg.samv2.batch``).
"""

import argparse
import re

from ssseg.samv2.batch.amgjob import GENERATOR_OPTIONS
from ssseg.samv2.batch.sources import IMAGE_SUFFIXES, SourceError
from ssseg.samv2.common import CLIError, add_model_arguments

__all__ = ["GENERATOR_OPTIONS", "IMAGE_SUFFIXES", "add_parser", "run_amg"]


def add_parser(sub) -> None:
    from ssseg.samv2.batch.cli import add_engine_arguments

    parser = sub.add_parser(
        "amg",
        help="segment everything in an image or a folder of images (automatic mask generation)",
        description="Automatic mask generation. For each image, writes <key>.json (COCO-style annotations with "
        "compressed RLE) and <key>_overlay.png into --out, <key> being the image's path under the input folder "
        "without extension. A run resumes: images whose outputs exist are skipped. Failed images are listed in "
        "errors.jsonl and the exit code is 1.",
    )
    parser.add_argument(
        "input", help="an image, a folder (recursive), a glob, a .txt list of paths/URIs, or a URI (s3://...)"
    )
    parser.add_argument("--out", required=True, help="output folder or URI")
    group = parser.add_argument_group("generator options")
    for name, (kind, default, text) in GENERATOR_OPTIONS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{text} ({default})")
    group.add_argument("--use-m2m", action="store_true", help="refine each mask with a second decoder pass")
    group.add_argument(
        "--overlays",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write <key>_overlay.png (default: on with --engine local, off with --engine ray)",
    )
    add_model_arguments(parser)
    add_engine_arguments(parser)
    parser.set_defaults(run=run_amg)


def as_flags(message: str) -> str:
    """A generator error in command-line terms: ``points_per_side`` becomes ``--points-per-side``."""
    names = "|".join(sorted(GENERATOR_OPTIONS, key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


def run_amg(args: argparse.Namespace) -> int:
    from ssseg.samv2.batch import api
    from ssseg.samv2.batch.cli import engine_kwargs, report

    options = {name: getattr(args, name) for name in GENERATOR_OPTIONS}
    try:
        summary = api.run_amg(
            args.input, args.out, overlays=args.overlays, use_m2m=args.use_m2m, **engine_kwargs(args), **options
        )
    except (SourceError, ValueError, CLIError) as error:  # an option out of range: named as the flag the user typed
        raise CLIError(as_flags(str(error))) from None
    if not summary.processed and not summary.failed:
        print(f"all {summary.total} image(s) already done in {args.out} (use --overwrite to recompute)")
        return 0
    note = f" (skipped {summary.skipped} already done)" if summary.skipped else ""
    print(f"wrote masks of {summary.processed} image(s) to {args.out}{note}")
    return report(summary, "image")
