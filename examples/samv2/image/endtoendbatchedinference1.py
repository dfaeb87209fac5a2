"""End-to-end batched inference with boxes: two images, four boxes on each, embedded and predicted as one batch.

``setimagebatch`` computes the embeddings of both images at once; ``predictbatch`` then takes one entry per image
(here ``box_batch``, a ``4 x 4`` box array per image) and returns lists of per-image results. Each image is saved
with its masks (random colours) and boxes as ``output_0.png`` (truck) and ``output_1.png`` (groceries).
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
    args = parser(__doc__, images=["images/truck.jpg", "images/groceries.jpg"]).parse_args()
    initenvironment(args.device)
    # read images
    image1 = np.array(Image.open(args.images[0]).convert("RGB"))
    image2 = np.array(Image.open(args.images[1]).convert("RGB"))
    img_batch = [image1, image2]
    # predictor, e.g. SAMV2ImagePredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2ImagePredictor(**predictor_kwargs(args))
    # set prompt: one B x 4 box array per image
    image1_boxes = np.array(
        [[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800], [1240, 675, 1400, 750]]
    )
    image2_boxes = np.array([[450, 170, 520, 350], [350, 190, 450, 350], [500, 170, 580, 350], [580, 170, 640, 350]])
    boxes_batch = [image1_boxes, image2_boxes]
    # set images
    predictor.setimagebatch(img_batch)
    # inference
    masks_batch, scores_batch, _ = predictor.predictbatch(None, None, box_batch=boxes_batch, multimask_output=False)
    # show results
    for idx, (image, boxes, masks) in enumerate(zip(img_batch, boxes_batch, masks_batch)):
        plt.figure(figsize=(10, 10))
        plt.imshow(image)
        for mask in masks:
            showmask(mask.squeeze(0), plt.gca(), random_color=True)
        for box in boxes:
            showbox(box, plt.gca())
        plt.savefig(outpath(args, f"output_{idx}.png"))
        plt.close()


if __name__ == "__main__":
    main()
