"""``ssseg-samv2 video``: track the objects of a prompts file through a video.

Writes into ``--out``:

* ``masks/<frame:05d>.png``: one palette PNG per frame, pixel value = object id (0 background), with the DAVIS
  palette, so the files load directly in DAVIS-style evaluation tools. Where objects overlap, the one with the
  highest logit wins.
* ``overlay.mp4``: the frames with the masks drawn in the same colours (``--no-overlay`` skips it).
* ``summary.json``: the input, the object ids, the frame count and each object's mask area per frame.

Tracking runs forward from the earliest prompted frame to the end, then backwards to frame 0 if the first prompt
is later, so every frame gets a mask. The prompts file format is documented in :mod:`ssseg.samv2.prompts`.
"""

import argparse
import os
from typing import Dict, List, Optional

import numpy as np

from ssseg.samv2.common import (
    CLIError,
    add_model_arguments,
    autocast,
    build_model,
    write_atomic,
    write_json_atomic,
    write_png_atomic,
)
from ssseg.samv2.overlay import index_mask_image, render_index_overlay
from ssseg.samv2.prompts import ObjectPrompt, PromptsError, check_frames, load_prompts

DEFAULT_FPS = 24.0
MANIFEST_SUFFIX = ".jsonl"


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "video",
        help="track objects through a video from a prompts file",
        description="Track objects through a video (a video file or a folder of <index>.jpg frames) from the clicks, "
        "boxes and masks of a prompts JSON file. Writes masks/<frame>.png (object ids as palette indices, DAVIS "
        "convention), overlay.mp4 and summary.json into --out. Prompts file: "
        '{"objects": [{"id": 1, "frame": 0, "points": [[x, y], ...], "labels": [1, ...], "box": [x0, y0, x1, y1]}]}'
        " (see docs/cli.md).",
    )
    parser.add_argument(
        "input",
        help="a video file (mp4, avi, mov, mkv, ...) or a folder of <index>.jpg frames; or a manifest (.jsonl, one "
        '{"video": ..., "prompts": {...}} or {"video": ..., "prompts_file": ...} per line) for a batch job',
    )
    parser.add_argument("--prompts", help="prompts JSON file (one video)")
    parser.add_argument(
        "--out", required=True, help="output folder (a manifest: a folder or URI, one subfolder per video)"
    )
    parser.add_argument("--fps", type=float, help="frame rate of overlay.mp4 (default: the video's, else 24)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    add_model_arguments(parser)
    from ssseg.samv2.batch.cli import add_engine_arguments

    add_engine_arguments(parser)
    parser.set_defaults(run=run_video)


def add_prompt(predictor, state, prompt: ObjectPrompt, where: str) -> None:
    """Send one prompt to the predictor; its errors (a point outside the frame, a mask of another size) name the
    prompts-file entry."""
    try:
        if prompt.mask is not None:
            predictor.addnewmask(state, prompt.frame, prompt.obj_id, prompt.mask)
        else:
            predictor.addnewpointsorbox(
                state, prompt.frame, prompt.obj_id, points=prompt.points, labels=prompt.labels, box=prompt.box
            )
    except (ValueError, IndexError, TypeError) as error:
        raise CLIError(f"{where}: {error}") from None


def index_map(obj_ids: List[int], logits) -> np.ndarray:
    """``N x 1 x H x W`` logits -> ``H x W`` uint8 map of the winning object id (0 where no logit is > 0)."""
    scores = logits[:, 0].float().cpu().numpy()
    best = scores.argmax(axis=0)
    ids = np.asarray(obj_ids, dtype=np.uint8)[best]
    return np.where(scores.max(axis=0) > 0, ids, 0).astype(np.uint8)


def video_fps(path: str) -> float:
    import cv2

    if os.path.isdir(path):
        return DEFAULT_FPS
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and 0 < fps < 1000 else DEFAULT_FPS


def write_overlay(path: str, frames, masks_dir: str, num_frames: int, fps: float, progress: bool = True) -> None:
    """overlay.mp4 from the frames and the written mask PNGs (one frame in memory at a time)."""
    import cv2
    from PIL import Image
    from tqdm import tqdm

    def write(tmp: str) -> None:
        size = (frames.video_width, frames.video_height)
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise CLIError("OpenCV cannot write MP4 here (no mp4v encoder); use --no-overlay")
        try:
            for t in tqdm(range(num_frames), desc="overlay", unit="frame", disable=not progress):
                with Image.open(os.path.join(masks_dir, f"{t:05d}.png")) as png:
                    ids = np.asarray(png)
                drawn = render_index_overlay(frames.frame_rgb(t), ids)
                writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()

    write_atomic(path, write)


def run_video(args: argparse.Namespace) -> int:
    from ssseg.modules.models.segmentors.samv2 import SAMV2VideoPredictor

    if args.input.endswith(MANIFEST_SUFFIX):
        from ssseg.samv2.batch.cli import run_video_manifest

        return run_video_manifest(args)
    if args.engine != "local":
        raise CLIError(f"--engine {args.engine} runs a manifest of videos ({MANIFEST_SUFFIX}), not one video")
    if args.prompts is None:
        raise CLIError(f"--prompts is required for one video (or give a manifest, {MANIFEST_SUFFIX})")
    if not os.path.exists(args.input):
        raise CLIError(f"video not found: {args.input}")
    if args.fps is not None and not args.fps > 0:
        raise CLIError(f"--fps must be > 0, got {args.fps}")
    try:
        prompts = load_prompts(args.prompts)  # the schema is checked before the model is loaded
    except PromptsError as error:
        raise CLIError(str(error)) from None
    predictor = SAMV2VideoPredictor(model=build_model(args, video=True))
    summary = track_video(
        predictor, args.input, prompts, args.prompts, args.out, autocast(args), not args.no_overlay, args.fps
    )
    print(f"tracked {len(summary['objects'])} object(s) over {summary['num_frames']} frames; wrote masks/, "
          "summary.json", end="")  # fmt: skip
    print("" if args.no_overlay else " and overlay.mp4", f"to {args.out}")
    return 0


def track_video(
    predictor,
    video: str,
    prompts: List[ObjectPrompt],
    where: str,
    out: str,
    autocast_context,
    overlay: bool = True,
    fps: Optional[float] = None,
    progress: bool = True,
    input_name: Optional[str] = None,
) -> dict:
    """Track ``prompts`` through ``video`` (a local file or JPEG folder) and write ``masks/``, ``overlay.mp4`` (with
    ``overlay``) and ``summary.json`` (last) into the local folder ``out``; returns the summary. ``where`` names the
    prompts in errors; ``input_name`` is the summary's ``input`` (default: the video's absolute path). Shared by the
    ``video`` command and the batch job."""
    from tqdm import tqdm

    try:
        state = predictor.initstate(video)
    except (ValueError, FileNotFoundError, TypeError) as error:
        raise CLIError(f"cannot read video {input_name or video}: {error}") from None
    try:
        try:
            check_frames(prompts, state.num_frames, where)
        except PromptsError as error:
            raise CLIError(str(error)) from None
        masks_dir = os.path.join(out, "masks")
        os.makedirs(masks_dir, exist_ok=True)
        areas: Dict[int, Dict[int, int]] = {}
        with autocast_context:
            for i, prompt in sorted(enumerate(prompts), key=lambda item: item[1].frame):
                add_prompt(predictor, state, prompt, f"{where}: objects[{i}]")
            first = min(p.frame for p in prompts)
            passes = [dict(start_frame_idx=first, reverse=False)]
            if first > 0:
                passes.append(dict(start_frame_idx=first, reverse=True))
            with tqdm(total=state.num_frames, desc="tracking", unit="frame", disable=not progress) as bar:
                for options in passes:
                    for frame_idx, obj_ids, logits in predictor.propagateinvideo(state, **options):
                        ids = index_map(obj_ids, logits)
                        write_png_atomic(os.path.join(masks_dir, f"{frame_idx:05d}.png"), index_mask_image(ids))
                        counts = np.bincount(ids.reshape(-1), minlength=256)
                        areas[frame_idx] = {int(o): int(counts[o]) for o in obj_ids}
                        if not (options["reverse"] and frame_idx == first):  # the start frame is yielded twice
                            bar.update(1)
        obj_ids = [int(o) for o in state.obj_ids]
        if overlay:
            rate = fps or video_fps(video)
            path = os.path.join(out, "overlay.mp4")
            write_overlay(path, state.frames, masks_dir, state.num_frames, rate, progress)
        summary = {
            "input": input_name or os.path.abspath(video),
            "num_frames": state.num_frames,
            "height": state.video_height,
            "width": state.video_width,
            "objects": obj_ids,
            "masks": "masks/%05d.png",
            "overlay": "overlay.mp4" if overlay else None,
            "area_per_frame": [areas.get(t, {o: 0 for o in obj_ids}) for t in range(state.num_frames)],
        }
        write_json_atomic(os.path.join(out, "summary.json"), summary)  # last: its presence marks the video done
    finally:
        state.close()
    return summary
