"""``ssseg-samv2 track``: follow the objects of a prompts file through a live stream (camera, URL or video file).

Frames are read in a background thread and tracked one at a time by
:class:`~ssseg.modules.models.segmentors.samv2.SAMV2CameraPredictor`; each prompt is applied when its frame arrives
(objects may start on any frame). Written into ``--out`` as the stream goes:

* ``masks/<frame:05d>.png``: palette PNGs with the DAVIS palette, pixel value = object id (as ``video``).
* ``overlay.mp4``: the frames with the masks drawn in (``--no-overlay`` skips it). It is finalised when the stream
  ends, at ``--max-frames`` or on Ctrl-C (SIGINT), so it always plays.
* ``summary.json``: frames, objects, FPS, ``track`` latency p50 / p99, frames dropped and why the stream stopped.

Frame indices of the prompts file count the frames the tracker processes (with ``--drop-frames``, the frames
skipped to stay live are not counted). A source that cannot be opened is a one-line error, exit code 2.
"""

import argparse
import os
import queue
import signal
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from ssseg.samv2.common import CLIError, add_model_arguments, autocast, build_model, write_json_atomic, write_png_atomic
from ssseg.samv2.overlay import index_mask_image, render_index_overlay
from ssseg.samv2.prompts import ObjectPrompt, PromptsError, load_prompts
from ssseg.samv2.videocmd import DEFAULT_FPS, index_map


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "track",
        help="track objects live in a camera, stream URL or video file",
        description="Track objects in a live stream, frame by frame: SOURCE is a camera index (0), a stream URL "
        "OpenCV opens (rtsp://, http://) or a video file. Prompts use the 'video' schema; frame numbers are stream "
        "frames and objects may start on later frames. Writes masks/<frame>.png, overlay.mp4 and summary.json "
        "into --out as it goes; Ctrl-C stops cleanly (see docs/cli.md).",
    )
    parser.add_argument("source", help="camera index (e.g. 0), stream URL (rtsp://, http://) or video file")
    parser.add_argument("--prompts", required=True, help="prompts JSON file (the 'video' schema)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument(
        "--drop-frames",
        action="store_true",
        help="stay live: always track the newest frame and count the skipped ones",
    )
    parser.add_argument("--fps", type=float, help="frame rate of overlay.mp4 (default: the source's, else 24)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    add_model_arguments(parser)
    parser.set_defaults(run=run_track)


# ---------------------------------------------------------------------------------------------------------- source
def open_capture(source: str):
    """``cv2.VideoCapture`` of a camera index, a URL or a file; a source that does not open is a CLIError."""
    import cv2

    if source.isdigit():
        target, what = int(source), f"camera {source}"
    elif "://" in source:
        target, what = source, f"stream {source}"
    else:
        if not os.path.isfile(source):
            raise CLIError(f"source not found: {source} (expected a camera index, a stream URL or a video file)")
        target, what = source, f"video file {source}"
    # OpenCV logs every backend it tries; the failure is reported below in one line
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        raise CLIError(f"cannot open {what}: OpenCV could not read from it")
    return capture, what


def to_rgb(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)


class FrameGrabber:
    """Reads RGB frames from a capture in a background thread.

    Without ``drop`` every frame is delivered (the reader waits when ``depth`` frames are queued); with ``drop`` only
    the newest frame waits, and frames replaced before being taken are counted in :attr:`dropped`.
    """

    def __init__(self, capture, drop: bool, depth: int = 4) -> None:
        self._capture = capture
        self._drop = drop
        self._queue: queue.Queue[Optional[np.ndarray]] = queue.Queue(maxsize=1 if drop else depth)
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="ssseg-track-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok or frame is None:
                    break
                self._put(to_rgb(frame))
        finally:
            self._put(None)  # end of stream

    def _put(self, item: Optional[np.ndarray]) -> None:
        while not self._stop.is_set():
            if self._drop and item is not None:
                try:
                    self._queue.get_nowait()  # replace the frame nobody took yet
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, stop: threading.Event) -> Optional[np.ndarray]:
        """The next frame, or None at the end of the stream or once ``stop`` is set."""
        while not stop.is_set():
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._capture.release()


