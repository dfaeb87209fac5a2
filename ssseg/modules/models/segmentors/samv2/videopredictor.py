"""Interactive video segmentation and tracking with SAM 2 / SAM 2.1 (:class:`SAMV2VideoPredictor`).

Equal to the official ``SAM2VideoPredictor`` (2024-12, objects tracked independently with shared image features),
with three deliberate differences:

* ``add_all_frames_to_correct_as_cond`` defaults to True. With the official default (False), a correction click on
  an already tracked frame is stored as an ordinary tracked output, and the next ``propagate_in_video`` recomputes
  that frame without its clicks and overwrites it: the correction is lost (sam2 issues #546, #719, #731; the
  official web demo turns the option on). The option keeps its official meaning; pass False for the official
  behaviour.
* Frames are decoded on demand with a small cache and background prefetch instead of all up front, and tracked
  outputs that memory attention can no longer reach leave memory (``release_old_state``; see
  :mod:`.videostate`), so memory stays flat on long videos. Results do not change.
* Hole filling (``fill_hole_area > 0``) always runs (CUDA op when compiled, OpenCV otherwise); the official code
  skips it without its CUDA extension, i.e. always on CPU.

Bad input (frame index out of range, unknown object, points without labels, a mask of another shape, a box with
x1 < x0, ...) raises a clear error before anything in the state changes.
"""

import numbers
import operator
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .build import selectmodel
from .inputs import numeric_array
from .samv2 import SAMV2
from .video import FramesLike, open_frames
from .videoinference import VideoTracker
from .videostate import SpillFile, VideoInferenceState, spill_dir_or_default

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]
PromptResult = Tuple[int, List[Hashable], torch.Tensor]

# SAM's point labels: 0 background click, 1 foreground click, 2 / 3 box corners, -1 padding
VALID_LABELS = (-1, 0, 1, 2, 3)


def _as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    # numpy arrays, nested lists and tensors on any device; strings, NaN, ragged lists, 'meta' tensors are refused
    return numeric_array(value, name)


