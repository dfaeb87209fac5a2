"""Segment & track one object, step 4: a negative click on a tracked frame fixes a mistake there.

After the propagation of step 3, the mask on frame ``--refine-frame`` (default 150, where the tutorial's masklet has
an imperfect boundary) is saved as ``frame <index> -- before refinement.png``. A negative click at (x, y) = (82, 415)
on that frame (label 0, same object id 1) removes the wrong region; ``addnewpoints`` returns the corrected mask of
that frame, saved with the click as ``frame <index> -- after refinement.png``.
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
    cli = parser(__doc__, video="./videos/bedroom")
    cli.add_argument(
        "--refine-frame", type=int, default=150, help="frame that gets the negative click (default: %(default)s)"
    )
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
    # run propagation throughout the video and collect the per-frame segmentation results (step 3)
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagateinvideo(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
    # further refine some details on this frame, for the same object
    ann_frame_idx = args.refine_frame
    ann_obj_id = 1
    # show the segment before further refinement
    plt.figure(figsize=(12, 8))
    plt.title(f"frame {ann_frame_idx} -- before refinement")
    plt.imshow(Image.open(os.path.join(video_dir, frame_names[ann_frame_idx])))
    showmask(video_segments[ann_frame_idx][ann_obj_id], plt.gca(), obj_id=ann_obj_id)
    plt.savefig(outpath(args, f"frame {ann_frame_idx} -- before refinement.png"))
    plt.close()
    # a negative click on this frame at (x, y) = (82, 415) to refine the segment
    points = np.array([[82, 415]], dtype=np.float32)
    labels = np.array([0], np.int32)
    _, out_obj_ids, out_mask_logits = predictor.addnewpoints(
        inference_state=inference_state, frame_idx=ann_frame_idx, obj_id=ann_obj_id, points=points, labels=labels
    )
    # show the segment after the further refinement
    plt.figure(figsize=(12, 8))
    plt.title(f"frame {ann_frame_idx} -- after refinement")
    plt.imshow(Image.open(os.path.join(video_dir, frame_names[ann_frame_idx])))
    showpoints(points, labels, plt.gca())
    mask = (out_mask_logits[out_obj_ids.index(ann_obj_id)] > 0.0).cpu().numpy()
    showmask(mask, plt.gca(), obj_id=ann_obj_id)
    plt.savefig(outpath(args, f"frame {ann_frame_idx} -- after refinement.png"))
    plt.close()


if __name__ == "__main__":
    main()
