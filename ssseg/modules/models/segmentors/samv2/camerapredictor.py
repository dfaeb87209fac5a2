"""Live tracking with SAM 2 / SAM 2.1 (:class:`SAMV2CameraPredictor`): frames arrive one at a time, forever.

The stream is a video whose frames are not known up front. It runs on the machinery of
:class:`~.videopredictor.SAMV2VideoPredictor` (the same prompt handling, tracking step, memory bank and batching),
so for any recorded frame sequence and any schedule of prompts its logits equal, bit for bit, those of the video
predictor driven the same way offline: propagate forward up to a prompt's frame (``max_frame_num_to_track``), add
the prompt there, propagate on from the next frame.

Two things are specific to a stream:

* **Prompts go on the latest frame** (the one just loaded or tracked). A prompt for a new id adds an object there;
  a prompt for a known id corrects it there, and that frame conditions every later frame (as the video predictor's
  ``add_all_frames_to_correct_as_cond=True``).
* **Memory stays flat.** After every frame the state forgets what memory attention can no longer read: tracked
  frames older than the context radius (``max(max_obj_ptrs_in_encoder, (num_maskmem - 1) * stride + 1)`` frames),
  the memories of tracked frames older than the last ``num_maskmem`` (their object pointers stay while in reach),
  every low-resolution mask but the latest frame's, prompts of older frames, and prompted frames that can neither
  be selected (``max_cond_frames_in_attn``) nor reached as a recent frame. Only the latest frame and its image
  features are held. Nothing is written to disk.

An endless stream has no last frame: SAM 2 normalises the temporal position of object pointers by
``min(num_frames, max_obj_ptrs_in_encoder) - 1``, and the stream uses ``max_obj_ptrs_in_encoder``, which is what
an offline video of at least that many frames (16 in every shipped config) uses.

Bad input (a frame of another size, a non-uint8 or non-RGB frame, :meth:`track` before :meth:`loadfirstframe`, a
prompt on another frame or without points / box / mask, an unknown id) raises a clear error and leaves the stream
as it was.
"""

import contextlib
import dataclasses
import numbers
import operator
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .framereaders import FrameReader
from .memoryselection import recent_memory_frames
from .samv2 import SAMV2
from .video import open_frames
from .videopredictor import ArrayLike, PromptResult, SAMV2VideoPredictor
from .videostate import NO_MASKS, ObjectState, VideoInferenceState

__all__ = ["SAMV2CameraPredictor", "StreamReader", "STREAM_LENGTH"]

# the frame count a stream reports: larger than any reachable frame index, so "no last frame"
STREAM_LENGTH = 2**62

FrameLike = Union[np.ndarray, Image.Image]
TrackResult = Tuple[List[Hashable], torch.Tensor]


class StreamReader(FrameReader):
    """The newest frames of a live stream (the latest and the one before it); older frames are gone."""

    def __init__(self, first: np.ndarray) -> None:
        self.height, self.width = first.shape[:2]
        self.length = STREAM_LENGTH
        self._frames: Dict[int, np.ndarray] = {0: first}

    @property
    def latest(self) -> int:
        return max(self._frames)

    def push(self, frame: np.ndarray) -> int:
        """Append a frame; returns its index. The frame before the latest is kept for memory encoding of its
        prompts (which happens when the next frame is tracked)."""
        idx = self.latest + 1
        self._frames = {idx - 1: self._frames[idx - 1], idx: frame}
        return idx

    def read_rgb(self, idx: int) -> np.ndarray:
        frame = self._frames.get(idx)
        if frame is None:
            raise IndexError(f"frame {idx} of the live stream is gone; only frames {sorted(self._frames)} are held")
        return frame

    def read(self, idx: int) -> Image.Image:
        # exactly what the in-memory reader of the video predictor does with the same pixels
        return Image.fromarray(np.ascontiguousarray(self.read_rgb(idx)))

    def describe(self, idx: Optional[int] = None) -> str:
        return "live stream" if idx is None else f"frame {idx} of the live stream"