class SAMV2VideoPredictor(VideoTracker):
    """Segment and track objects in a video from clicks, boxes and masks on any frames.

    Model choice (exactly one, as for :class:`~.imagepredictor.SAMV2ImagePredictor`):
    ``use_default_samv2_{t,s,bplus,l}=True``, ``use_default_samv21_{t,s,bplus,l}=True``, ``samv2_cfg={...}`` (with
    ``ckptpath``) or an already built ``model=`` (used as is). ``apply_postprocessing`` does what the official video
    builder does: the decoder's dynamic multimask fallback, binarised click masks for the memory encoder, and
    ``fill_hole_area=8`` unless given. ``onnxdir=DIR`` (with ``providers``) runs a model exported by
    ``ssseg-samv2 export`` on ONNX Runtime with the same tracking code (see docs/export.md).

    Args:
        fill_hole_area: fill background holes of at most this many pixels in the low-resolution logits (None: 8 with
            postprocessing, else 0).
        non_overlap_masks: at each pixel keep only the highest-scoring object in the returned logits.
        clear_non_cond_mem_around_input: forget an object's tracked memories within ``num_maskmem`` frames of its
            prompted frames when tracking (they may show an outdated appearance).
        add_all_frames_to_correct_as_cond: a prompted frame that was already tracked becomes a conditioning frame,
            so that the correction survives the next propagation (official default: False, see the module docs).
        maskmem_dtype: dtype of the stored memories; bfloat16 as in the official predictor (float32 is more precise
            but no longer matches it).
        batch_objects: track objects with the same memory layout as one batch (False: one by one, as officially).
        release_old_state: move tracked outputs beyond the reach of memory attention to a temporary file.
        spill_dir: folder of that file (default: the system temp folder).
        frame_cache_size: decoded frames kept in memory (each ``12 * image_size**2`` bytes).
        frame_prefetch: frames decoded ahead in a background thread.
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
        add_all_frames_to_correct_as_cond: bool = True,
        maskmem_dtype: torch.dtype = torch.bfloat16,
        batch_objects: bool = True,
        release_old_state: bool = True,
        spill_dir: Optional[str] = None,
        frame_cache_size: int = 8,
        frame_prefetch: int = 4,
        onnxdir: Optional[str] = None,
        providers: Optional[Sequence[Any]] = None,
    ) -> None:
        self.model = selectmodel(
            model=model,
            samv2_cfg=samv2_cfg,
            ckptpath=ckptpath,
            device=device,
            apply_postprocessing=apply_postprocessing,
            onnxdir=onnxdir,
            providers=providers,
            # the official video builder encodes exactly the mask the user saw after clicking
            extra_options={"binarize_mask_from_pts_for_mem_enc": True} if apply_postprocessing else None,
            use_default_samv2_t=use_default_samv2_t,
            use_default_samv2_s=use_default_samv2_s,
            use_default_samv2_bplus=use_default_samv2_bplus,
            use_default_samv2_l=use_default_samv2_l,
            use_default_samv21_t=use_default_samv21_t,
            use_default_samv21_s=use_default_samv21_s,
            use_default_samv21_bplus=use_default_samv21_bplus,
            use_default_samv21_l=use_default_samv21_l,
        )
        if fill_hole_area is None:
            fill_hole_area = 8 if apply_postprocessing else 0
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, numbers.Real) or fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be a number >= 0 (0 disables hole filling), got {fill_hole_area!r}")
        if not isinstance(maskmem_dtype, torch.dtype) or not maskmem_dtype.is_floating_point:
            raise TypeError(f"maskmem_dtype must be a floating torch.dtype, got {maskmem_dtype!r}")
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.maskmem_dtype = maskmem_dtype
        self.batch_objects = batch_objects
        self.release_old_state = release_old_state
        self.spill_dir = spill_dir_or_default(spill_dir)
        self.frame_cache_size = frame_cache_size
        self.frame_prefetch = frame_prefetch

    # ------------------------------------------------------------------------------------------------ session
    @torch.inference_mode()
    def initstate(
        self,
        video_path: FramesLike,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> VideoInferenceState:
        """Open a video and start a session on it.

        Args:
            video_path: a folder of JPEG frames named ``<index>.jpg`` (ordered by the number, so ``2.jpg`` comes
                before ``10.jpg``), a video file OpenCV can decode (mp4, avi, mov, mkv, ...; no JPEGs are written),
                a list of ``H x W x 3`` uint8 RGB frames or a ``T x H x W x 3`` uint8 array.
            offload_video_to_cpu: keep decoded frames on the CPU (they always are here: frames are decoded on
                demand into a small CPU cache and moved to the model's device one at a time).
            offload_state_to_cpu: keep memories and mask logits on the CPU (saves GPU memory, costs some speed).
            async_loading_frames: accepted for compatibility; frames are always streamed with background prefetch.

        Returns:
            The session state to pass to every other method.

        Raises:
            FileNotFoundError, ValueError, TypeError: the input does not exist, is empty or cannot be decoded (the
                message names the path).
        """
        del async_loading_frames  # frames are always loaded lazily
        device = self.device
        frames = open_frames(
            video_path,
            image_size=self.model.image_size,
            cache_size=self.frame_cache_size,
            prefetch=self.frame_prefetch,
            device="cpu" if offload_video_to_cpu else device,
        )
        release = self.release_old_state
        state = VideoInferenceState(
            frames=frames,
            num_frames=len(frames),
            video_height=frames.video_height,
            video_width=frames.video_width,
            device=device,
            storage_device=torch.device("cpu") if offload_state_to_cpu else device,
            offload_video_to_cpu=offload_video_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            release_radius=self.context_radius() + 1 if release else None,
            spill=SpillFile(self.spill_dir) if release else None,
        )
        # warm up the backbone and cache frame 0, as the official predictor does
        self._image_features(state, 0, 1)
        return state

    @torch.inference_mode()
    def resetstate(self, inference_state: VideoInferenceState) -> None:
        """Remove every object with its prompts and results (the video stays open). The cached frame features go
        too, so that a session reset after the weights changed (``load_state_dict``) uses the new weights only."""
        state = self._check_state(inference_state)
        state.cached_features = None
        for obj in state.objects.values():
            obj.clear()
        state.objects.clear()
        if state.spill is not None:
            state.spill.clear()

    # ------------------------------------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def addnewpointsorbox(
        self,
        inference_state: VideoInferenceState,
        frame_idx: int,
        obj_id: Hashable,
        points: Optional[ArrayLike] = None,
        labels: Optional[ArrayLike] = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Optional[ArrayLike] = None,
    ) -> PromptResult:
        """Add clicks and/or a box for one object on one frame.

        Args:
            inference_state: from :meth:`initstate`.
            frame_idx: the frame, ``0 <= frame_idx < num_frames``.
            obj_id: any hashable id; a new id adds an object (also after tracking started).
            points: ``N x 2`` (x, y) clicks, in pixels of the video (or in [0, 1] with ``normalize_coords=False``).
            labels: ``N`` labels, 1 foreground and 0 background.
            clear_old_points: replace the object's clicks on this frame (else append to them). Send all clicks, not
                just the new one, as in the tutorial.
            normalize_coords: coordinates are pixels of the original video frames.
            box: ``(x0, y0, x1, y1)``; it goes before the clicks, so it needs ``clear_old_points=True``.

        Returns:
            ``(frame_idx, obj_ids, logits N_obj x 1 x H x W)``: every object's mask logits on this frame at the
            video resolution (-1024 for objects without a mask there).
        """
        state = self._check_state(inference_state)
        frame_idx = self._check_frame_idx(state, frame_idx)
        self._check_obj_id(obj_id)
        new_points, new_labels = self._parse_points(state, points, labels, box, clear_old_points, normalize_coords)
        obj = state.add_object(obj_id)
        old = None if clear_old_points else obj.point_inputs.get(frame_idx)
        if old is not None:
            new_points = torch.cat([old["point_coords"], new_points], dim=1)
            new_labels = torch.cat([old["point_labels"], new_labels], dim=1)
        point_inputs = {"point_coords": new_points, "point_labels": new_labels}
        obj.point_inputs[frame_idx] = point_inputs
        obj.mask_inputs.pop(frame_idx, None)
        masks = self._run_prompt(state, obj, frame_idx, point_inputs=point_inputs, mask_inputs=None)
        return frame_idx, state.obj_ids, masks

    def addnewpoints(
        self,
        inference_state: VideoInferenceState,
        frame_idx: int,
        obj_id: Hashable,
        points: Optional[ArrayLike] = None,
        labels: Optional[ArrayLike] = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: Optional[ArrayLike] = None,
    ) -> PromptResult:
        """Same as :meth:`addnewpointsorbox` (the tutorial's name)."""
        return self.addnewpointsorbox(
            inference_state, frame_idx, obj_id, points, labels, clear_old_points, normalize_coords, box
        )

    @torch.inference_mode()
    def addnewmask(
        self, inference_state: VideoInferenceState, frame_idx: int, obj_id: Hashable, mask: ArrayLike
    ) -> PromptResult:
        """Give one object's mask on one frame.

        Args:
            mask: ``H x W`` boolean / 0-1 mask at the video resolution, or at any resolution with the video's aspect
                ratio (resized), or ``image_size x image_size`` (the model's input frame, as officially accepted).
                Numpy / list input is binarised (nonzero = object); a torch tensor is used with its values.

        Returns:
            ``(frame_idx, obj_ids, logits N_obj x 1 x H x W)`` as :meth:`addnewpointsorbox`.
        """
        state = self._check_state(inference_state)
        frame_idx = self._check_frame_idx(state, frame_idx)
        self._check_obj_id(obj_id)
        mask_inputs = self._parse_mask(state, mask)
        obj = state.add_object(obj_id)
        obj.mask_inputs[frame_idx] = mask_inputs
        obj.point_inputs.pop(frame_idx, None)
        masks = self._run_prompt(state, obj, frame_idx, point_inputs=None, mask_inputs=mask_inputs)
        return frame_idx, state.obj_ids, masks

    @torch.inference_mode()
    def clearallpromptsinframe(
        self, inference_state: VideoInferenceState, frame_idx: int, obj_id: Hashable, need_output: bool = True
    ) -> Optional[PromptResult]:
        """Remove one object's clicks / mask on one frame; its output there becomes an ordinary tracked one.

        Returns ``(frame_idx, obj_ids, logits)`` of the frame, or None with ``need_output=False``.
        """
        state = self._check_state(inference_state)
        frame_idx = self._check_frame_idx(state, frame_idx)
        obj = self._existing_object(state, obj_id, "clear prompts of")
        self._clear_prompts(state, obj, frame_idx)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.temp_cond_outputs for o in state.objects.values())
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def removeobject(
        self, inference_state: VideoInferenceState, obj_id: Hashable, strict: bool = True, need_output: bool = True
    ) -> Tuple[List[Hashable], List[Tuple[int, torch.Tensor]]]:
        """Remove an object with all its prompts and results.

        Args:
            strict: raise ``KeyError`` for an unknown ``obj_id`` (the official default, False, ignores it).
            need_output: also return the other objects' logits on the frames the removed object had prompts on.

        Returns:
            ``(remaining obj_ids, [(frame_idx, logits N_obj x 1 x H x W), ...])``, frames in ascending order.
        """
        state = self._check_state(inference_state)
        self._check_obj_id(obj_id, allow_none=True)  # an unhashable id would fail inside the dict lookup
        if obj_id not in state.objects:
            if not strict:
                return state.obj_ids, []
            raise KeyError(f"cannot remove object id {obj_id!r}: it does not exist (existing ids: {state.obj_ids})")
        if state.num_objects == 1:
            self.resetstate(state)
            return state.obj_ids, []
        obj = state.objects[obj_id]
        prompted = sorted(set(obj.point_inputs) | set(obj.mask_inputs))
        for frame_idx in prompted:
            self._clear_prompts(state, obj, frame_idx)
        obj.clear()
        del state.objects[obj_id]
        updated = []
        if need_output:
            for frame_idx in prompted:
                is_cond = any(frame_idx in o.temp_cond_outputs for o in state.objects.values())
                updated.append((frame_idx, self._consolidated_masks(state, frame_idx, is_cond)))
        return state.obj_ids, updated

    # ------------------------------------------------------------------------------------------------ tracking
    def propagateinvideo(
        self,
        inference_state: VideoInferenceState,
        start_frame_idx: Optional[int] = None,
        max_frame_num_to_track: Optional[int] = None,
        reverse: bool = False,
    ) -> Iterator[PromptResult]:
        """Track every object through the video from its prompts.

        Args:
            start_frame_idx: first frame (default: the earliest prompted frame of any object).
            max_frame_num_to_track: frames to track after the start one (default: to the end / the beginning).
            reverse: track backwards in time.

        Yields:
            ``(frame_idx, obj_ids, logits N_obj x 1 x H x W)`` for each frame, at the video resolution. Arguments
            are checked when this is called; tracking runs as the iterator is consumed.
        """
        state = self._check_state(inference_state)
        if state.num_objects == 0:
            raise RuntimeError("no input points or masks are provided for any object; please add inputs first")
        for obj in state.objects.values():
            if not obj.cond_outputs and not obj.temp_cond_outputs:
                raise RuntimeError(
                    f"no input points or masks are provided for object id {obj.obj_id!r}; please add inputs first"
                )
        if start_frame_idx is None:
            start_frame_idx = min(t for o in state.objects.values() for t in [*o.cond_outputs, *o.temp_cond_outputs])
        start_frame_idx = self._check_frame_idx(state, start_frame_idx, "start_frame_idx")
        if max_frame_num_to_track is None:
            max_frame_num_to_track = state.num_frames
        elif isinstance(max_frame_num_to_track, bool) or not isinstance(max_frame_num_to_track, numbers.Integral):
            raise TypeError(f"max_frame_num_to_track must be an int or None, got {max_frame_num_to_track!r}")
        if max_frame_num_to_track < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        reverse = bool(reverse)
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            # as officially, nothing is tracked backwards from frame 0
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, state.num_frames - 1)
            order = range(start_frame_idx, end + 1)
        return self._tracking(state, order, reverse)

    @torch.inference_mode()
    def _tracking(self, state: VideoInferenceState, order: Sequence[int], reverse: bool) -> Iterator[PromptResult]:
        yield from self._propagate(state, order, reverse)

    # ------------------------------------------------------------------------------------------------ checks
    @staticmethod
    def _check_state(inference_state: Any) -> VideoInferenceState:
        if not isinstance(inference_state, VideoInferenceState):
            raise TypeError(
                f"inference_state must come from SAMV2VideoPredictor.initstate, got {type(inference_state).__name__}"
            )
        return inference_state

    @staticmethod
    def _check_frame_idx(state: VideoInferenceState, frame_idx: Any, name: str = "frame_idx") -> int:
        if isinstance(frame_idx, bool):
            raise TypeError(f"{name} must be an int, got {frame_idx!r}")
        try:
            frame_idx = operator.index(frame_idx)
        except TypeError:
            raise TypeError(f"{name} must be an int, got {type(frame_idx).__name__}") from None
        if not 0 <= frame_idx < state.num_frames:
            raise IndexError(
                f"{name}={frame_idx} is out of range for a video of {state.num_frames} frames "
                f"(valid: 0..{state.num_frames - 1})"
            )
        return frame_idx

    @staticmethod
    def _check_obj_id(obj_id: Any, allow_none: bool = False) -> None:
        try:
            hash(obj_id)
        except TypeError:
            raise TypeError(f"obj_id must be hashable (e.g. an int), got {type(obj_id).__name__}") from None
        if obj_id is None and not allow_none:
            raise TypeError("obj_id must not be None; use e.g. an int per object")

    @staticmethod
    def _existing_object(state: VideoInferenceState, obj_id: Hashable, action: str):
        SAMV2VideoPredictor._check_obj_id(obj_id, allow_none=True)
        obj = state.objects.get(obj_id)
        if obj is None:
            raise KeyError(f"cannot {action} object id {obj_id!r}: it does not exist (existing ids: {state.obj_ids})")
        return obj

    def _parse_points(
        self,
        state: VideoInferenceState,
        points: Optional[ArrayLike],
        labels: Optional[ArrayLike],
        box: Optional[ArrayLike],
        clear_old_points: bool,
        normalize_coords: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Clicks (box corners first) in model input pixels: ``(1 x N x 2 float32, 1 x N int32)`` on the device."""
        if (points is None) != (labels is None):
            missing = "labels" if labels is None else "points"
            raise ValueError(f"points and labels must be given together ({missing} is missing)")
        if points is None and box is None:
            raise ValueError("at least one of points (with labels) or box must be given")
        coords = np.zeros((0, 2))
        label_values = np.zeros((0,))
        if points is not None:
            coords = _as_float_array(points, "points")
            label_values = _as_float_array(labels, "labels")
            if coords.ndim == 3 and coords.shape[0] == 1:
                coords = coords[0]
            if label_values.ndim == 2 and label_values.shape[0] == 1:
                label_values = label_values[0]
            if coords.ndim != 2 or coords.shape[1] != 2:
                raise ValueError(f"points must be N x 2 (x, y) coordinates, got shape {coords.shape}")
            if label_values.shape != (coords.shape[0],):
                raise ValueError(
                    f"labels must have one label per point: {coords.shape[0]} points but labels of shape "
                    f"{label_values.shape}"
                )
            if not np.all(np.isin(label_values, VALID_LABELS)):
                raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {label_values.tolist()}")
            if coords.shape[0] == 0 and box is None:
                raise ValueError("points is empty and no box is given: nothing to segment from")
        width, height = state.video_width, state.video_height
        limit = (width, height) if normalize_coords else (1.0, 1.0)
        outside = (coords < 0).any(axis=1) | (coords[:, 0] > limit[0]) | (coords[:, 1] > limit[1])
        if outside.any():
            frame = f"the {width} x {height} (W x H) frame" if normalize_coords else "[0, 1] (normalize_coords=False)"
            raise ValueError(f"points lie outside {frame}: {coords[outside].tolist()}")
        # float32 like the official predictor, so that the normalisation below rounds identically
        point_tensor = torch.tensor(coords, dtype=torch.float32).reshape(1, -1, 2)
        label_tensor = torch.tensor(label_values, dtype=torch.int32).reshape(1, -1)
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "a box cannot be added without clearing old points (the box must come before any click): "
                    "use clear_old_points=True and send the clicks along with the box"
                )
            box_values = _as_float_array(box, "box")
            if box_values.size != 4:
                raise ValueError(f"box must be 4 values (x0, y0, x1, y1), got shape {box_values.shape}")
            x0, y0, x1, y1 = box_values.reshape(4).tolist()
            if x1 < x0 or y1 < y0:
                raise ValueError(f"box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {[x0, y0, x1, y1]}")
            box_tensor = torch.tensor(box_values, dtype=torch.float32).reshape(1, 2, 2)
            point_tensor = torch.cat([box_tensor, point_tensor], dim=1)
            label_tensor = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), label_tensor], dim=1)
        if normalize_coords:
            point_tensor = point_tensor / torch.tensor([width, height])
        point_tensor = point_tensor * self.model.image_size
        return point_tensor.to(state.device), label_tensor.to(state.device)

    def _parse_mask(self, state: VideoInferenceState, mask: ArrayLike) -> torch.Tensor:
        """A mask prompt as ``1 x 1 x S x S`` float on the device (resized like the official predictor)."""
        if isinstance(mask, torch.Tensor):
            if mask.device.type == "meta" or mask.is_complex():
                raise TypeError(f"mask must be a real-valued tensor with data, got {mask.dtype} on {mask.device}")
            mask_tensor = mask.detach()
            if mask_tensor.is_floating_point() and not torch.isfinite(mask_tensor).all():
                raise ValueError("mask must be finite")
        else:
            try:
                mask_tensor = torch.from_numpy(np.asarray(mask) != 0)
            except (TypeError, ValueError):
                raise TypeError(f"mask must be an H x W array or tensor, got {type(mask).__name__}") from None
        while mask_tensor.ndim > 2 and mask_tensor.shape[0] == 1:
            mask_tensor = mask_tensor[0]
        if mask_tensor.ndim != 2:
            raise ValueError(f"mask must be 2-D (H x W), got shape {tuple(mask_tensor.shape)}")
        height, width = mask_tensor.shape
        size = self.model.image_size
        video_h, video_w = state.video_height, state.video_width
        # same aspect ratio as the video, up to the rounding of a resized mask
        same_aspect = abs(height * video_w - width * video_h) <= max(video_h, video_w, height, width)
        if height == 0 or width == 0 or not (same_aspect or (height, width) == (size, size)):
            raise ValueError(
                f"mask has shape {height} x {width} but the video frames are {video_h} x {video_w} (H x W); give "
                f"the mask at the video resolution (or the same aspect ratio, or {size} x {size})"
            )
        mask_tensor = mask_tensor[None, None].float().to(state.device)
        if (height, width) != (size, size):
            mask_tensor = F.interpolate(
                mask_tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            mask_tensor = (mask_tensor >= 0.5).float()
        return mask_tensor

    # the official sam2 names
    init_state = initstate
    reset_state = resetstate
    add_new_points_or_box = addnewpointsorbox
    add_new_points = addnewpoints
    add_new_mask = addnewmask
    propagate_in_video = propagateinvideo
    remove_object = removeobject
    clear_all_prompts_in_frame = clearallpromptsinframe
