"""Specifying a specific object with a box: the box (425, 600, 700, 875) in xyxy pixels selects the truck's wheel.

No clicks are given (``point_coords=None``); the box alone is the prompt and one mask is requested
(``multimask_output=False``). The mask is saved as ``output_mask_1.png`` with the box drawn in green.
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
    # set prompt: a box (x0, y0, x1, y1)
    input_box = np.array([425, 600, 700, 875])
    # inference
    masks, scores, _ = predictor.predict(
        point_coords=None, point_labels=None, box=input_box[None, :], multimask_output=False
    )
    # show results: output_mask_1.png
    showmasks(image, masks, scores, box_coords=input_box, savedir=args.outdir)


if __name__ == "__main__":
    main()
