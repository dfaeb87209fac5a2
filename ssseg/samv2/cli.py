"""``ssseg-samv2`` (also ``python -m ssseg.samv2``): SAM 2 / SAM 2.1 inference from the command line.

Subcommands: ``image`` (clicks / boxes on one image), ``amg`` (automatic masks for an image or a folder, resumable),
``video`` (tracking from a prompts file), ``track`` (live tracking of a camera, stream URL or video file),
``serve`` (the labelling web app and JSON API, docs/server.md) and ``export`` (ONNX graphs, which the others
run with ``--onnx DIR``). Errors are one readable line and exit code 2; ``--debug`` shows the traceback. The
reference is docs/cli.md.
"""

import argparse
import sys
from typing import Optional, Sequence

from ssseg.samv2 import amgcmd, exportcmd, imagecmd, servecmd, trackcmd, videocmd


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssseg-samv2",
        description="SAM 2 / SAM 2.1 inference: image prompts, automatic masks, video tracking",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{image,amg,video,track,serve,export}")
    for command in (imagecmd, amgcmd, videocmd, trackcmd, servecmd, exportcmd):
        command.add_parser(sub)
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
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"ssseg-samv2 {args.command}: error: {message}", file=sys.stderr)
        return 2
