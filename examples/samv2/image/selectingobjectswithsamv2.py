"""Selecting objects with SAMV2: one foreground click at (x, y) = (500, 375) on the truck image.

A single click is ambiguous, so the predictor is asked for three candidate masks (``multimask_output=True``). They are
sorted by their predicted quality (IoU) and each is saved as its own figure, ``output_mask_1.png`` (best) to
``output_mask_3.png``, with the click drawn as a green star and the score in the title.
"""

import os
import sys

import matplotlib
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2.visualization import showmasks

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/samv2: common.py
from common import initenvironment, parser, predictor_kwargs  # noqa: E402

matplotlib.use("Agg")


def main() -> None:
    args = parser(__doc__, image="images/truck.jpg").parse_args()
    initenvironment(args.device)
    # read image
    image = np.array(Image.open(args.image).convert("RGB"))
    # predictor, e.g. SAMV2ImagePredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2ImagePredictor(**predictor_kwargs(args))
    # set image: computes the image embedding once
    predictor.setimage(image)
    # set prompt: one foreground (label 1) click
    input_point = np.array([[500, 375]])
    input_label = np.array([1])
    # inference
    masks, scores, logits = predictor.predict(point_coords=input_point, point_labels=input_label, multimask_output=True)
    sorted_ind = np.argsort(scores)[::-1]
    masks = masks[sorted_ind]
    scores = scores[sorted_ind]
    logits = logits[sorted_ind]
    # show results: one figure per mask, saved as output_mask_<i>.png
    showmasks(
        image, masks, scores, point_coords=input_point, input_labels=input_label, borders=True, savedir=args.outdir
    )


if __name__ == "__main__":
    main()