# ---------------------------------------------------------------------------------------------------------- outputs
class OverlayWriter:
    """overlay.mp4 written frame by frame into a temporary file, renamed into place by :meth:`close`."""

    def __init__(self, path: str, fps: float) -> None:
        self.path, self.fps = path, fps
        root, ext = os.path.splitext(path)
        self._tmp = f"{root}.tmp{os.getpid()}{ext}"
        self._writer = None
        self.frames = 0

    def write(self, frame: np.ndarray, ids: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            size = (frame.shape[1], frame.shape[0])
            self._writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise CLIError("OpenCV cannot write MP4 here (no mp4v encoder); use --no-overlay")
        self._writer.write(cv2.cvtColor(render_index_overlay(frame, ids), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the index: the file plays from here on
            self._writer = None
            os.replace(self._tmp, self.path)


def percentile_ms(values: List[float], q: float) -> Optional[float]:
    return None if not values else round(float(np.percentile(values, q)) * 1000.0, 3)


def apply_prompt(predictor, prompt: ObjectPrompt, where: str):
    """One prompts-file entry on the latest frame; bad values (a point outside the frame) name the entry."""
    try:
        if prompt.mask is not None:
            return predictor.addnewmask(prompt.frame, prompt.obj_id, prompt.mask)
        return predictor.addnewprompt(
            prompt.frame, prompt.obj_id, points=prompt.points, labels=prompt.labels, box=prompt.box
        )
    except (ValueError, TypeError) as error:
        raise CLIError(f"{where}: {error}") from None


# ---------------------------------------------------------------------------------------------------------- run
def run_track(args: argparse.Namespace) -> int:
    import cv2

    from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor

    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps is not None and not args.fps > 0:
        raise CLIError(f"--fps must be > 0, got {args.fps}")
    try:
        prompts = load_prompts(args.prompts)  # the schema is checked before the source and the model are opened
    except PromptsError as error:
        raise CLIError(str(error)) from None
    by_frame: Dict[int, List[Tuple[int, ObjectPrompt]]] = {}
    for i, prompt in enumerate(prompts):
        by_frame.setdefault(prompt.frame, []).append((i, prompt))

    capture, what = open_capture(args.source)
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    fps = args.fps or (source_fps if source_fps and 0 < source_fps < 1000 else DEFAULT_FPS)
    try:
        predictor = SAMV2CameraPredictor(model=build_model(args, video=True))
    except BaseException:
        capture.release()
        raise
    masks_dir = os.path.join(args.out, "masks")
    os.makedirs(masks_dir, exist_ok=True)
    overlay = None if args.no_overlay else OverlayWriter(os.path.join(args.out, "overlay.mp4"), fps)

    stop = threading.Event()
    reason = ["end of source"]

    def on_sigint(signum, frame) -> None:
        reason[0] = "interrupted (SIGINT)"
        stop.set()
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: Ctrl-C is not ours to handle
        previous = None
    grabber = FrameGrabber(capture, drop=args.drop_frames)
    latencies: List[float] = []
    seen_ids: List[int] = []
    size = None
    started = time.perf_counter()
    try:
        with autocast(args):
            while args.max_frames is None or len(latencies) < args.max_frames:
                frame = grabber.get(stop)
                if frame is None:
                    break
                tic = time.perf_counter()
                if size is None:
                    predictor.loadfirstframe(frame)
                    size = frame.shape[:2]
                    ids, logits = [], None
                else:
                    ids, logits = predictor.track(frame)
                f = predictor.frame_idx
                for i, prompt in by_frame.get(f, []):
                    _, ids, logits = apply_prompt(predictor, prompt, f"{args.prompts}: objects[{i}]")
                latencies.append(time.perf_counter() - tic)
                ids = [int(o) for o in ids]
                seen_ids += [o for o in ids if o not in seen_ids]
                id_map = index_map(ids, logits) if ids else np.zeros(frame.shape[:2], np.uint8)
                write_png_atomic(os.path.join(masks_dir, f"{f:05d}.png"), index_mask_image(id_map))
                if overlay is not None:
                    overlay.write(frame, id_map)
            else:
                reason[0] = f"--max-frames {args.max_frames}"
    finally:
        elapsed = time.perf_counter() - started
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        grabber.close()
        if overlay is not None:
            overlay.close()
        predictor.close()
        num_frames = len(latencies)
        summary = {
            "source": args.source if "://" in args.source or args.source.isdigit() else os.path.abspath(args.source),
            "frames": num_frames,
            "height": None if size is None else int(size[0]),
            "width": None if size is None else int(size[1]),
            "objects": seen_ids,
            "fps": round(num_frames / elapsed, 3) if elapsed > 0 and num_frames else None,
            "latency_ms": {"p50": percentile_ms(latencies, 50), "p99": percentile_ms(latencies, 99)},
            "frames_dropped": grabber.dropped,
            "stopped": reason[0],
            "prompts_not_applied": [i for i, p in enumerate(prompts) if p.frame >= num_frames],
            "masks": "masks/%05d.png",
            "overlay": None if overlay is None else "overlay.mp4",
        }
        write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    if num_frames == 0:
        raise CLIError(f"no frame could be read from {what}")
    print(
        f"tracked {len(seen_ids)} object(s) over {num_frames} frames from {what} ({reason[0]}); "
        f"wrote masks/, summary.json{'' if overlay is None else ' and overlay.mp4'} to {args.out}"
    )
    return 0
