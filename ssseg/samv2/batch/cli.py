"""The batch options of ``amg`` and ``video`` (``--engine`` and where Ray puts the work), and the job summary."""

import argparse
import sys

from ssseg.samv2.batch.engine import ENGINES, BatchSummary
from ssseg.samv2.common import CLIError

SHOWN_ERRORS = 5  # failures printed on stderr; all of them are in errors.jsonl


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("batch engine")
    group.add_argument("--engine", choices=ENGINES, default="local", help="run in this process (local) or on Ray")
    group.add_argument("--overwrite", action="store_true", help="recompute inputs whose outputs already exist")
    group.add_argument(
        "--ray-address", help="Ray cluster: auto (this machine's), ray://HOST:PORT; default: start a local one"
    )
    group.add_argument("--workers", type=int, help="Ray actors, each with its own model (default: GPUs, else 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (0)")
    group.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray actor (default: 1 with GPUs, else shared)")
    group.add_argument("--batch-size", type=int, default=1, help="inputs per Ray call (1)")
    group.add_argument("--threads", type=int, help="torch threads per worker (default: torch's / the worker's CPUs)")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """The model and engine options of ``args`` as keyword arguments of ``run_amg`` / ``run_video``."""
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    return dict(
        engine=args.engine,
        overwrite=args.overwrite,
        model=args.model,
        config=args.config,
        ckpt=args.ckpt,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        ray_address=args.ray_address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
    )


def report(summary: BatchSummary, unit: str) -> int:
    """Print the counts and rate (stdout) and the first failures (stderr); the exit code: 1 if any input failed."""
    rate = f"{summary.rate():.2f} {unit}s/s" if summary.processed else "-"
    print(
        f"processed {summary.processed}, skipped {summary.skipped}, failed {summary.failed} "
        f"in {summary.seconds:.1f} s ({rate})"
    )
    if summary.failed:
        for error in summary.errors[:SHOWN_ERRORS]:
            print(f"failed: {error['reason']}", file=sys.stderr)
        more = f" ({summary.failed - SHOWN_ERRORS} more)" if summary.failed > SHOWN_ERRORS else ""
        print(f"{summary.failed} {unit}(s) failed{more}; reasons in {summary.errors_file}", file=sys.stderr)
    return summary.exit_code


def run_video_manifest(args: argparse.Namespace) -> int:
    """``ssseg-samv2 video MANIFEST.jsonl --out DST``: every video of the manifest, resumable."""
    from ssseg.samv2.batch.api import run_video

    if args.prompts is not None:
        raise CLIError("a manifest carries each video's prompts; --prompts is for one video")
    try:
        summary = run_video(args.input, args.out, overlay=not args.no_overlay, fps=args.fps, **engine_kwargs(args))
    except ValueError as error:  # includes SourceError and PromptsError
        raise CLIError(str(error)) from None
    if not summary.processed and not summary.failed:
        print(f"all {summary.total} video(s) already done in {args.out} (use --overwrite to recompute)")
        return 0
    print(f"tracked {summary.processed} video(s), {summary.units} frames, into {args.out}")
    return report(summary, "video")
