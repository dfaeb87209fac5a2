"""One table for every main path: ssseg's SAMV2 next to Meta's SAM 2 (sam2 1.1.0) on the same weights and inputs.

Measured, for one variant (default SAM 2.1 tiny) with the same deterministic random weights on both sides:

* ``setimage`` latency and ``predict`` latency (1 point; 16 boxes) on a 1200 x 1800 image;
* automatic mask generation time (``points_per_side`` 32 by default);
* video propagation frames/second with 1 and 3 objects (a synthetic 240 x 320 clip, clicks on frame 0);
* the peak resident memory of each of those (every phase runs in its own process, so the peak is its own);
* the achieved GFLOP/s of the image encoder next to a measured dense matmul peak of this machine.

The official side is skipped when ``sam2`` is not installed. Ratios are official time / ours (above 1: ours is
faster). Phases of the two sides alternate, so background load affects both alike; ``--rounds N`` repeats the
alternation and keeps each side's best, which steadies the ratios on a machine whose speed drifts. Usage::

    python scripts/benchmark_samv2.py                          # CPU fp32, SAM 2.1 tiny
    python scripts/benchmark_samv2.py --device cuda --dtype bfloat16 --variant sam2.1_hiera_large
    python scripts/benchmark_samv2.py --phases image video --video-image-size 512
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

PHASES = ("image", "amg", "video")


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def autocast(args):
    if args.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=args.device.split(":")[0], dtype=getattr(torch, args.dtype))


def build_model(args, impl: str):
    """The network of ``impl`` with the benchmark weights (the official one through its own builder)."""
    if impl == "ours":
        from ssseg.modules.models.segmentors.samv2 import buildsamv2

        return buildsamv2(args.variant, ckptpath=args.ckpt, device=args.device)
    from tests.conftest import build_official

    return build_official(args.variant, args.ckpt, device=args.device)


# ------------------------------------------------------------------------------------------------- phases (child)
def phase_image(args, impl: str) -> Dict[str, float]:
    from tests.conftest import make_test_image

    model = build_model(args, impl)
    if impl == "ours":
        from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor

        predictor = SAMV2ImagePredictor(model=model)
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(model, max_hole_area=0.0, max_sprinkle_area=0.0)
    image = make_test_image(1200, 1800)
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, 1200, 16), rng.uniform(0, 800, 16)
    boxes = np.stack([x0, y0, x0 + rng.uniform(50, 500, 16), y0 + rng.uniform(50, 350, 16)], 1)
    point = dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1]))
    with torch.inference_mode(), autocast(args):
        result = {"setimage (s)": timed(lambda: predictor.set_image(image), args.repeats)}
        result["predict 1 point (s)"] = timed(lambda: predictor.predict(**point), args.repeats)
        result["predict 16 boxes (s)"] = timed(
            lambda: predictor.predict(box=boxes, multimask_output=False), args.repeats
        )
        if impl == "ours":
            result.update(encoder_flops(args, model, image))
    if args.dtype != "float32":
        # The approximate path's answers against fp32 on the same inputs: masks of the 1-point and 16-box prompts.
        masks = {}
        for name, context in (("approx", autocast(args)), ("fp32", contextlib.nullcontext())):
            with torch.inference_mode(), context:
                predictor.set_image(image)
                point_masks = predictor.predict(**point)[0]
                box_masks = predictor.predict(box=boxes, multimask_output=False)[0]
            masks[name] = np.concatenate([point_masks.reshape(-1, *point_masks.shape[-2:]),
                                          box_masks.reshape(-1, *box_masks.shape[-2:])])  # fmt: skip
        ious = mask_ious(masks["approx"], masks["fp32"])
        result[f"predict mask IoU {args.dtype} vs float32 (min)"] = float(ious.min())
        result[f"predict mask IoU {args.dtype} vs float32 (mean)"] = float(ious.mean())
    return result


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each pair of ``N x H x W`` boolean masks (two empty masks agree: IoU 1)."""
    a, b = a.astype(bool), b.astype(bool)
    inter = (a & b).sum(axis=(-1, -2))
    union = (a | b).sum(axis=(-1, -2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def encoder_flops(args, model, image) -> Dict[str, float]:
    """Achieved GFLOP/s of the image encoder (FLOPs counted by torch, time of one forward) and a dense matmul peak."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, model.image_size, model.image_size, device=args.device)
    counter = FlopCounterMode(display=False)
    with counter:
        model.image_encoder(x)
    seconds = timed(lambda: sync(args, model.image_encoder(x)), args.repeats)
    n = 4096
    dtype = torch.float32 if args.dtype == "float32" else getattr(torch, args.dtype)
    a, b = torch.randn(n, n, device=args.device, dtype=dtype), torch.randn(n, n, device=args.device, dtype=dtype)
    matmul = timed(lambda: sync(args, a @ b), max(3, args.repeats))
    return {
        "image encoder GFLOP": counter.get_total_flops() / 1e9,
        "image encoder GFLOP/s": counter.get_total_flops() / seconds / 1e9,
        "matmul peak GFLOP/s": 2 * n**3 / matmul / 1e9,
    }


def sync(args, value=None):
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return value


def phase_amg(args, impl: str) -> Dict[str, float]:
    from tests.conftest import make_test_image

    model = build_model(args, impl)
    # random weights predict low IoUs: lowered thresholds let masks through (the work done is the same)
    options = dict(points_per_side=args.points_per_side, pred_iou_thresh=0.3, stability_score_thresh=0.6)
    if impl == "ours":
        from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator

        generator = SAMV2AutomaticMaskGenerator(model=model, **options)
    else:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        generator = SAM2AutomaticMaskGenerator(model, **options)
    image = make_test_image(1200, 1800)
    with torch.inference_mode(), autocast(args):
        start = time.perf_counter()
        masks = generator.generate(image)
        seconds = time.perf_counter() - start
    return {"amg (s)": seconds, "amg masks": float(len(masks))}


def phase_video(args, impl: str) -> Dict[str, float]:
    from benchmark_video import build_official, build_ours, make_clip, propagation_seconds

    build = build_ours if impl == "ours" else build_official
    predictor = build(args.variant, args.ckpt, args.video_image_size, args.device)  # hole filling off on both
    clip = tempfile.mkdtemp(prefix="ssseg-bench-clip-")
    make_clip(clip, args.frames)
    result = {}
    with autocast(args):
        for objects in (1, 3):
            timer = propagation_seconds(predictor, clip, objects, args.device)
            best = min(timer() for _ in range(args.repeats))
            result[f"video {objects} object{'s' if objects > 1 else ''} (frames/s)"] = args.frames / best
    if args.dtype != "float32":
        # Tracking with random weights is chaotic after a few frames (even fp32 differs from itself across thread
        # counts there), so the approximate path is compared on the clicked frame and the first tracked one.
        masks = {}
        for name, context in (("approx", autocast(args)), ("fp32", contextlib.nullcontext())):
            with context:
                masks[name] = first_frame_masks(predictor, clip)
        ious = mask_ious(masks["approx"], masks["fp32"])
        result[f"video mask IoU {args.dtype} vs float32, frames 0-1 (min)"] = float(ious.min())
        result[f"video mask IoU {args.dtype} vs float32, frames 0-1 (mean)"] = float(ious.mean())
    return result


def first_frame_masks(predictor, clip: str) -> np.ndarray:
    """``(frames x objects) x H x W`` masks of frames 0 and 1, three objects clicked on frame 0."""
    from benchmark_video import clicked_session

    state = clicked_session(predictor, clip, 3)
    logits = [out[2] for out in predictor.propagate_in_video(state, max_frame_num_to_track=1)]
    return torch.cat(logits).float().gt(0).flatten(0, 1).cpu().numpy()


def child(args) -> None:
    torch.set_num_threads(args.threads)
    result = {"image": phase_image, "amg": phase_amg, "video": phase_video}[args.phase](args, args.impl)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result[f"{args.phase} peak RSS (MiB)"] = peak
    if args.device.startswith("cuda"):
        result[f"{args.phase} peak GPU memory (MiB)"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------------- driver
def run_child(args, impl: str, phase: str) -> Dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--impl", impl, "--phase", phase, "--ckpt", args.ckpt]
    for name in ("variant", "device", "dtype", "repeats", "threads", "points_per_side", "frames", "video_image_size"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"{impl} {phase} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def keep_best(best: Dict[str, float], new: Dict[str, float]) -> None:
    """Merge one round into ``best``: the lowest time / memory, the highest frames per second."""
    for name, value in new.items():
        if name not in best or name == "amg masks":
            best[name] = value
        elif "frames/s" in name or name.endswith("GFLOP/s"):
            best[name] = max(best[name], value)
        else:
            best[name] = min(best[name], value)


def print_table(args, results: Dict[str, Dict[str, float]]) -> None:
    ours, theirs = results["ours"], results.get("official", {})
    print(f"\n{args.variant}, {args.device} {args.dtype}, {args.threads} CPU threads; 1200 x 1800 image, "
          f"amg points_per_side {args.points_per_side}; video {args.frames} frames at image_size "
          f"{args.video_image_size}")  # fmt: skip
    print("| measure | ssseg | official | official / ssseg |")
    print("|---|---|---|---|")
    for name, value in ours.items():
        if name.startswith(("image encoder", "matmul")) or name == "amg masks":
            continue
        other = theirs.get(name)
        higher_is_better = "frames/s" in name
        ratio = "" if other is None else f"{(value / other if higher_is_better else other / value):.2f}x"
        if "IoU" in name:
            ratio = ""
        if "RSS" in name or "GPU memory" in name:
            ratio = (
                "" if other is None else f"{other / value:.2f}x less" if value < other else f"{value / other:.2f}x more"
            )
        print(f"| {name} | {value:.3f} | {'' if other is None else f'{other:.3f}'} | {ratio} |")
    if "image encoder GFLOP/s" in ours:
        share = ours["image encoder GFLOP/s"] / ours["matmul peak GFLOP/s"]
        print(f"\nimage encoder: {ours['image encoder GFLOP']:.1f} GFLOP per image, "
              f"{ours['image encoder GFLOP/s']:.1f} GFLOP/s = {100 * share:.0f}% of the measured "
              f"{args.dtype} matmul peak ({ours['matmul peak GFLOP/s']:.1f} GFLOP/s, 4096^3)")  # fmt: skip
    if "amg masks" in ours:
        print(f"amg masks: ssseg {ours['amg masks']:.0f}, official {theirs.get('amg masks', float('nan')):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the two sides this many times per phase and keep each "
        "side's best (on a machine whose speed drifts, 3 gives steadier ratios)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--frames", type=int, default=12, help="video frames per propagation")
    parser.add_argument("--video-image-size", type=int, default=None, help="default: 1024 on GPU, 512 on CPU")
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.video_image_size is None:
        args.video_image_size = 1024 if args.device.startswith("cuda") else 512
    if args.impl:
        child(args)
        return
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint

    impls: List[str] = ["ours"]
    try:
        import sam2  # noqa: F401

        impls.append("official")
    except ImportError:
        print("(sam2 is not installed: only ssseg is measured)")
    with tempfile.TemporaryDirectory() as folder:
        args.ckpt = write_random_checkpoint(buildsamv2(args.variant, loadweights=False), f"{folder}/w.pt")
        results: Dict[str, Dict[str, float]] = {impl: {} for impl in impls}
        for phase in args.phases:
            for round_ in range(args.rounds):
                for impl in impls:
                    print(f"{phase}: {impl} (round {round_ + 1} of {args.rounds}) ...", flush=True)
                    keep_best(results[impl], run_child(args, impl, phase))
    print_table(args, results)


if __name__ == "__main__":
    main()
