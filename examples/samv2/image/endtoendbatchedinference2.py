"""End-to-end batched inference with points: two images, two single-click objects on each, in one batch.

Each image gets a ``2 x 1 x 2`` array of clicks (two objects, one click each) and ``2 x 1`` labels. With
``multimask_output=True`` ``predictbatch`` returns ``2 x 3 x H x W`` masks and ``2 x 3`` scores per image; the best of
the three candidates is kept for every object. Each image is saved with its best masks (random colours) and clicks as
``output_0.png`` (truck) and ``output_1.png`` (groceries).
"""

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2.visualization import showmask, showpoints

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
    # set prompt: B x N x 2 clicks and B x N labels per image (B objects with N clicks each)
    image1_pts = np.array([[[500, 375]], [[650, 750]]])
    image1_labels = np.array([[1], [1]])
    image2_pts = np.array([[[400, 300]], [[630, 300]]])
    image2_labels = np.array([[1], [1]])
    pts_batch = [image1_pts, image2_pts]
    labels_batch = [image1_labels, image2_labels]
    # set images
    predictor.setimagebatch(img_batch)
    # inference
    masks_batch, scores_batch, _ = predictor.predictbatch(
        pts_batch, labels_batch, box_batch=None, multimask_output=True
    )
    # select the best single mask per object
    best_masks = []
    for masks, scores in zip(masks_batch, scores_batch):
        best_masks.append(masks[range(len(masks)), np.argmax(scores, axis=-1)])
    # show results
    for idx, (image, points, labels, masks) in enumerate(zip(img_batch, pts_batch, labels_batch, best_masks)):
        plt.figure(figsize=(10, 10))
        plt.imshow(image)
        for mask in masks:
            showmask(mask, plt.gca(), random_color=True)
        showpoints(points, labels, plt.gca())
        plt.savefig(outpath(args, f"output_{idx}.png"))
        plt.close()


if __name__ == "__main__":
    main()
