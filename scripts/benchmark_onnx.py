"""Benchmark the predictors on ONNX Runtime (``onnxdir=``, CPU execution provider) against PyTorch (fp32, CPU).

One model (SAM 2.1 tiny by default, deterministic random weights, ``--image-size``) is exported once to a temporary
folder (the export time is reported), then both backends run the same calls:

* per part: image encoder (``setimage``), prompt decoder (``predict`` with one click), memory attention + decoder +
  memory encoder (one tracked video frame, split by part);
* end to end: ``setimage``, ``predict``, automatic mask generation (``--points-per-side``), a tracked video frame.

Each timing is the best of ``--repeats`` runs after one warm-up; the number of calls is fixed, so the script is
bounded (about 2-4 minutes at 512 on 2 cores, mostly the export). PyTorch uses ``--threads`` threads, ONNX
Runtime its default (one per core).

Usage::

    python scripts/benchmark_onnx.py                           # tiny at 512, 2 threads
    python scripts/benchmark_onnx.py --image-size 1024 --repeats 2
"""

import argparse
import os
import sys
import tempfile
import time
from typing import Callable, Dict

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

from ssseg.configs.samv2 import getconfig  # noqa: E402
from ssseg.modules.models.segmentors.samv2 import (  # noqa: E402
    SAMV2AutomaticMaskGenerator,
    SAMV2ImagePredictor,
    SAMV2VideoPredictor,
    buildsamv2,
)
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict  # noqa: E402
from ssseg.samv2.export import export_model  # noqa: E402
from tests.conftest import make_test_image  # noqa: E402


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (ONNX Runtime allocates its arenas on the first run)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class PartTimer:
    """Wraps the four network methods of a model to add up the seconds spent in each."""

    PARTS = ("forward_image", "embed_image", "decode_prompts", "attend_memory", "encode_memory")

    def __init__(self, model) -> None:
        self.model, self.seconds = model, {p: 0.0 for p in self.PARTS}
        for part in self.PARTS:
            original = getattr(model, part)

            def timed(*args, _original=original, _part=part, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds[_part] += time.perf_counter() - start

            setattr(model, part, timed)

    def reset(self) -> None:
        self.seconds = {p: 0.0 for p in self.PARTS}


def measure(name: str, model_kwargs: Dict, args: argparse.Namespace) -> Dict[str, float]:
    image = make_test_image(1200, 1800)
    clip = [np.roll(make_test_image(480, 640, seed=3), 8 * i, axis=1) for i in range(3)]
    results = {}
    image_predictor = SAMV2ImagePredictor(**model_kwargs)
    timer = PartTimer(image_predictor.model)
    results["setimage"] = best_of(lambda: image_predictor.setimage(image), args.repeats)
    click = dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True)
    results["predict (1 click)"] = best_of(lambda: image_predictor.predict(**click), args.repeats)
    timer.reset()
    image_predictor.predict(**click)
    results["  decoder part of predict"] = timer.seconds["decode_prompts"]
    generator = SAMV2AutomaticMaskGenerator(
        model=image_predictor.model,
        points_per_side=args.points_per_side,
        pred_iou_thresh=0.1,
        stability_score_thresh=0.3,
    )
    start = time.perf_counter()
    masks = generator.generate(image)
    results[f"AMG ({args.points_per_side}x{args.points_per_side} points)"] = time.perf_counter() - start
    results["AMG masks (count)"] = len(masks)

    video = SAMV2VideoPredictor(**model_kwargs)
    state = video.initstate(clip)
    video.addnewpoints(state, 0, 1, points=np.array([[200, 240]], np.float32), labels=np.array([1], np.int32))
    frames = []
    vtimer = PartTimer(video.model)
    last = time.perf_counter()
    for _ in video.propagateinvideo(state):
        now = time.perf_counter()
        frames.append((now - last, dict(vtimer.seconds)))
        vtimer.reset()
        last = now
    # frame 0 is the prompted frame (memory encoding only); the last one is a fully tracked frame
    seconds, parts = frames[-1]
    results["tracked video frame"] = seconds
    for part in ("forward_image", "attend_memory", "decode_prompts", "encode_memory"):
        results[f"  {part} part of the frame"] = parts[part]
    print(f"{name}: done", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg, _ = getconfig(args.model)
    cfg["image_size"] = args.image_size
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        parts = export_model(model, folder, name=args.model)
        export_seconds = time.perf_counter() - start
        ort_results = measure("onnxruntime", dict(onnxdir=folder), args)
        torch_results = measure("pytorch", dict(model=model), args)
    print(
        f"\n{args.model} at {args.image_size}, {args.threads} threads; export {export_seconds:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in parts.items())
        + ")\n"
    )
    print("| call | PyTorch (s) | ONNX Runtime CPU (s) | ORT / PyTorch |")
    print("|---|---|---|---|")
    for key in torch_results:
        t, o = torch_results[key], ort_results[key]
        if key.endswith("(count)"):
            print(f"| {key} | {t} | {o} | |")
        else:
            print(f"| {key} | {t:.3f} | {o:.3f} | {o / t:.2f} |")


if __name__ == "__main__":
    main()
