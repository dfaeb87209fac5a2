"""Specifying a specific object with additional points: two foreground clicks resolve the ambiguity of one.

First the single click (500, 375) of the previous step gives three candidate masks. Then both clicks, (500, 375) and
(1125, 625), both labelled 1 (foreground), are sent together with the low-resolution logits of the best candidate as
``mask_input``; with several prompts for one object a single mask is requested (``multimask_output=False``). The
result, one mask covering both clicks, is saved as ``output_mask_1.png`` with the clicks drawn as green stars.
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
    # set prompt for the second time: all clicks, not just the new one
    input_point = np.array([[500, 375], [1125, 625]])
    input_label = np.array([1, 1])
    # inference for the second time, starting from the best mask of the first one
    mask_input = logits[np.argmax(scores), :, :]
    masks, scores, _ = predictor.predict(
        point_coords=input_point, point_labels=input_label, mask_input=mask_input[None, :, :], multimask_output=False
    )
    # show results: output_mask_1.png
    showmasks(image, masks, scores, point_coords=input_point, input_labels=input_label, savedir=args.outdir)


if __name__ == "__main__":
    main()
