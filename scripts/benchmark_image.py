"""Benchmark: SAMV2ImagePredictor vs the official SAM2ImagePredictor (setimage / predict latency).

Both run in this process on the same deterministic random weights and the same image; the official package
(``sam2``, installed by the test extra) is optional. Prints a table; run e.g.

    python scripts/benchmark_image.py --variant sam2.1_hiera_tiny --repeats 3
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor, buildsamv2  # noqa: E402
from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint  # noqa: E402
from tests.conftest import OFFICIAL_YAML, make_test_image  # noqa: E402


def timed(fn, repeats):
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(predictor, image, repeats, official):
    set_image = predictor.set_image if official else predictor.setimage
    point = dict(point_coords=np.array([[500, 375]]), point_labels=np.array([1]))
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, 1200, 16), rng.uniform(0, 800, 16)
    boxes = np.stack([x0, y0, x0 + rng.uniform(50, 500, 16), y0 + rng.uniform(50, 350, 16)], 1)
    set_image(image)
    return {
        "setimage": timed(lambda: set_image(image), repeats),
        "predict 1 point": timed(lambda: predictor.predict(**point), repeats),
        "predict 16 boxes": timed(lambda: predictor.predict(box=boxes, multimask_output=False), repeats),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="sam2.1_hiera_tiny", choices=list(OFFICIAL_YAML))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    image = make_test_image(1200, 1800)
    with tempfile.TemporaryDirectory() as folder:
        ckpt = os.path.join(folder, "random.pt")
        write_random_checkpoint(buildsamv2(args.variant, loadweights=False), ckpt, seed=0)
        ours = SAMV2ImagePredictor(model=buildsamv2(args.variant, ckptpath=ckpt, device=args.device))
        results = {"ssseg": run(ours, image, args.repeats, official=False)}
        del ours
        try:
            from sam2.build_sam import build_sam2
            from sam2.sam2_image_predictor import SAM2ImagePredictor
        except ImportError:
            print("(official sam2 not installed: only ssseg is timed)")
        else:
            model = build_sam2(OFFICIAL_YAML[args.variant], None, device=args.device)
            model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"], strict=True)
            official = SAM2ImagePredictor(model.eval(), max_hole_area=0.0, max_sprinkle_area=0.0)
            results["official"] = run(official, image, args.repeats, official=True)

    print(f"\n{args.variant} on {args.device} ({torch.get_num_threads()} threads), 1200x1800 image, median seconds")
    header = f"{'':<18}{'ssseg':>10}" + (f"{'official':>10}{'ratio':>8}" if "official" in results else "")
    print(header)
    for name, ours_time in results["ssseg"].items():
        row = f"{name:<18}{ours_time:>10.3f}"
        if "official" in results:
            theirs = results["official"][name]
            row += f"{theirs:>10.3f}{ours_time / theirs:>8.2f}"
        print(row)


if __name__ == "__main__":
    main()