class _StreamTracker(SAMV2VideoPredictor):
    """The video predictor as the stream drives it. The batch of an object on a frame depends on all the
    conditioning frames it ever had, as offline; ``forgotten_cond`` remembers the indices the stream dropped."""

    forgotten_cond: Dict[Hashable, Tuple[int, ...]]

    def _memory_layout(self, obj: ObjectState, frame_idx: int, radius: int) -> Tuple:
        _, neighbours = super()._memory_layout(obj, frame_idx, radius)
        # prompts only go on the newest frame: offline, conditioning frames are inserted in time order
        return self.forgotten_cond.get(obj.obj_id, ()) + tuple(sorted(obj.cond_outputs)), neighbours


class SAMV2CameraPredictor:
    """Segment and track objects in a live stream, one frame at a time, in flat memory.

    Model choice and options as :class:`~.videopredictor.SAMV2VideoPredictor` (``use_default_samv21_t=True``,
    ``samv2_cfg=`` with ``ckptpath=``, or ``model=``; ``fill_hole_area``, ``non_overlap_masks``, ...).

    Args:
        max_cond_frames_in_attn: how many prompted frames memory attention reads (the closest ones; -1: all). None
            keeps the model's own setting. Prompted frames beyond this number are dropped from memory once they
            are also out of reach as recent frames. The model is used with this value only inside this
            predictor's calls (a shared model is not changed for others).
        offload_state_to_cpu: keep memories and mask logits on the CPU.
        onnxdir: a folder written by ``ssseg-samv2 export`` to run on ONNX Runtime instead of a PyTorch model (with
            ``providers``, ONNX Runtime's execution providers; CPU by default).
    """

    def __init__(
        self,
        samv2_cfg: Optional[Dict[str, Any]] = None,
        use_default_samv2_t: bool = False,
        use_default_samv2_s: bool = False,
        use_default_samv2_bplus: bool = False,
        use_default_samv2_l: bool = False,
        use_default_samv21_t: bool = False,
        use_default_samv21_s: bool = False,
        use_default_samv21_bplus: bool = False,
        use_default_samv21_l: bool = False,
        ckptpath: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
        model: Optional[SAMV2] = None,
        apply_postprocessing: bool = True,
        fill_hole_area: Optional[float] = None,
        non_overlap_masks: bool = False,
        clear_non_cond_mem_around_input: bool = False,
        maskmem_dtype: torch.dtype = torch.bfloat16,
        batch_objects: bool = True,
        offload_state_to_cpu: bool = False,
        max_cond_frames_in_attn: Optional[int] = None,
        onnxdir: Optional[str] = None,
        providers: Optional[Sequence[Any]] = None,
    ) -> None:
        self.tracker = _StreamTracker(
            samv2_cfg=samv2_cfg,
            use_default_samv2_t=use_default_samv2_t,
            use_default_samv2_s=use_default_samv2_s,
            use_default_samv2_bplus=use_default_samv2_bplus,
            use_default_samv2_l=use_default_samv2_l,
            use_default_samv21_t=use_default_samv21_t,
            use_default_samv21_s=use_default_samv21_s,
            use_default_samv21_bplus=use_default_samv21_bplus,
            use_default_samv21_l=use_default_samv21_l,
            ckptpath=ckptpath,
            device=device,
            model=model,
            onnxdir=onnxdir,
            providers=providers,
            apply_postprocessing=apply_postprocessing,
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond=True,
            maskmem_dtype=maskmem_dtype,
            batch_objects=batch_objects,
            release_old_state=False,  # the stream drops what it cannot reach; nothing is spilled
            frame_cache_size=1,
            frame_prefetch=0,
        )
        self.tracker.forgotten_cond = {}
        self.model = self.tracker.model
        if max_cond_frames_in_attn is None:
            max_cond_frames_in_attn = self.model.max_cond_frames_in_attn
        if (
            isinstance(max_cond_frames_in_attn, bool)
            or not isinstance(max_cond_frames_in_attn, numbers.Integral)
            or not (max_cond_frames_in_attn == -1 or max_cond_frames_in_attn >= 2)
        ):
            raise ValueError(
                "max_cond_frames_in_attn must be -1 (all prompted frames) or an int >= 2, "
                f"got {max_cond_frames_in_attn!r}"
            )
        self.max_cond_frames_in_attn = int(max_cond_frames_in_attn)
        self.offload_state_to_cpu = offload_state_to_cpu
        self._state: Optional[VideoInferenceState] = None
        self._reader: Optional[StreamReader] = None

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def frame_idx(self) -> Optional[int]:
        """Index of the latest frame (0 after :meth:`loadfirstframe`); None before the first frame."""
        return None if self._reader is None else self._reader.latest

    @property
    def obj_ids(self) -> List[Hashable]:
        """Ids of the tracked objects, in the order of the returned logits."""
        return [] if self._state is None else self._state.obj_ids

    @property
    def state(self) -> VideoInferenceState:
        """The underlying video state (for inspection; bounded whatever the stream length)."""
        return self._started()

    # ------------------------------------------------------------------------------------------------ stream
    @torch.inference_mode()
    def loadfirstframe(self, frame: FrameLike) -> None:
        """Start a new stream with ``frame`` as frame 0 (objects and results of a previous stream are dropped).

        Args:
            frame: ``H x W x 3`` uint8 RGB numpy array or an RGB PIL image; every later frame must have this size.
        """
        image = self._check_frame(frame, None)
        self.close()
        reader = StreamReader(image)
        frames = open_frames(reader, image_size=self.model.image_size, cache_size=1, prefetch=0, device="cpu")
        device = self.device
        self._state = VideoInferenceState(
            frames=frames,
            num_frames=STREAM_LENGTH,
            video_height=reader.height,
            video_width=reader.width,
            device=device,
            storage_device=torch.device("cpu") if self.offload_state_to_cpu else device,
            offload_video_to_cpu=True,
            offload_state_to_cpu=self.offload_state_to_cpu,
            release_radius=None,
            spill=None,
        )
        self._reader = reader
        self.tracker.forgotten_cond = {}

    @torch.inference_mode()
    def track(self, frame: FrameLike) -> TrackResult:
        """Track every object into the next frame of the stream.

        Args:
            frame: ``H x W x 3`` uint8 RGB, the size of the first frame.

        Returns:
            ``(obj_ids, logits N x 1 x H x W)`` at the frame's resolution (``0 x 1 x H x W`` without objects).
        """
        state = self._started("track")
        image = self._check_frame(frame, (state.video_height, state.video_width))
        frame_idx = self._reader.push(image)
        if state.num_objects == 0:
            state.cached_features = None  # features of an older frame are never needed again
            empty = torch.zeros((0, 1, state.video_height, state.video_width), device=state.device)
            return [], empty
        with self._model_options():
            results = list(self.tracker._propagate(state, [frame_idx], reverse=False))
        _, obj_ids, masks = results[0]
        self._forget_unreachable()
        return list(obj_ids), masks

    # ------------------------------------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def addnewprompt(
        self,
        frame_idx: int,
        obj_id: Hashable,
        points: Optional[ArrayLike] = None,
        labels: Optional[ArrayLike] = None,
        box: Optional[ArrayLike] = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        bbox: Optional[ArrayLike] = None,
    ) -> PromptResult:
        """Add clicks and/or a box for one object on the latest frame (a new object, or a correction).

        Args:
            frame_idx: must be :attr:`frame_idx` (the latest frame).
            obj_id: any hashable id; a new id adds an object.
            points: ``N x 2`` (x, y) clicks in pixels of the frame (``[0, 1]`` with ``normalize_coords=False``).
            labels: ``N`` labels, 1 foreground and 0 background.
            box: ``(x0, y0, x1, y1)`` (``bbox=`` is the same, as in the real-time fork's API).
            clear_old_points: replace the object's clicks on this frame (else append to them).

        Returns:
            ``(frame_idx, obj_ids, logits N_obj x 1 x H x W)`` of every object on this frame.
        """
        state = self._started("add a prompt")
        if box is not None and bbox is not None:
            raise ValueError("give the box once, as box= or as bbox=, not both")
        box = bbox if box is None else box
        frame_idx = self._check_prompt_frame(frame_idx)
        with self._new_object_undo(obj_id), self._model_options():
            return self.tracker.addnewpointsorbox(
                state, frame_idx, obj_id, points, labels, clear_old_points, normalize_coords, box
            )

    def addnewpoints(
        self,
        frame_idx: int,
        obj_id: Hashable,
        points: ArrayLike,
        labels: ArrayLike,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
    ) -> PromptResult:
        """Clicks only: :meth:`addnewprompt` without a box."""
        return self.addnewprompt(frame_idx, obj_id, points, labels, None, clear_old_points, normalize_coords)

    @torch.inference_mode()
    def addnewmask(self, frame_idx: int, obj_id: Hashable, mask: ArrayLike) -> PromptResult:
        """Give one object's ``H x W`` mask on the latest frame (see :meth:`SAMV2VideoPredictor.addnewmask`)."""
        state = self._started("add a mask")
        frame_idx = self._check_prompt_frame(frame_idx)
        with self._new_object_undo(obj_id), self._model_options():
            return self.tracker.addnewmask(state, frame_idx, obj_id, mask)

    @torch.inference_mode()
    def removeobject(self, obj_id: Hashable) -> List[Hashable]:
        """Stop tracking an object; returns the remaining ids. Unknown ids raise ``KeyError``."""
        state = self._started("remove an object")
        remaining, _ = self.tracker.removeobject(state, obj_id, strict=True, need_output=False)
        self.tracker.forgotten_cond.pop(obj_id, None)
        return remaining

    @torch.inference_mode()
    def resetstate(self) -> None:
        """Remove every object with its prompts and results; the stream goes on at the same frame (call
        :meth:`loadfirstframe` to start a new stream)."""
        state = self._started("reset")
        self.tracker.resetstate(state)
        self.tracker.forgotten_cond.clear()

    def close(self) -> None:
        """Release the stream's state (also done by :meth:`loadfirstframe`)."""
        if self._state is not None:
            self._state.close()
        self._state = None
        self._reader = None

    # ------------------------------------------------------------------------------------------------ checks
    def _started(self, action: str = "use the stream") -> VideoInferenceState:
        if self._state is None:
            raise RuntimeError(f"cannot {action} before the stream starts: call loadfirstframe(frame) first")
        return self._state

    @staticmethod
    def _check_frame(frame: Any, size: Optional[Tuple[int, int]]) -> np.ndarray:
        """An owned ``H x W x 3`` uint8 RGB copy of ``frame``, of ``size`` (H, W) when given."""
        if isinstance(frame, Image.Image):
            if frame.mode != "RGB":
                raise ValueError(f"frame is a PIL image in mode {frame.mode!r}; expected an RGB image (convert('RGB'))")
            image = np.array(frame)
        elif isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8:
                raise TypeError(f"frame has dtype {frame.dtype}; expected an H x W x 3 uint8 RGB array (0..255)")
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frame has shape {tuple(frame.shape)}; expected an H x W x 3 uint8 RGB array")
            image = np.array(frame)  # a copy: camera loops often reuse their buffer
        else:
            raise TypeError(
                f"frame is a {type(frame).__name__}; expected an H x W x 3 uint8 RGB numpy array or PIL image"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"frame has shape {tuple(image.shape)}; expected a non-empty H x W x 3 image")
        if size is not None and image.shape[:2] != size:
            raise ValueError(
                f"frame is {image.shape[0]} x {image.shape[1]} (H x W) but the stream's first frame is "
                f"{size[0]} x {size[1]}; every frame of a stream must have the same size (call loadfirstframe to "
                "start a new stream)"
            )
        return image

    def _check_prompt_frame(self, frame_idx: Any) -> int:
        latest = self._reader.latest
        if isinstance(frame_idx, bool):
            raise TypeError(f"frame_idx must be an int, got {frame_idx!r}")
        try:
            frame_idx = operator.index(frame_idx)
        except TypeError:
            raise TypeError(f"frame_idx must be an int, got {type(frame_idx).__name__}") from None
        if frame_idx != latest:
            raise ValueError(
                f"prompts go on the latest frame of the stream, frame {latest}; got frame_idx={frame_idx} "
                f"(use predictor.frame_idx)"
            )
        return frame_idx

    @contextlib.contextmanager
    def _new_object_undo(self, obj_id: Hashable) -> Iterator[None]:
        """A prompt that fails for a new id leaves no half-made object behind."""
        state = self._state
        try:
            is_new = obj_id is not None and obj_id not in state.objects
        except TypeError:  # unhashable: the prompt raises a clear error itself
            is_new = False
        try:
            yield
        except BaseException:
            if is_new and obj_id in state.objects:
                state.objects[obj_id].clear()
                del state.objects[obj_id]
            raise

    @contextlib.contextmanager
    def _model_options(self) -> Iterator[None]:
        """Run the model with this predictor's ``max_cond_frames_in_attn`` (restored afterwards)."""
        saved = self.model.max_cond_frames_in_attn
        self.model.max_cond_frames_in_attn = self.max_cond_frames_in_attn
        try:
            yield
        finally:
            self.model.max_cond_frames_in_attn = saved

    # ------------------------------------------------------------------------------------------------ flat memory
    def _forget_unreachable(self) -> None:
        """Drop what neither a prompt on the latest frame nor tracking of the next frames can read."""
        state, latest, model = self._state, self._reader.latest, self.model
        # the next frame's tracked-memory window (also what decides its batches): frames within the radius
        window_start = latest + 1 - self.tracker.context_radius()
        stride = max(1, model.memory_temporal_stride_for_eval)
        # a correction on the latest frame reads these memories; later frames read newer ones only
        oldest_memory = min(
            (t for _, t in recent_memory_frames(latest, model.num_maskmem, stride, False)), default=latest
        )
        for obj in state.objects.values():
            outputs = obj.non_cond_outputs
            for t in list(outputs):
                if t < window_start:
                    outputs.discard(t)
                    continue
                out = outputs.get(t)
                keep_memory = t >= oldest_memory
                if t != latest and (out.pred_masks.numel() or (not keep_memory and out.maskmem_features is not None)):
                    outputs[t] = dataclasses.replace(
                        out, pred_masks=NO_MASKS, maskmem_features=out.maskmem_features if keep_memory else None
                    )
            self._forget_cond_frames(obj, latest, window_start)
            for inputs in (obj.point_inputs, obj.mask_inputs):
                for t in [t for t in inputs if t < latest]:
                    del inputs[t]
            for t in [t for t in obj.frames_tracked if t < latest]:
                del obj.frames_tracked[t]

    def _forget_cond_frames(self, obj: ObjectState, latest: int, window_start: int) -> None:
        cond = obj.cond_outputs
        max_cond = self.max_cond_frames_in_attn
        if max_cond != -1 and len(cond) > max_cond:
            # every frame from now on is after every prompted frame: the most recent ones are the closest
            selectable = set(sorted(cond)[-max_cond:])
            dropped = [t for t in cond if t not in selectable and t < window_start]
            for t in dropped:
                del cond[t]
            if dropped:
                forgotten = self.tracker.forgotten_cond
                forgotten[obj.obj_id] = forgotten.get(obj.obj_id, ()) + tuple(sorted(dropped))
        if self.tracker.forgotten_cond.get(obj.obj_id) and list(cond) != sorted(cond, reverse=True):
            # Offline, such an object has more prompted frames than max_cond_frames_in_attn, and memory attention
            # reads the selected ones closest first (the most recent first). The stream may now hold no more than
            # that number, and then they are read in dict order: keep it the same, or the sums change in the last bit.
            obj.cond_outputs = cond = {t: cond[t] for t in sorted(cond, reverse=True)}
        for t, out in cond.items():
            if t != latest and out.pred_masks.numel():
                cond[t] = dataclasses.replace(out, pred_masks=NO_MASKS)

    # the real-time fork's names (segment-anything-2-real-time) and the official snake_case style
    load_first_frame = loadfirstframe
    add_new_prompt = addnewprompt
    add_new_points = addnewpoints
    add_new_mask = addnewmask
    remove_object = removeobject
    reset_state = resetstate
