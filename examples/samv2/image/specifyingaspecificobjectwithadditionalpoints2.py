"""Specifying a specific object with additional points: a background click removes a region from the mask.

As in the previous example, but the second click (1125, 625) is labelled 0 (background): the mask keeps the region of
the first click (500, 375) and excludes the one around the second (in the tutorial: the car, leaving just the
window). The best candidate of the first, single-click prediction is again passed as ``mask_input`` and one mask is
requested. It is saved as ``output_mask_1.png``, the foreground click drawn as a green star, the background one red.
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
    # set prompt
    input_point = np.array([[500, 375]])
    input_label = np.array([1])
    # inference
    masks, scores, logits = predictor.predict(point_coords=input_point, point_labels=input_label, multimask_output=True)
    sorted_ind = np.argsort(scores)[::-1]
    masks = masks[sorted_ind]
    scores = scores[sorted_ind]
    logits = logits[sorted_ind]
    # set prompt for the second time: all clicks, the new one a background (label 0) click
    input_point = np.array([[500, 375], [1125, 625]])
    input_label = np.array([1, 0])
    # inference for the second time, starting from the best mask of the first one
    mask_input = logits[np.argmax(scores), :, :]
    masks, scores, _ = predictor.predict(
        point_coords=input_point, point_labels=input_label, mask_input=mask_input[None, :, :], multimask_output=False
    )
    # show results: output_mask_1.png
    showmasks(image, masks, scores, point_coords=input_point, input_labels=input_label, savedir=args.outdir)


if __name__ == "__main__":
    main()
