"""Segment multiple objects simultaneously, step 2: propagate both objects' prompts through the video.

With the prompts of step 1 (object ids 2 and 3 on frame 0), ``propagateinvideo`` tracks both objects together and
yields the masks of all objects for every frame. Every ``--vis-stride``-th frame (default 15) is saved with both
masks, one colour per object id, as ``out_frame_<index>.png``.
"""

import os
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2VideoPredictor
from ssseg.modules.models.segmentors.samv2.visualization import showmask

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/samv2: common.py
from common import framenames, initenvironment, outpath, parser, positiveint, predictor_kwargs  # noqa: E402

matplotlib.use("Agg")


def main() -> None:
    cli = parser(__doc__, video="./videos/bedroom")
    cli.add_argument("--vis-stride", type=positiveint, default=15, help="save every N-th frame (default: %(default)s)")
    args = cli.parse_args()
    initenvironment(args.device)
    # the JPEG frames of the video, sorted by index
    video_dir = args.video
    frame_names = framenames(video_dir)
    # predictor, e.g. SAMV2VideoPredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2VideoPredictor(**predictor_kwargs(args))
    # initialize the inference state on this video
    inference_state = predictor.initstate(video_path=video_dir)
    predictor.resetstate(inference_state)
    # the first object (the left child's shirt), object id 2: a positive and a negative click on frame 0
    ann_frame_idx = 0
    ann_obj_id = 2
    points = np.array([[200, 300], [275, 175]], dtype=np.float32)
    labels = np.array([1, 0], np.int32)
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # the second object (the right child's shirt), object id 3: a positive click on frame 0
    ann_frame_idx = 0
    ann_obj_id = 3
    points = np.array([[400, 150]], dtype=np.float32)
    labels = np.array([1], np.int32)
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # run propagation throughout the video: every frame gives the masks of all objects
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagateinvideo(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
    # render the segmentation results every few frames
    vis_frame_stride = args.vis_stride
    for out_frame_idx in range(0, len(frame_names), vis_frame_stride):
        plt.figure(figsize=(6, 4))
        plt.title(f"frame {out_frame_idx}")
        plt.imshow(Image.open(os.path.join(video_dir, frame_names[out_frame_idx])))
        for out_obj_id, out_mask in video_segments[out_frame_idx].items():
            showmask(out_mask, plt.gca(), obj_id=out_obj_id)
        plt.savefig(outpath(args, f"out_frame_{out_frame_idx}.png"))
        plt.close()


if __name__ == "__main__":
    main()
