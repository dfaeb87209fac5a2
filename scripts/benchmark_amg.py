"""Benchmark SAMV2AutomaticMaskGenerator against the official SAM2AutomaticMaskGenerator (sam2 1.1.0).

Both generators get the same deterministic random weights (written once to a temporary checkpoint), the same
synthetic image (``--height x --width``, a cars.jpg-sized 1200 x 1800 by default) and the same options. Each side
runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own. The script prints, per
device, the total ``generate`` time, masks per second (output masks, and point prompts decoded per second), peak
RSS (and its growth during ``generate``), and whether the two outputs are the same masks (matched one to one with
IoU >= 0.999, predicted IoUs within 1e-4, stability scores within 1e-3).

Random weights predict low IoUs (about 0.05 .. 0.35), so the default thresholds are lowered to let masks through;
``--pred-iou-thresh 0.8 --stability-score-thresh 0.95`` gives the official defaults (and no masks).

Usage::

    python scripts/benchmark_amg.py                       # CPU, and CUDA too when available
    python scripts/benchmark_amg.py --points-per-side 16 --devices cpu --threads 2
"""

import argparse
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.conftest import OFFICIAL_YAML, build_official, make_test_image  # noqa: E402


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generator_options(args: argparse.Namespace) -> dict:
    return dict(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
        mask_threshold=args.mask_threshold,
        crop_n_layers=args.crop_n_layers,
        use_m2m=args.use_m2m,
        output_mode="uncompressed_rle",
    )


def run_child(args: argparse.Namespace) -> None:
    """One generator on one device; writes timings and the records (RLE) to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    image = make_test_image(args.height, args.width)
    if args.child == "official":
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        model = build_official(args.variant, args.ckpt, device=args.device)
        generator = SAM2AutomaticMaskGenerator(model, **generator_options(args))
    else:
        from ssseg.modules.models.segmentors.samv2 import buildsamv2
        from ssseg.modules.models.segmentors.samv2.maskgenerator import SAMV2AutomaticMaskGenerator

        model = buildsamv2(args.variant, ckptpath=args.ckpt, device=args.device)
        generator = SAMV2AutomaticMaskGenerator(model=model, **generator_options(args))
    timings = []
    for _ in range(args.warmup + args.repeat):
        rss_before = current_rss_mib()
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        records = generator.generate(image)
        if args.device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    result = {
        "seconds": min(timings[args.warmup :]),
        "masks": len(records),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
        "records": records,
    }
    with open(args.out, "wb") as handle:
        pickle.dump(result, handle)


def compare_records(ours: list, theirs: list) -> str:
    """How close the two outputs are: count, worst one-to-one mask IoU, largest score differences, order."""
    from ssseg.modules.models.segmentors.samv2.maskgenerator import decode_segmentation

    if len(ours) != len(theirs):
        return f"DIFFERENT: {len(ours)} vs {len(theirs)} masks"
    if not theirs:
        return "same (both empty)"
    mine = np.stack([decode_segmentation(r["segmentation"]).ravel() for r in ours]).astype(np.float32)
    ref = np.stack([decode_segmentation(r["segmentation"]).ravel() for r in theirs]).astype(np.float32)
    inter = ref @ mine.T
    iou = inter / np.maximum(ref.sum(1)[:, None] + mine.sum(1)[None, :] - inter, 1)
    best = iou.argmax(1)
    worst_iou = iou[np.arange(len(best)), best].min()
    d_iou = max(abs(ours[j]["predicted_iou"] - theirs[i]["predicted_iou"]) for i, j in enumerate(best))
    d_stab = max(abs(ours[j]["stability_score"] - theirs[i]["stability_score"]) for i, j in enumerate(best))
    same = len(set(best.tolist())) == len(best) and worst_iou >= 0.999 and d_iou <= 1e-4 and d_stab <= 1e-3
    order = "same order" if best.tolist() == list(range(len(best))) else "other order"
    verdict = "same masks" if same else "DIFFERENT"
    scores = f"|d pred_iou| {d_iou:.1e}, |d stability| {d_stab:.1e}"
    return f"{verdict}: {len(ours)} masks, worst IoU {worst_iou:.5f}, {scores}, {order}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_tiny", choices=sorted(OFFICIAL_YAML))
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--width", type=int, default=1800)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.15)
    parser.add_argument("--stability-score-thresh", type=float, default=0.6)
    parser.add_argument("--box-nms-thresh", type=float, default=0.7, help="1.0 turns box NMS off")
    parser.add_argument("--mask-threshold", type=float, default=0.0)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--use-m2m", action="store_true")
    parser.add_argument("--devices", default="auto", help="comma list of cpu / cuda; auto: cpu, plus cuda if present")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads on the CPU")
    parser.add_argument("--warmup", type=int, default=0, help="untimed runs first (default: 1 on CUDA)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest is reported")
    parser.add_argument("--sides", default="official,ours")
    parser.add_argument("--child", choices=["ours", "official"], help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    import torch

    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint

    devices = (
        args.devices.split(",") if args.devices != "auto" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    with tempfile.TemporaryDirectory() as folder:
        ckpt = os.path.join(folder, "random.pt")
        write_random_checkpoint(buildsamv2(args.variant, loadweights=False), ckpt, seed=0)
        print(
            f"{args.variant}, random weights, {args.height} x {args.width} image, points_per_side "
            f"{args.points_per_side}, points_per_batch {args.points_per_batch}, "
            f"pred_iou_thresh {args.pred_iou_thresh}, box_nms_thresh {args.box_nms_thresh}, "
            f"mask_threshold {args.mask_threshold}, "
            f"stability_score_thresh {args.stability_score_thresh}, crop_n_layers {args.crop_n_layers}, "
            f"use_m2m {args.use_m2m}, torch threads {args.threads}"
        )
        header = f"{'device':6} {'generator':9} {'time s':>8} {'masks':>6} {'masks/s':>8} {'points/s':>9}"
        header += f" {'peak RSS MiB':>13} {'+during':>8}"
        print(header)
        points = args.points_per_side**2
        for device in devices:
            results = {}
            for side in args.sides.split(","):
                out = os.path.join(folder, f"{side}_{device}.pkl")
                warmup = args.warmup if args.warmup or device == "cpu" else 1
                command = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--child",
                    side,
                    "--device",
                    device,
                    "--ckpt",
                    ckpt,
                ]
                command += ["--out", out, "--warmup", str(warmup)] + sys.argv[1:]
                subprocess.run(command, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                with open(out, "rb") as handle:
                    result = results[side] = pickle.load(handle)
                grown = result["peak_rss_mib"] - result["rss_before_mib"]
                print(
                    f"{device:6} {side:9} {result['seconds']:8.2f} {result['masks']:6d} "
                    f"{result['masks'] / result['seconds']:8.2f} {points / result['seconds']:9.1f} "
                    f"{result['peak_rss_mib']:13.0f} {grown:8.0f}",
                    flush=True,
                )
            if len(results) == 2:
                speedup = results["official"]["seconds"] / results["ours"]["seconds"]
                verdict = compare_records(results["ours"]["records"], results["official"]["records"])
                print(f"{device:6} speed-up {speedup:.2f}x, output: {verdict}", flush=True)
        print("peak RSS: the whole process, model included; +during: its growth while generate ran")


if __name__ == "__main__":
    main()
