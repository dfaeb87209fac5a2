"""Combining points and boxes: the wheel's box (425, 600, 700, 875) plus a background click at (575, 750).

Both prompt types go into one ``predict`` call. The background click (label 0) in the middle of the wheel removes the
hub, so that only the tyre is selected. The single mask is saved as ``output_mask_1.png`` with the box in green and
the click as a red star.
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
    # set image
    predictor.setimage(image)
    # set prompt: a box and a background click inside it
    input_box = np.array([425, 600, 700, 875])
    input_point = np.array([[575, 750]])
    input_label = np.array([0])
    # inference
    masks, scores, logits = predictor.predict(
        point_coords=input_point, point_labels=input_label, box=input_box, multimask_output=False
    )
    # show results: output_mask_1.png
    showmasks(
        image,
        masks,
        scores,
        box_coords=input_box,
        point_coords=input_point,
        input_labels=input_label,
        savedir=args.outdir,
    )


if __name__ == "__main__":
    main()
