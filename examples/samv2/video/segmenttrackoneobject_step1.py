"""Segment & track one object, step 1: a first click on frame 0 of the video.

The video predictor works on an inference state opened with ``initstate`` (here on a folder of ``<index>.jpg``
frames). A positive click at (x, y) = (210, 350) on frame 0 is sent for object id 1 with ``addnewpoints``; the
predicted mask of that frame is saved as ``output_step1.png`` with the click as a green star. In the tutorial's
bedroom video this single click selects only the left child's shorts: one click is ambiguous.
"""

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2VideoPredictor
from ssseg.modules.models.segmentors.samv2.visualization import showmask, showpoints

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/samv2: common.py
from common import framenames, initenvironment, outpath, parser, predictor_kwargs  # noqa: E402

matplotlib.use("Agg")


def main() -> None:
    args = parser(__doc__, video="./videos/bedroom").parse_args()
    initenvironment(args.device)
    # the JPEG frames of the video, sorted by index
    video_dir = args.video
    frame_names = framenames(video_dir)
    # predictor, e.g. SAMV2VideoPredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2VideoPredictor(**predictor_kwargs(args))
    # initialize the inference state on this video
    inference_state = predictor.initstate(video_path=video_dir)
    # a state that was used for tracking before must be reset first
    predictor.resetstate(inference_state)
    # the frame index we interact with, and a unique id for the object (any integer)
    ann_frame_idx = 0
    ann_obj_id = 1
    # a positive click at (x, y) = (210, 350); label 1 is a positive click, 0 a negative one
    points = np.array([[210, 350]], dtype=np.float32)
    labels = np.array([1], np.int32)
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # show the results on the current (interacted) frame
    plt.figure(figsize=(12, 8))
    plt.title(f"frame {ann_frame_idx}")
    plt.imshow(Image.open(os.path.join(video_dir, frame_names[ann_frame_idx])))
    showpoints(points, labels, plt.gca())
    showmask((out_mask_logits[0] > 0.0).cpu().numpy(), plt.gca(), obj_id=out_obj_ids[0])
    plt.savefig(outpath(args, "output_step1.png"))
    plt.close()


if __name__ == "__main__":
    main()
