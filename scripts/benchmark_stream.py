"""Live tracking with SAMV2CameraPredictor: per-frame latency, FPS next to offline tracking, and flat memory.

Two parts, both bounded (frame counts are arguments) and on frames made in code, random weights:

1. Latency: ``track`` latency p50 / p99 and FPS with 1 and 3 objects over ``--frames`` frames, and the FPS of the
   offline ``SAMV2VideoPredictor.propagateinvideo`` on the same frames with the same prompts (after a warm-up).
2. Memory: one object tracked for ``--long-frames`` frames; RSS (VmRSS) at frames 100, 1,000 and 10,000 (those that
   are reached), and the p99 latency of the first and the last 1,000 frames.

Targets (issue 13): RSS growth from frame 1,000 to 10,000 under 2%; p99 of the last 1,000 frames within 10% of the
first 1,000; stream FPS equal to offline FPS within noise.

Usage::

    python scripts/benchmark_stream.py --image-size 128 --frames 300 --long-image-size 64 --long-frames 10000
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssseg.configs.samv2 import getconfig  # noqa: E402
from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor, SAMV2VideoPredictor, buildsamv2  # noqa: E402
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict  # noqa: E402

HEIGHT, WIDTH = 240, 320
PROMPTS = [
    {"points": [[80, 120]], "labels": [1]},
    {"box": [180, 20, 300, 140]},
    {"points": [[160, 200], [40, 40]], "labels": [1, 0]},
]


def build(variant: str, image_size: int):
    cfg, _ = getconfig(variant)
    cfg["image_size"] = image_size
    model = buildsamv2(cfg, loadweights=False, extra_options={"binarize_mask_from_pts_for_mem_enc": True})
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    return model.eval()


def make_frames(count: int, distinct: int = 64):
    """``count`` frames cycling through ``distinct`` shifted copies of one image (no memory grows with count)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([xs * 0.6, ys * 0.8, (xs + ys) * 0.3], -1) + rng.normal(0, 5, (HEIGHT, WIDTH, 3))
    base[(ys - 120) ** 2 + (xs - 90) ** 2 < 50**2] = (200, 40, 40)
    base[40:130, 190:290] = (30, 180, 60)
    base = np.clip(base, 0, 255).astype(np.uint8)
    pool = [np.ascontiguousarray(np.roll(base, 3 * i, axis=1)) for i in range(distinct)]
    return [pool[i % distinct] for i in range(count)]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stream(model, frames, num_objects: int, checkpoints=(), progress: int = 0):
    """Track ``frames`` live; returns per-frame latencies (s) and ``{frame: RSS MB}`` at ``checkpoints``; with
    ``progress``, prints RSS and the p99 latency of the last ``progress`` frames every ``progress`` frames."""
    predictor = SAMV2CameraPredictor(model=model)
    predictor.loadfirstframe(frames[0])
    for obj_id in range(1, num_objects + 1):
        predictor.addnewprompt(0, obj_id, **PROMPTS[obj_id - 1])
    latencies, rss = [], {}
    for t in range(1, len(frames)):
        tic = time.perf_counter()
        predictor.track(frames[t])
        latencies.append(time.perf_counter() - tic)
        if t in checkpoints:
            rss[t] = rss_mb()
        if progress and t % progress == 0:
            window = latencies[-progress:]
            print(
                f"  frame {t}: RSS {rss_mb():.1f} MB, p50 / p99 of the last {progress} frames "
                f"{ms(window, 50):.1f} / {ms(window, 99):.1f} ms",
                flush=True,
            )
    predictor.close()
    return latencies, rss


def offline_fps(model, frames, num_objects: int) -> float:
    predictor = SAMV2VideoPredictor(model=model)
    state = predictor.initstate(frames)
    for obj_id in range(1, num_objects + 1):
        predictor.addnewpointsorbox(state, 0, obj_id, **PROMPTS[obj_id - 1])
    tic = time.perf_counter()
    count = sum(1 for t, _, _ in predictor.propagateinvideo(state, start_frame_idx=1))
    elapsed = time.perf_counter() - tic
    state.close()
    return count / elapsed


def ms(values, q) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=300, help="frames of the latency part")
    parser.add_argument("--long-image-size", type=int, default=64)
    parser.add_argument("--long-frames", type=int, default=10000, help="frames of the memory part")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.variant}, frames {WIDTH}x{HEIGHT}")

    long_model = build(args.variant, args.long_image_size)
    with torch.inference_mode():
        stream(long_model, make_frames(3), 1)  # fail early if the memory part's image size does not run
    model = build(args.variant, args.image_size)
    frames = make_frames(args.frames + 1)
    with torch.inference_mode():
        stream(model, frames[:20], 1)  # warm-up
    print(f"\n### Latency, image_size {args.image_size}, {args.frames} tracked frames\n")
    print(
        "| objects | track p50 (ms) | track p99 (ms) | stream FPS | offline propagateinvideo FPS | stream / offline |"
    )
    print("|---|---|---|---|---|---|")
    for num_objects in (1, 3):
        latencies, _ = stream(model, frames, num_objects)
        fps = len(latencies) / sum(latencies)
        off = offline_fps(model, frames, num_objects)
        row = f"| {num_objects} | {ms(latencies, 50):.1f} | {ms(latencies, 99):.1f} | {fps:.2f} | {off:.2f}"
        print(f"{row} | {fps / off:.3f} |", flush=True)

    frames = make_frames(args.long_frames + 1)
    checkpoints = {t for t in (100, 1000, 10000) if t <= args.long_frames}
    print(f"\nmemory part: image_size {args.long_image_size}, 1 object, {args.long_frames} frames", flush=True)
    tic = time.perf_counter()
    latencies, rss = stream(long_model, frames, 1, checkpoints, progress=500)
    elapsed = time.perf_counter() - tic
    print(f"\n### Memory, image_size {args.long_image_size}, 1 object, {args.long_frames} frames ({elapsed:.0f} s)\n")
    print("| frame | RSS (MB) | growth since frame 1,000 |")
    print("|---|---|---|")
    base = rss.get(1000)
    for t in sorted(rss):
        growth = "" if base is None or t < 1000 else f"{(rss[t] / base - 1) * 100:+.2f}%"
        print(f"| {t} | {rss[t]:.1f} | {growth} |")
    if len(latencies) >= 2000:
        first, last = ms(latencies[:1000], 99), ms(latencies[-1000:], 99)
        print("\n| p99 first 1,000 frames (ms) | p99 last 1,000 frames (ms) | change |")
        print("|---|---|---|")
        print(f"| {first:.1f} | {last:.1f} | {(last / first - 1) * 100:+.1f}% |")
        p50a, p50b = ms(latencies[:1000], 50), ms(latencies[-1000:], 50)
        print(f"\np50 first / last 1,000 frames: {p50a:.1f} / {p50b:.1f} ms")


if __name__ == "__main__":
    main()
