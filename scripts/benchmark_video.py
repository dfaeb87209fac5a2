"""Propagation speed of SAMV2VideoPredictor next to the official SAM2VideoPredictor, for 1 and 3 objects.

Both predictors get the same random weights (no checkpoint download), the same synthetic JPEG clip and the same
clicks on frame 0; the timed part is one full ``propagate_in_video`` (every frame tracked), after a warm-up
propagation. Runs alternate between the two implementations and the best of ``--repeats`` is kept, which evens out
load from other processes. Hole filling is off on both sides (the official predictor skips it on CPU anyway).

Usage::

    python scripts/benchmark_video.py                       # CPU (and GPU when available)
    python scripts/benchmark_video.py --image-size 1024 --frames 24 --devices cuda
"""

import argparse
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.conftest import OFFICIAL_YAML, make_test_image  # noqa: E402
from tests.conftest import build_official as build_official_model  # noqa: E402

CLICKS = [(100, 120), (250, 60), (60, 200)]  # one per object, on frame 0 of a 240 x 320 clip


def make_clip(folder: str, num_frames: int) -> None:
    """A 240 x 320 scene with a few shapes, panning right by 4 px per frame, as <index>.jpg files."""
    base = make_test_image(240, 320)
    for i in range(num_frames):
        Image.fromarray(np.roll(base, 4 * i, axis=1)).save(os.path.join(folder, f"{i:05d}.jpg"), quality=95)


def build_ours(variant: str, ckpt: str, image_size: int, device: str):
    from ssseg.configs.samv2 import getconfig
    from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor

    cfg, _ = getconfig(variant)
    cfg["image_size"] = image_size
    return SAMV2VideoPredictor(samv2_cfg=cfg, ckptpath=ckpt, device=device, fill_hole_area=0)


def build_official(variant: str, ckpt: str, image_size: int, device: str):
    predictor = build_official_model(
        variant, ckpt, video=True, device=device, hydra_overrides_extra=[f"++model.image_size={image_size}"]
    )
    predictor.fill_hole_area = 0
    return predictor


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clicked_session(predictor, clip: str, num_objects: int):
    """A session on ``clip`` with ``num_objects`` objects clicked on frame 0 (one point each, from ``CLICKS``)."""
    state = predictor.init_state(clip)
    for obj_id, (x, y) in enumerate(CLICKS[:num_objects], start=1):
        predictor.add_new_points_or_box(state, 0, obj_id, points=np.array([[x, y]], np.float32), labels=np.array([1]))
    return state


def propagation_seconds(predictor, clip: str, num_objects: int, device: str) -> Callable[[], float]:
    """A session with ``num_objects`` clicked objects; the returned callable times one full propagation."""
    state = clicked_session(predictor, clip, num_objects)
    for _ in predictor.propagate_in_video(state, max_frame_num_to_track=2):  # warm-up
        pass

    def timed() -> float:
        sync(device)
        start = time.perf_counter()
        for _ in predictor.propagate_in_video(state):
            pass
        sync(device)
        return time.perf_counter() - start

    return timed


def run(args: argparse.Namespace) -> None:
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint

    workdir = tempfile.mkdtemp(prefix="ssseg-bench-video-")
    clip = os.path.join(workdir, "clip")
    os.makedirs(clip)
    make_clip(clip, args.frames)
    ckpt = write_random_checkpoint(buildsamv2(args.variant, loadweights=False), os.path.join(workdir, "w.pt"))
    threads = torch.get_num_threads()
    print(f"{args.variant}, image_size {args.image_size}, {args.frames} frames of 240 x 320, {threads} CPU threads")
    rows: List[Dict] = []
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            continue
        impls = {
            "ours": build_ours(args.variant, ckpt, args.image_size, device),
            "official": build_official(args.variant, ckpt, args.image_size, device),
        }
        for num_objects in args.objects:
            timers = {name: propagation_seconds(p, clip, num_objects, device) for name, p in impls.items()}
            best = {name: float("inf") for name in impls}
            for _ in range(args.repeats):
                for name, timer in timers.items():  # alternate, so that both see the same background load
                    best[name] = min(best[name], timer())
            fps = {name: args.frames / seconds for name, seconds in best.items()}
            rows.append(dict(device=device, objects=num_objects, **fps))
            print(f"  {device} {num_objects} object(s): ours {fps['ours']:.3f} fps, official {fps['official']:.3f} fps")
    print()
    print("| device | objects | ours (frames/s) | official (frames/s) | ours / official |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = row["ours"] / row["official"]
        print(f"| {row['device']} | {row['objects']} | {row['ours']:.3f} | {row['official']:.3f} | {ratio:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny", choices=sorted(OFFICIAL_YAML))
    parser.add_argument("--image-size", type=int, default=None, help="default: 1024 on GPU, 512 on CPU only")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3], choices=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    args = parser.parse_args()
    if args.image_size is None:
        args.image_size = 1024 if torch.cuda.is_available() else 512
    run(args)  # the predictors run in inference mode themselves


if __name__ == "__main__":
    main()
