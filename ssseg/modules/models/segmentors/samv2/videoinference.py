"""Per-frame machinery of the SAM 2 video predictor: features, tracking steps, memory, consolidation, propagation.

This reproduces the official ``SAM2VideoPredictor`` (the 2024-12 version that tracks every object independently
while sharing the image features of a frame) step by step:

* ``_get_image_feature``: the backbone output of one frame is cached and expanded to the number of objects;
* ``_run_single_frame_inference``: a ``track_step``, memories stored in bfloat16 on the storage device, mask
  logits hole-filled, the memory position encoding kept once;
* ``_consolidate_temp_output_across_obj`` / ``_get_orig_video_res_output``: the per-object outputs of a frame
  gathered at the video resolution, non-overlap applied on request;
* ``propagate_in_video_preflight``: prompts' memories encoded (from the hole-filled logits, binarised) right before
  tracking;
* ``_clear_obj_non_cond_mem_around_input`` (called by the official code but missing from sam2 1.1.0, so its
  ``clear_non_cond_mem_around_input=True`` raises AttributeError; the per-object version of upstream is used here).

Two things differ in how, not in what. Objects whose memory banks have the same layout on a frame (the same
conditioning frames and the same tracked neighbours, which is the usual case) go through memory attention, the mask
decoder and the memory encoder as one batch instead of one by one. And tracked outputs that memory attention can no
longer reach leave memory (see :mod:`.videostate`).
"""

from collections.abc import Mapping
from typing import Dict, Hashable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .ops import fill_holes_in_mask_scores
from .samv2 import NO_OBJ_SCORE, SAMV2, FrameOutput
from .videostate import NO_MASKS, CachedFeatures, NonCondOutputs, ObjectState, VideoInferenceState, memory_only

Features = Tuple[List[torch.Tensor], List[torch.Tensor], List[Tuple[int, int]]]


def concat_memories(outs: Sequence[FrameOutput], dtype: Optional[torch.dtype] = None) -> FrameOutput:
    """Batch what memory attention reads of per-object outputs of one frame, the memories cast to ``dtype``.

    The cast matters: memories are stored in bfloat16, and when a frame has no object pointer to attend to (an
    object tracked before its first prompt with SAM 2.1) nothing else would bring the memory back to float32.
    """
    if len(outs) == 1:
        return memory_only(outs[0], dtype)
    features = None
    if outs[0].maskmem_features is not None:
        features = torch.cat([o.maskmem_features for o in outs], dim=0)
        if dtype is not None:
            features = features.to(dtype)
    pos = outs[0].maskmem_pos_enc
    if pos is not None:
        pos = pos.expand(len(outs), -1, -1, -1)
    return FrameOutput(
        pred_masks=NO_MASKS,
        obj_ptr=torch.cat([o.obj_ptr for o in outs], dim=0),
        object_score_logits=torch.cat([o.object_score_logits for o in outs], dim=0),
        maskmem_features=features,
        maskmem_pos_enc=pos,
    )


