"""Peak memory (RSS) while tracking through a long video: SAMV2VideoPredictor next to the official predictor.

The official predictor decodes every frame into an ``image_size`` float tensor at ``init_state`` and keeps every
memory and mask it produces; ours streams the frames and moves tracked outputs that memory attention can no longer
reach to a temporary file. Each implementation runs in its own process on the same synthetic JPEG clip, with the
same random weights, one object clicked on frame 0, and reports its peak RSS (VmHWM) after ``init_state`` and every
``--every`` tracked frames (ours also the bytes in its spill file).

A small config keeps CPU time reasonable (default: SAM 2.1 tiny at image_size 256, 600 frames). The per-frame
costs scale with ``image_size**2``: at 1024 the official predictor holds 12 MB per frame of decoded video plus, per
object and tracked frame, a 512 KB bfloat16 memory and 256 KB of mask logits.

Usage::

    python scripts/benchmark_video_memory.py --frames 600 --image-size 256
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmark_video import build_official, build_ours, make_clip  # noqa: E402


def rss_mb() -> dict:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _ = line.split()
                values[key[:-1]] = int(amount) / 1024
    return values


def tensor_mb(root) -> float:
    """MB of distinct tensor storages reachable from ``root`` (dicts, sequences and object attributes): what the
    session state holds, frames included, independent of allocator caching."""
    seen_objects, storages = set(), {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen_objects:
            continue
        seen_objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("ssseg", "sam2")):
            stack.extend(vars(obj).values())
    return sum(storages.values()) / 2**20


def measure(args: argparse.Namespace) -> None:
    """One implementation in this process; prints one JSON line per checkpoint."""
    torch.set_num_threads(args.threads)
    build = build_ours if args.impl == "ours" else build_official
    predictor = build(args.variant, args.ckpt, args.image_size, "cpu")
    start = time.perf_counter()
    state = predictor.init_state(args.clip)
    report = dict(frame="init", **rss_mb(), state_mb=tensor_mb(state), seconds=time.perf_counter() - start)
    print(json.dumps(report), flush=True)
    predictor.add_new_points_or_box(state, 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1]))
    for frame_idx, _, _ in predictor.propagate_in_video(state):
        done = frame_idx + 1
        if done % args.every == 0 or done == args.frames:
            report = dict(frame=done, **rss_mb(), state_mb=tensor_mb(state), seconds=time.perf_counter() - start)
            if args.impl == "ours":
                report["spill_mb"] = state.spilled_bytes() / 2**20
            print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--impls", nargs="+", default=["ours", "official"])
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        measure(args)
        return

    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint

    workdir = tempfile.mkdtemp(prefix="ssseg-bench-memory-")
    clip = os.path.join(workdir, "clip")
    os.makedirs(clip)
    make_clip(clip, args.frames)
    ckpt = write_random_checkpoint(buildsamv2(args.variant, loadweights=False), os.path.join(workdir, "w.pt"))
    results = {}
    for impl in args.impls:
        command = [sys.executable, os.path.abspath(__file__), "--impl", impl, "--clip", clip, "--ckpt", ckpt]
        command += ["--variant", args.variant, "--image-size", str(args.image_size), "--frames", str(args.frames)]
        command += ["--every", str(args.every), "--threads", str(args.threads)]
        rows = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout:
                if line.startswith("{"):
                    rows.append(json.loads(line))
                    print(impl, line.strip(), flush=True)
        if process.returncode != 0:
            raise SystemExit(f"{impl} run failed with exit code {process.returncode}")
        results[impl] = rows

    print(f"\n{args.variant}, image_size {args.image_size}, {args.frames} frames of 240 x 320, 1 object")
    header = "| tracked frames | " + " | ".join(f"{impl} peak RSS (MB)" for impl in results)
    header += " | " + " | ".join(f"{impl} state tensors (MB)" for impl in results)
    header += " | ours spill file (MB) |" if "ours" in results else " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for i, first in enumerate(next(iter(results.values()))):
        cells = [f"{rows[i]['VmHWM']:.0f}" for rows in results.values()]
        cells += [f"{rows[i]['state_mb']:.1f}" for rows in results.values()]
        spill = results.get("ours", [{}] * (i + 1))[i].get("spill_mb")
        extra = f" {spill:.1f} |" if spill is not None else " - |" if "ours" in results else ""
        print(f"| {first['frame']} | " + " | ".join(cells) + " |" + extra)
    for impl, rows in results.items():
        at_100 = next((r["VmHWM"] for r in rows if r["frame"] == args.every), None)
        if at_100:
            growth = rows[-1]["VmHWM"] / at_100 - 1
            print(f"{impl}: peak RSS growth from frame {args.every} to {args.frames}: {100 * growth:+.1f}%")


if __name__ == "__main__":
    main()
