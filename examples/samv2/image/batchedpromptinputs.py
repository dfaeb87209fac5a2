"""Batched prompt inputs: four boxes (e.g. from an object detector) on one image, predicted in one call.

``predict`` takes a ``B x 4`` array of boxes and returns ``B x 1 x H x W`` masks (one per box with
``multimask_output=False``). All masks, each in a random colour, and the four boxes are drawn on the truck image and
saved as ``output.png``.
"""

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2.visualization import showbox, showmask

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/samv2: common.py
from common import initenvironment, outpath, parser, predictor_kwargs  # noqa: E402

matplotlib.use("Agg")


def main() -> None:
    args = parser(__doc__, image="images/truck.jpg").parse_args()
    initenvironment(args.device)
    # read image
    image = np.array(Image.open(args.image).convert("RGB"))
    # predictor, e.g. SAMV2ImagePredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2ImagePredictor(**predictor_kwargs(args))
    # set image
    predictor.setimage(image)
    # set prompt: B x 4 boxes
    input_boxes = np.array([[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800], [1240, 675, 1400, 750]])
    # inference: masks is B x 1 x H x W
    masks, scores, _ = predictor.predict(point_coords=None, point_labels=None, box=input_boxes, multimask_output=False)
    # show results
    plt.figure(figsize=(10, 10))
    plt.imshow(image)
    for mask in masks:
        showmask(mask.squeeze(0), plt.gca(), random_color=True)
    for box in input_boxes:
        showbox(box, plt.gca())
    plt.axis("off")
    plt.savefig(outpath(args, "output.png"))
    plt.close()


if __name__ == "__main__":
    main()
