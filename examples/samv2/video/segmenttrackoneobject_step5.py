"""Segment & track one object, step 5: propagate again, now with the correction click of step 4.

The clicks of step 2 on frame 0 and the negative click (82, 415) on frame ``--refine-frame`` (default 150) are
added, and ``propagateinvideo`` is run again over the whole video. The corrected frame is a conditioning frame (the
predictor's default ``add_all_frames_to_correct_as_cond=True``), so the correction is kept and carried to the
following frames. Every ``--vis-stride``-th frame (default 15) is saved with its mask as ``out_frame_<index>.png``.
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
    cli.add_argument(
        "--refine-frame", type=int, default=150, help="frame that gets the negative click (default: %(default)s)"
    )
    cli.add_argument("--vis-stride", type=positiveint, default=15, help="save every N-th frame (default: %(default)s)")
    args = cli.parse_args()
    initenvironment(args.device)
    # the JPEG frames of the video, sorted by index
    video_dir = args.video
    frame_names = framenames(video_dir)
    if not 0 <= args.refine_frame < len(frame_names):
        cli.error(f"--refine-frame {args.refine_frame} is not a frame of {video_dir} (0..{len(frame_names) - 1})")
    # predictor, e.g. SAMV2VideoPredictor(use_default_samv2_l=True, device="cuda") as in the tutorial
    predictor = SAMV2VideoPredictor(**predictor_kwargs(args))
    # initialize the inference state on this video
    inference_state = predictor.initstate(video_path=video_dir)
    predictor.resetstate(inference_state)
    # the two positive clicks of step 2 on frame 0 for object id 1
    ann_frame_idx = 0
    ann_obj_id = 1
    points = np.array([[210, 350], [250, 220]], dtype=np.float32)
    labels = np.array([1, 1], np.int32)
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # run propagation throughout the video (step 3)
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagateinvideo(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
    # the negative click of step 4 on the frame to refine
    ann_frame_idx = args.refine_frame
    ann_obj_id = 1
    points = np.array([[82, 415]], dtype=np.float32)
    labels = np.array([0], np.int32)
    _, _, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # run propagation throughout the video again, with all the prompts
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagateinvideo(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
    # render the segmentation results every few frames
    vis_frame_stride = args.vis_stride
    plt.close("all")
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
