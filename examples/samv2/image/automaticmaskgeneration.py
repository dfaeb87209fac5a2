"""Automatic mask generation: masks of everything in the cars image from a 32 x 32 grid of single-click prompts.

``SAMV2AutomaticMaskGenerator.generate`` prompts the model with every grid point, keeps the masks whose predicted
IoU and stability score pass the thresholds, and removes duplicates by non-maximum suppression. It returns one dict
per mask (``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ``point_coords``, ``stability_score``,
``crop_box``); the number of masks and the keys are printed, and all masks are drawn in random colours over the image
into ``output.png``. ``--points-per-side`` changes the grid (fewer points: faster, fewer masks).
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
        "--points-per-side", type=positiveint, default=32, help="prompt grid of N x N points (default: %(default)s)"
    )
    args = cli.parse_args()
    initenvironment(args.device)
    # read image
    image = np.array(Image.open(args.image).convert("RGB"))
    # mask generator, e.g. SAMV2AutomaticMaskGenerator(use_default_samv2_l=True, device="cuda", ...) as in the tutorial
    mask_generator = SAMV2AutomaticMaskGenerator(
        **predictor_kwargs(args), apply_postprocessing=False, points_per_side=args.points_per_side
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
