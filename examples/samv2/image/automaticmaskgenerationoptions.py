"""Automatic mask generation options: a denser grid, lower thresholds, one crop layer and mask refinement.

Compared with the default generator this samples 64 x 64 points (``points_per_batch=128`` at a time), keeps masks
with a predicted IoU above 0.7 and a stability score (at a logit offset of 0.7) of at least 0.92, also runs on the 4
overlapping crops of ``crop_n_layers=1`` (with half as many points per side there), removes holes and specks of at
most 25 low-resolution pixels (``min_mask_region_area``) and refines every mask once with its own logits as a mask
prompt (``use_m2m``). It finds more, and smaller, masks at a higher cost. The count and record keys are printed and
the masks drawn into ``output.png``; ``--points-per-side`` overrides the 64.
"""

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator
from ssseg.modules.models.segmentors.samv2.visualization import showanns

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/samv2: common.py
from common import initenvironment, outpath, parser, positiveint, predictor_kwargs  # noqa: E402

matplotlib.use("Agg")


def main() -> None:
    cli = parser(__doc__, image="images/cars.jpg")
    cli.add_argument(
        "--points-per-side", type=positiveint, default=64, help="prompt grid of N x N points (default: %(default)s)"
    )
    args = cli.parse_args()
    initenvironment(args.device)
    # read image
    image = np.array(Image.open(args.image).convert("RGB"))
    # mask generator, e.g. SAMV2AutomaticMaskGenerator(use_default_samv2_l=True, device="cuda", ...) as in the tutorial
    mask_generator = SAMV2AutomaticMaskGenerator(
        **predictor_kwargs(args),
        apply_postprocessing=False,
        points_per_side=args.points_per_side,
        points_per_batch=128,
        pred_iou_thresh=0.7,
        stability_score_thresh=0.92,
        stability_score_offset=0.7,
        crop_n_layers=1,
        box_nms_thresh=0.7,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=25.0,
        use_m2m=True,
    )
    # generate
    masks = mask_generator.generate(image)
    # show results
    print(len(masks))
    if masks:
        print(masks[0].keys())
    plt.figure(figsize=(20, 20))
    plt.imshow(image)
    showanns(masks)
    plt.axis("off")
    plt.savefig(outpath(args, "output.png"))
    plt.close()


if __name__ == "__main__":
    main()
