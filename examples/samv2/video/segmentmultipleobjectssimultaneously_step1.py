"""Segment multiple objects simultaneously, step 1: prompts for two objects on frame 0.

Two objects share one inference state (and so the image features): object id 2, the left child's shirt, gets a
positive click at (x, y) = (200, 300) and a negative click at (275, 175); object id 3, the right child's shirt, a
positive click at (400, 150). ``addnewpoints`` returns the masks of all objects on the frame; frame 0 is saved with
both masks (one ``tab10`` colour per object id) and all clicks as ``output.png``.
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
    predictor.resetstate(inference_state)
    # the clicks of every object, for visualization
    prompts = {}
    # the first object (the left child's shirt), object id 2: a positive and a negative click on frame 0
    ann_frame_idx = 0
    ann_obj_id = 2
    points = np.array([[200, 300], [275, 175]], dtype=np.float32)
    labels = np.array([1, 0], np.int32)
    prompts[ann_obj_id] = points, labels
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # the second object (the right child's shirt), object id 3: a positive click on frame 0
    ann_frame_idx = 0
    ann_obj_id = 3
    points = np.array([[400, 150]], dtype=np.float32)
    labels = np.array([1], np.int32)
    prompts[ann_obj_id] = points, labels
    # addnewpoints returns the masks of all objects added so far on this frame
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # show the results on the current (interacted) frame for all objects
    plt.figure(figsize=(12, 8))
    plt.title(f"frame {ann_frame_idx}")
    plt.imshow(Image.open(os.path.join(video_dir, frame_names[ann_frame_idx])))
    for i, out_obj_id in enumerate(out_obj_ids):
        showpoints(*prompts[out_obj_id], plt.gca())
        showmask((out_mask_logits[i] > 0.0).cpu().numpy(), plt.gca(), obj_id=out_obj_id)
    plt.savefig(outpath(args, "output.png"))
    plt.close()


if __name__ == "__main__":
    main()