class MemoryView(Mapping):
    """The tracked (non-conditioning) outputs of a group of objects around one frame, as ``track_step`` reads them.

    ``track_step`` only looks up frames within ``radius`` of ``frame_idx``; entries are fetched (from the spill file
    if needed) and batched across the group on first access. A lookup beyond the radius of a frame that does have
    an output means the radius is wrong, and raises instead of silently dropping a memory.
    """

    def __init__(
        self, stores: Sequence[NonCondOutputs], frame_idx: int, radius: int, dtype: Optional[torch.dtype] = None
    ) -> None:
        self._stores = stores
        self._dtype = dtype
        self._frame_idx = frame_idx
        self._radius = radius
        self._keys = [t for t in range(frame_idx - radius, frame_idx + radius + 1) if t in stores[0]]
        self._built: Dict[int, FrameOutput] = {}

    def __getitem__(self, frame_idx: int) -> FrameOutput:
        built = self._built.get(frame_idx)
        if built is not None:
            return built
        if frame_idx not in self._stores[0]:
            raise KeyError(frame_idx)
        if abs(frame_idx - self._frame_idx) > self._radius:
            raise RuntimeError(
                f"memory of frame {frame_idx} requested for frame {self._frame_idx}, beyond the context radius "
                f"{self._radius}: the predictor's context radius does not match the model's memory options"
            )
        outs = [store.get_memory(frame_idx) for store in self._stores]
        built = concat_memories(outs, self._dtype)
        self._built[frame_idx] = built
        return built

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class VideoTracker:
    """The tracking machinery shared by the public video predictor; holds the model and the options it needs.

    Attributes set by :class:`~.videopredictor.SAMV2VideoPredictor`: ``model``, ``fill_hole_area``,
    ``non_overlap_masks``, ``clear_non_cond_mem_around_input``, ``add_all_frames_to_correct_as_cond``,
    ``maskmem_dtype`` and ``batch_objects``.
    """

    model: SAMV2
    fill_hole_area: float
    non_overlap_masks: bool
    clear_non_cond_mem_around_input: bool
    add_all_frames_to_correct_as_cond: bool
    maskmem_dtype: torch.dtype
    batch_objects: bool

    @property
    def device(self) -> torch.device:
        return self.model.device

    def context_radius(self) -> int:
        """How far (in frames) memory attention reaches: the tracked memories and the object pointers it reads."""
        model = self.model
        stride = max(1, model.memory_temporal_stride_for_eval)
        memories = (model.num_maskmem - 1) * stride + 1 if model.num_maskmem > 0 else 0
        pointers = model.max_obj_ptrs_in_encoder if model.use_obj_ptrs_in_encoder else 0
        return max(memories, pointers, 1)

    # ------------------------------------------------------------------------------------------------ features
    def _image_features(self, state: VideoInferenceState, frame_idx: int, batch: int) -> Features:
        """Sequence-first features of a frame for ``batch`` objects (computed once per frame, then expanded)."""
        cached = state.cached_features
        if cached is None or cached.frame_idx != frame_idx:
            # one frame is cached, as in the official predictor; drop the old one first to keep a single copy
            state.cached_features = None
            image = state.frames[frame_idx].to(state.device).float().unsqueeze(0)
            cached = CachedFeatures(frame_idx, self.model.forward_image(image))
            state.cached_features = cached
        backbone_out = cached.backbone_out
        expanded = {
            "backbone_fpn": [x.expand(batch, -1, -1, -1) for x in backbone_out["backbone_fpn"]],
            "vision_pos_enc": [x.expand(batch, -1, -1, -1) for x in backbone_out["vision_pos_enc"]],
        }
        return self.model.prepare_backbone_features(expanded)

    def _shared_pos_enc(self, state: VideoInferenceState, pos: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The memory position encoding does not depend on the frame or object: keep one 1 x C x h x w copy."""
        if pos is None:
            return None
        if state.maskmem_pos_enc is None:
            state.maskmem_pos_enc = pos[0:1].clone()
        return state.maskmem_pos_enc

    # ------------------------------------------------------------------------------------------------ one frame
    def _memory_bank(
        self,
        state: VideoInferenceState,
        objs: Sequence[ObjectState],
        frame_idx: int,
        dtype: torch.dtype,
        cond_cache: Optional[Dict[Tuple[Tuple[Hashable, ...], int], FrameOutput]] = None,
    ) -> Tuple[Dict[int, FrameOutput], MemoryView]:
        """Conditioning outputs and a view of the tracked outputs of a group of objects with the same layout,
        batched across the group with the memories in the compute ``dtype``."""
        view = MemoryView([o.non_cond_outputs for o in objs], frame_idx, self.context_radius(), dtype)
        ids = tuple(o.obj_id for o in objs)
        cond = {}
        for t in objs[0].cond_outputs:  # the first object's insertion order, which fixes the token order
            batched = None if cond_cache is None else cond_cache.get((ids, t))
            if batched is None:
                batched = concat_memories([o.cond_outputs[t] for o in objs], dtype)
                if cond_cache is not None:
                    # conditioning outputs do not change during a propagation
                    cond_cache[(ids, t)] = batched
            cond[t] = batched
        return cond, view

    def _run_frame(
        self,
        state: VideoInferenceState,
        objs: Sequence[ObjectState],
        frame_idx: int,
        is_init_cond_frame: bool,
        reverse: bool,
        run_mem_encoder: bool,
        point_inputs: Optional[Dict[str, torch.Tensor]] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        prev_sam_mask_logits: Optional[torch.Tensor] = None,
        cond_cache: Optional[Dict] = None,
    ) -> Tuple[List[FrameOutput], torch.Tensor]:
        """One tracking step of ``B = len(objs)`` objects on one frame.

        Returns the per-object compact outputs (to store) and the ``B x 1 x S/4 x S/4`` hole-filled logits on the
        compute device.
        """
        batch = len(objs)
        vision_feats, vision_pos, feat_sizes = self._image_features(state, frame_idx, batch)
        if is_init_cond_frame:
            cond, non_cond = {}, {}
        else:
            cond, non_cond = self._memory_bank(state, objs, frame_idx, vision_feats[-1].dtype, cond_cache)
        out = self.model.track_step(
            frame_idx=frame_idx,
            is_init_cond_frame=is_init_cond_frame,
            vision_feats=vision_feats,
            vision_pos=vision_pos,
            feat_sizes=feat_sizes,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            cond_outputs=cond,
            non_cond_outputs=non_cond,
            num_frames=state.num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=run_mem_encoder,
            prev_sam_mask_logits=prev_sam_mask_logits,
        )
        memory = out.maskmem_features
        if memory is not None:
            # stored in reduced precision like the official predictor (the default, bfloat16, matches it)
            memory = memory.to(self.maskmem_dtype).to(state.storage_device, non_blocking=True)
        pred_masks_dev = out.pred_masks
        if self.fill_hole_area > 0:
            pred_masks_dev = fill_holes_in_mask_scores(pred_masks_dev, self.fill_hole_area)
        pred_masks = pred_masks_dev.to(state.storage_device, non_blocking=True)
        pos = self._shared_pos_enc(state, out.maskmem_pos_enc)
        outs = [
            FrameOutput(
                pred_masks=pred_masks[i : i + 1],
                obj_ptr=out.obj_ptr[i : i + 1],  # small: stays on the compute device
                object_score_logits=out.object_score_logits[i : i + 1],
                maskmem_features=None if memory is None else memory[i : i + 1],
                maskmem_pos_enc=pos,
            )
            for i in range(batch)
        ]
        return outs, pred_masks_dev

    def _encode_memory(
        self,
        state: VideoInferenceState,
        frame_idx: int,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        is_mask_from_pts: bool,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Memory of ``B x 1 x S x S`` mask logits on a frame, in the storage dtype and device."""
        vision_feats, _, feat_sizes = self._image_features(state, frame_idx, high_res_masks.size(0))
        memory, pos = self.model.encode_new_memory(
            vision_feats, feat_sizes, high_res_masks, object_score_logits, is_mask_from_pts
        )
        memory = memory.to(self.maskmem_dtype).to(state.storage_device, non_blocking=True)
        return memory, self._shared_pos_enc(state, pos)

    # ------------------------------------------------------------------------------------------------ outputs
    def _video_res_masks(self, state: VideoInferenceState, masks: torch.Tensor) -> torch.Tensor:
        """``N x 1 x h x w`` logits at the video resolution on the compute device, non-overlapping on request."""
        masks = masks.to(state.device, non_blocking=True)
        size = (state.video_height, state.video_width)
        if masks.shape[-2:] != size:
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        if self.non_overlap_masks:
            masks = SAMV2.apply_non_overlapping_constraints(masks)
        return masks

    def _consolidated_masks(self, state: VideoInferenceState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """Every object's latest logits on a frame at the video resolution (``NO_OBJ_SCORE`` where it has none)."""
        size = (state.video_height, state.video_width)
        masks = torch.full(
            (state.num_objects, 1, *size), NO_OBJ_SCORE, dtype=torch.float32, device=state.storage_device
        )
        for idx, obj in enumerate(state.objects.values()):
            out = obj.latest_output(frame_idx, is_cond)
            if out is None:
                continue
            obj_masks = out.pred_masks
            if obj_masks.shape[-2:] != size:
                obj_masks = F.interpolate(obj_masks, size=size, mode="bilinear", align_corners=False)
            masks[idx : idx + 1] = obj_masks
        return self._video_res_masks(state, masks)

    # ------------------------------------------------------------------------------------------------ prompts
    def _run_prompt(
        self,
        state: VideoInferenceState,
        obj: ObjectState,
        frame_idx: int,
        point_inputs: Optional[Dict[str, torch.Tensor]],
        mask_inputs: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Segment one object on a prompted frame; returns all objects' logits on it at the video resolution.

        A frame the object was not tracked on is segmented from the prompt alone; on a tracked frame the prompt
        corrects the tracked mask (memories, and for clicks the previous logits, are used). The memory is encoded
        later, when propagation starts, once every object's prompts are final.
        """
        is_init_cond_frame = frame_idx not in obj.frames_tracked
        reverse = False if is_init_cond_frame else obj.frames_tracked[frame_idx]
        # a corrected frame stays a conditioning frame only with add_all_frames_to_correct_as_cond
        is_cond = is_init_cond_frame or self.add_all_frames_to_correct_as_cond
        prev_logits = None
        if point_inputs is not None:
            prev_out = obj.latest_output(frame_idx, is_cond)
            if prev_out is not None:
                # clamped to avoid rare numerical issues with very confident logits
                prev_logits = torch.clamp(prev_out.pred_masks.to(state.device, non_blocking=True), -32.0, 32.0)
        outs, _ = self._run_frame(
            state,
            [obj],
            frame_idx,
            is_init_cond_frame,
            reverse,
            run_mem_encoder=False,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            prev_sam_mask_logits=prev_logits,
        )
        obj.temp_outputs(is_cond)[frame_idx] = outs[0]
        return self._consolidated_masks(state, frame_idx, is_cond)

    def _clear_prompts(self, state: VideoInferenceState, obj: ObjectState, frame_idx: int) -> None:
        """Drop an object's prompts and prompt outputs on a frame; a conditioning output becomes a tracked one."""
        obj.point_inputs.pop(frame_idx, None)
        obj.mask_inputs.pop(frame_idx, None)
        obj.temp_cond_outputs.pop(frame_idx, None)
        obj.temp_non_cond_outputs.pop(frame_idx, None)
        out = obj.cond_outputs.pop(frame_idx, None)
        if out is not None:
            obj.non_cond_outputs[frame_idx] = out
            # the next prompt on this frame starts from scratch again
            obj.frames_tracked.pop(frame_idx, None)

    def _clear_non_cond_around(self, state: VideoInferenceState, obj: ObjectState, frame_idx: int) -> None:
        """Forget an object's tracked memories within ``stride * num_maskmem`` frames of a prompted frame, which may
        hold an outdated appearance of the object."""
        reach = self.model.memory_temporal_stride_for_eval * self.model.num_maskmem
        for t in range(frame_idx - reach, frame_idx + reach + 1):
            obj.non_cond_outputs.discard(t)

    # ------------------------------------------------------------------------------------------------ tracking
    def _preflight(self, state: VideoInferenceState) -> None:
        """Encode the memories of new prompt outputs and move them into the memory bank (official order)."""
        image_size = self.model.image_size
        for obj in state.objects.values():
            for is_cond in (False, True):
                temp = obj.temp_outputs(is_cond)
                for frame_idx, out in temp.items():
                    if out.maskmem_features is None:
                        high_res = F.interpolate(
                            out.pred_masks.to(state.device),
                            size=(image_size, image_size),
                            mode="bilinear",
                            align_corners=False,
                        )
                        out.maskmem_features, out.maskmem_pos_enc = self._encode_memory(
                            state, frame_idx, high_res, out.object_score_logits, is_mask_from_pts=True
                        )
                    if is_cond:
                        obj.cond_outputs[frame_idx] = out
                    else:
                        obj.non_cond_outputs[frame_idx] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_non_cond_around(state, obj, frame_idx)
                temp.clear()
            if not obj.cond_outputs:
                raise RuntimeError(
                    f"no input points or masks are provided for object id {obj.obj_id!r}; please add inputs first"
                )
            for frame_idx in obj.cond_outputs:
                obj.non_cond_outputs.discard(frame_idx)

    def _track_groups(self, objs: Sequence[ObjectState], indices: Sequence[int], frame_idx: int) -> List[List[int]]:
        """Split the objects to track on a frame into groups whose memory banks line up token for token."""
        if not self.batch_objects:
            return [[i] for i in indices]
        radius = self.context_radius()
        groups: Dict[Tuple, List[int]] = {}
        for i in indices:
            groups.setdefault(self._memory_layout(objs[i], frame_idx, radius), []).append(i)
        return list(groups.values())

    def _memory_layout(self, obj: ObjectState, frame_idx: int, radius: int) -> Tuple:
        """What decides an object's batch on a frame: its conditioning frames and its tracked neighbours."""
        neighbours = tuple(t for t in range(frame_idx - radius, frame_idx + radius + 1) if t in obj.non_cond_outputs)
        return tuple(obj.cond_outputs), neighbours

    def _propagate(
        self, state: VideoInferenceState, processing_order: Sequence[int], reverse: bool
    ) -> Iterator[Tuple[int, List[Hashable], torch.Tensor]]:
        """Track every object over ``processing_order``; yields ``(frame_idx, obj_ids, N x 1 x H x W logits)``."""
        self._preflight(state)
        objs = state.object_list()
        obj_ids = state.obj_ids
        cond_cache: Dict = {}
        for frame_idx in processing_order:
            pred_masks: List[Optional[torch.Tensor]] = [None] * len(objs)
            to_track = []
            for idx, obj in enumerate(objs):
                cond_out = obj.cond_outputs.get(frame_idx)
                if cond_out is None:
                    to_track.append(idx)
                    continue
                # prompted frames keep their prompt outputs
                pred_masks[idx] = cond_out.pred_masks.to(state.device, non_blocking=True)
                if self.clear_non_cond_mem_around_input:
                    self._clear_non_cond_around(state, obj, frame_idx)
            for group in self._track_groups(objs, to_track, frame_idx):
                outs, group_masks = self._run_frame(
                    state,
                    [objs[i] for i in group],
                    frame_idx,
                    is_init_cond_frame=False,
                    reverse=reverse,
                    run_mem_encoder=True,
                    cond_cache=cond_cache,
                )
                for k, idx in enumerate(group):
                    objs[idx].non_cond_outputs[frame_idx] = outs[k]
                    pred_masks[idx] = group_masks[k : k + 1]
            for obj in objs:
                obj.frames_tracked[frame_idx] = reverse
            state.release_far_from(frame_idx)
            all_masks = pred_masks[0] if len(pred_masks) == 1 else torch.cat(pred_masks, dim=0)
            yield frame_idx, obj_ids, self._video_res_masks(state, all_masks)
