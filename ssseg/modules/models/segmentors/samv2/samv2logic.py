"""The host-side logic of SAM 2 around its networks, shared by the PyTorch model and the ONNX Runtime backend.

SAM 2 is four networks (image encoder; prompt encoder + mask decoder; memory attention; memory encoder) driven by
bookkeeping: which memories a frame attends to, which mask of several to keep, how a mask becomes a memory. The
bookkeeping lives here, in :class:`SAMV2Logic`; a subclass supplies the networks through four methods:

* :meth:`SAMV2Logic.forward_image`: images -> backbone features (``{"backbone_fpn", "vision_pos_enc"}``);
* :meth:`SAMV2Logic.decode_prompts`: prompt encoder + mask decoder (+ object pointer) -> :class:`DecoderOutput`;
* :meth:`SAMV2Logic.attend_memory`: current-frame tokens + a :class:`MemoryBank` -> memory-conditioned tokens;
* :meth:`SAMV2Logic.encode_memory`: features + mask -> a new memory and its position encoding.

:class:`~.samv2.SAMV2` implements them with its modules, :class:`~.onnxbackend.ONNXSAMV2` with exported graphs,
so that the predictors (image, automatic masks, video) run unchanged on either.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .memoryselection import recent_memory_frames, select_closest_cond_frames

# logit given to every pixel of an object predicted absent
NO_OBJ_SCORE = -1024.0


class SAMHeadsOutput(NamedTuple):
    """Outputs of the prompt encoder + mask decoder on ``B`` prompts (M = 3 with multimask output, else 1)."""

    low_res_multimasks: torch.Tensor  # B x M x 4h x 4w logits
    high_res_multimasks: torch.Tensor  # B x M x image_size x image_size logits
    ious: torch.Tensor  # B x M
    low_res_masks: torch.Tensor  # B x 1 x 4h x 4w, the best of the M masks
    high_res_masks: torch.Tensor  # B x 1 x image_size x image_size
    obj_ptr: torch.Tensor  # B x C
    object_score_logits: torch.Tensor  # B x 1


class DecoderOutput(NamedTuple):
    """What :meth:`SAMV2Logic.decode_prompts` returns for ``B`` prompt sets (M = 3 with multimask output, else 1)."""

    low_res_masks: torch.Tensor  # B x M x 4h x 4w raw decoder logits
    ious: torch.Tensor  # B x M predicted IoUs
    obj_ptr: torch.Tensor  # B x C object pointer of the best mask, no-object pointer mixed in
    object_score_logits: torch.Tensor  # B x 1


@dataclass
class MemoryBank:
    """The memories one frame attends to, as chosen by the host (``N`` frames, ``P`` object pointers).

    ``features`` / ``pos_enc``: ``N x B x mem_dim x h x w`` spatial memories (conditioning frames first) and their
    position encoding; ``tpos_index``: ``N`` rows of the temporal encoding table (``num_maskmem - t_pos - 1``);
    ``obj_ptrs``: ``P x B x C`` object pointers or None; ``obj_ptr_rel_pos``: ``P`` temporal distances divided by
    the largest possible one.
    """

    features: torch.Tensor
    pos_enc: torch.Tensor
    tpos_index: torch.Tensor
    obj_ptrs: Optional[torch.Tensor] = None
    obj_ptr_rel_pos: Optional[torch.Tensor] = None


@dataclass
class FrameOutput:
    """What the tracker keeps of one frame: its mask logits, object pointer and encoded memory."""

    pred_masks: torch.Tensor  # B x 1 x 4h x 4w low-resolution mask logits
    obj_ptr: torch.Tensor  # B x C
    object_score_logits: torch.Tensor  # B x 1
    pred_masks_high_res: Optional[torch.Tensor] = None  # B x 1 x S x S, dropped once the memory is encoded
    maskmem_features: Optional[torch.Tensor] = None  # B x mem_dim x h x w
    maskmem_pos_enc: Optional[torch.Tensor] = None  # B x mem_dim x h x w


class SAMV2Logic:
    """Prompt handling, mask choice, memory selection and the per-frame tracking step of SAM 2.

    Subclasses set the model options (the attributes of :class:`~.samv2.SAMV2`: ``image_size``, ``num_maskmem``,
    ``hidden_dim``, ``mem_dim``, ``mask_input_size``, ...), the small learned tensors used here (``no_mem_embed``,
    ``no_mem_pos_enc``, ``no_obj_ptr``, ``mask_downsample``) and the four network methods.
    """

    training: bool = False

    # ------------------------------------------------------------------ the networks (implemented by subclasses)
    def forward_image(self, images: torch.Tensor) -> Dict[str, Any]:
        """Encode a ``B x 3 x S x S`` normalised image batch: ``{"backbone_fpn": [...], "vision_pos_enc": [...]}``,
        lowest resolution last, the two high-resolution levels already projected for the decoder. (At least the
        last level's position encoding is given.)"""
        raise NotImplementedError

    def decode_prompts(
        self,
        image_embed: torch.Tensor,
        high_res_feats: Optional[List[torch.Tensor]],
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        mask_prompt: Optional[torch.Tensor],
        multimask_output: bool,
        repeat_image: bool = False,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder on ``B`` prompt sets.

        Args:
            image_embed: ``B x C x h x w`` (or ``1 x C x h x w`` with ``repeat_image``).
            high_res_feats: the two projected high-resolution levels, batched like ``image_embed``.
            points: ``(coords B x N x 2 in model-input pixels, labels B x N int32)``; boxes are corner points
                labelled 2 and 3.
            mask_prompt: ``B x 1 x 4h x 4w`` mask logits or None.
        """
        raise NotImplementedError

    def attend_memory(self, curr: torch.Tensor, curr_pos: torch.Tensor, bank: Optional[MemoryBank]) -> torch.Tensor:
        """Memory attention of ``HW x B x C`` current-frame tokens (and their position encoding) to ``bank`` with
        its temporal encodings; ``bank=None`` is the single learned "no memory" token. Returns ``HW x B x C``."""
        raise NotImplementedError

    def encode_memory(
        self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor, object_score_logits: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory encoder: ``B x C x h x w`` features and a ``B x 1 x S x S`` mask (probabilities) ->
        ``(B x mem_dim x h x w features, their position encoding)``, occlusion embedding added where
        ``object_score_logits <= 0``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ image features
    def prepare_backbone_features(
        self, backbone_out: Dict[str, Any]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[Tuple[int, int]]]:
        """Flatten the levels used by the heads to sequence-first ``HW x B x C`` tensors.

        Returns ``(vision_feats, vision_pos_embeds, feat_sizes)``, lowest resolution last (``vision_pos_embeds``
        may hold only the last levels: the memory attention reads the lowest resolution only).
        """
        feature_maps = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        pos_maps = backbone_out["vision_pos_enc"][-self.num_feature_levels :]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in feature_maps]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos = [x.flatten(2).permute(2, 0, 1) for x in pos_maps]
        return vision_feats, vision_pos, feat_sizes

    @staticmethod
    def seq_to_map(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``HW x B x C`` -> ``B x C x H x W``."""
        return x.permute(1, 2, 0).view(x.size(1), x.size(2), *size)

    def image_embedding(self, backbone_out: Dict[str, Any]) -> Dict[str, Any]:
        """The image predictor's view of backbone features: ``{"image_embed": B x C x h x w, "high_res_feats":
        [B x C/8 x 4h x 4w, B x C/4 x 2h x 2w]}``, the no-memory embedding added as on a first video frame."""
        vision_feats, _, feat_sizes = self.prepare_backbone_features(backbone_out)
        if self.directly_add_no_mem_embed:
            # the image path is a video frame without memory
            vision_feats[-1] = vision_feats[-1] + self.no_mem_embed
        feats = [self.seq_to_map(x, size) for x, size in zip(vision_feats, feat_sizes)]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def embed_image(self, images: torch.Tensor) -> Dict[str, Any]:
        """:meth:`image_embedding` of a ``B x 3 x S x S`` normalised image batch."""
        return self.image_embedding(self.forward_image(images))

    # ------------------------------------------------------------------ SAM heads
    def forward_sam_heads(
        self,
        backbone_features: torch.Tensor,
        point_inputs: Optional[Dict[str, torch.Tensor]] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        high_res_features: Optional[List[torch.Tensor]] = None,
        multimask_output: bool = False,
    ) -> SAMHeadsOutput:
        """Run the prompt encoder and mask decoder on ``B x C x h x w`` features (one prompt set per batch item).

        ``point_inputs`` holds ``point_coords`` (B x P x 2, pixels of the S x S model input) and ``point_labels``
        (B x P); ``mask_inputs`` is ``B x 1 x H x W`` (resized to the decoder's mask input size when needed).
        """
        batch = backbone_features.size(0)
        device = backbone_features.device
        if point_inputs is not None:
            coords, labels = point_inputs["point_coords"], point_inputs["point_labels"]
        else:
            # a single padding point (label -1) stands for "no points"
            coords = torch.zeros(batch, 1, 2, device=device)
            labels = -torch.ones(batch, 1, dtype=torch.int32, device=device)
        mask_prompt = None
        if mask_inputs is not None:
            mask_prompt = mask_inputs
            if mask_inputs.shape[-2:] != self.mask_input_size:
                mask_prompt = F.interpolate(
                    mask_inputs.float(),
                    size=self.mask_input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
        decoded = self.decode_prompts(
            backbone_features, high_res_features, (coords, labels), mask_prompt, multimask_output
        )
        low_res_multimasks, ious = decoded.low_res_masks, decoded.ious
        object_score_logits = decoded.object_score_logits
        if self.pred_obj_scores:
            # the memory sees a hard object / no-object decision, consistent with the predicted mask
            is_obj_appearing = object_score_logits > 0
            low_res_multimasks = torch.where(is_obj_appearing[:, None, None], low_res_multimasks, NO_OBJ_SCORE)
        low_res_multimasks = low_res_multimasks.float()
        high_res_multimasks = F.interpolate(
            low_res_multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(batch, device=device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks
        return SAMHeadsOutput(
            low_res_multimasks,
            high_res_multimasks,
            ious,
            low_res_masks,
            high_res_masks,
            decoded.obj_ptr,
            object_score_logits,
        )

    def mix_no_obj_ptr(self, obj_ptr: torch.Tensor, appearing: torch.Tensor) -> torch.Tensor:
        """Blend the learned no-object pointer in where the object is absent (``appearing`` is B x 1 in [0, 1])."""
        if self.fixed_no_obj_ptr:
            obj_ptr = appearing * obj_ptr
        return obj_ptr + (1 - appearing) * self.no_obj_ptr

    def use_mask_as_output(
        self,
        backbone_features: torch.Tensor,
        high_res_features: Optional[List[torch.Tensor]],
        mask_inputs: torch.Tensor,
    ) -> SAMHeadsOutput:
        """Turn a binary ``B x 1 x S x S`` mask input directly into output logits (+-10), skipping the decoder."""
        out_scale, out_bias = 20.0, -10.0
        mask_float = mask_inputs.float()
        high_res_masks = mask_float * out_scale + out_bias
        low_res_masks = F.interpolate(
            high_res_masks,
            size=(high_res_masks.size(-2) // 4, high_res_masks.size(-1) // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        ious = mask_inputs.new_ones(mask_inputs.size(0), 1).float()
        if self.use_obj_ptrs_in_encoder:
            # the decoder still produces a pointer from the (downsampled) mask
            obj_ptr = self.forward_sam_heads(
                backbone_features, mask_inputs=self.mask_downsample(mask_float), high_res_features=high_res_features
            ).obj_ptr
        else:
            obj_ptr = torch.zeros(mask_inputs.size(0), self.hidden_dim, device=mask_inputs.device)
        # the mask itself, not the decoder's object score, decides whether the object is present
        appearing = torch.any(mask_float.flatten(1) > 0.0, dim=1)[..., None].float()
        object_score_logits = out_scale * appearing + out_bias
        if self.pred_obj_scores:
            obj_ptr = self.mix_no_obj_ptr(obj_ptr, appearing)
        return SAMHeadsOutput(
            low_res_masks, high_res_masks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits
        )

    # ------------------------------------------------------------------ memory
    def memory_frames(
        self,
        frame_idx: int,
        selected_cond: Dict[int, FrameOutput],
        unselected_cond: Dict[int, FrameOutput],
        non_cond: Dict[int, FrameOutput],
        reverse: bool,
    ) -> List[Tuple[int, FrameOutput]]:
        """The ``(t_pos, output)`` memories a frame attends to: conditioning frames at ``t_pos = 0``, then up to
        ``num_maskmem - 1`` previous frames (every ``memory_temporal_stride_for_eval``-th, plus the last one)."""
        stride = 1 if self.training else self.memory_temporal_stride_for_eval
        frames = [(0, out) for out in selected_cond.values()]
        for t_pos, prev in recent_memory_frames(frame_idx, self.num_maskmem, stride, reverse):
            # a conditioning frame left out of the selection still serves as a recent memory
            out = non_cond.get(prev, unselected_cond.get(prev))
            if out is not None:
                frames.append((t_pos, out))
        return frames

    def object_pointers(
        self,
        frame_idx: int,
        selected_cond: Dict[int, FrameOutput],
        unselected_cond: Dict[int, FrameOutput],
        non_cond: Dict[int, FrameOutput],
        num_frames: int,
        reverse: bool,
    ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Object pointers of other frames: ``(pointers N x B x C, temporal distances N / the largest possible)``."""
        max_ptrs = min(num_frames, self.max_obj_ptrs_in_encoder)
        cond = selected_cond
        if not self.training and self.only_obj_ptrs_in_the_past_for_eval:
            cond = {t: o for t, o in selected_cond.items() if (t >= frame_idx if reverse else t <= frame_idx)}
        sign = -1 if reverse else 1
        positions, ptrs = [], []
        for t, out in cond.items():
            positions.append((frame_idx - t) * sign if self.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t))
            ptrs.append(out.obj_ptr)
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            out = non_cond.get(t, unselected_cond.get(t))
            if out is not None:
                positions.append(t_diff)
                ptrs.append(out.obj_ptr)
        if not ptrs:
            return None
        obj_ptrs = torch.stack(ptrs, dim=0)  # N x B x C
        return obj_ptrs, torch.tensor(positions, device=obj_ptrs.device) / (max_ptrs - 1)

    def condition_on_memory(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        vision_feats: List[torch.Tensor],
        vision_pos: List[torch.Tensor],
        feat_sizes: List[Tuple[int, int]],
        cond_outputs: Dict[int, FrameOutput],
        non_cond_outputs: Dict[int, FrameOutput],
        num_frames: int,
        reverse: bool = False,
    ) -> torch.Tensor:
        """Fuse the lowest-resolution features of the current frame with the memory bank: ``B x C x h x w``."""
        feats = vision_feats[-1]
        size = feat_sizes[-1]
        if self.num_maskmem == 0:  # plain SAM on images: no memory at all
            return self.seq_to_map(feats, size)
        bank = None
        if is_init_cond_frame:
            if self.directly_add_no_mem_embed:
                return self.seq_to_map(feats + self.no_mem_embed, size)
        else:
            if not cond_outputs:
                raise RuntimeError(f"frame {frame_idx} is tracked but no conditioning frame has been added")
            selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs, self.max_cond_frames_in_attn)
            memories, memory_pos, tpos_index = [], [], []
            for t_pos, out in self.memory_frames(frame_idx, selected, unselected, non_cond_outputs, reverse):
                # memories may be stored offloaded and/or in lower precision (bfloat16, as the official predictor does)
                memories.append(out.maskmem_features.to(feats.device, dtype=feats.dtype, non_blocking=True))
                memory_pos.append(out.maskmem_pos_enc.to(feats.device).expand_as(memories[-1]))
                tpos_index.append(self.num_maskmem - t_pos - 1)
            bank = MemoryBank(
                torch.stack(memories), torch.stack(memory_pos), torch.tensor(tpos_index, device=feats.device)
            )
            if self.use_obj_ptrs_in_encoder:
                pointers = self.object_pointers(frame_idx, selected, unselected, non_cond_outputs, num_frames, reverse)
                if pointers is not None:
                    bank.obj_ptrs, bank.obj_ptr_rel_pos = pointers
        fused = self.attend_memory(vision_feats[-1], vision_pos[-1], bank)
        return self.seq_to_map(fused, size)

    def encode_new_memory(
        self,
        vision_feats: List[torch.Tensor],
        feat_sizes: List[Tuple[int, int]],
        pred_masks_high_res: torch.Tensor,
        object_score_logits: torch.Tensor,
        is_mask_from_pts: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode a frame and its ``B x 1 x S x S`` mask logits into ``(maskmem_features, maskmem_pos_enc)``."""
        pix_feat = self.seq_to_map(vision_feats[-1], feat_sizes[-1])
        if self.non_overlap_masks_for_mem_enc and not self.training:
            pred_masks_high_res = self.apply_non_overlapping_constraints(pred_masks_high_res)
        if self.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts and not self.training:
            # encode exactly the mask the user sees after clicking
            mask_for_mem = (pred_masks_high_res > 0).float()
        else:
            mask_for_mem = torch.sigmoid(pred_masks_high_res)
        if self.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * self.sigmoid_scale_for_mem_enc
        if self.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + self.sigmoid_bias_for_mem_enc
        return self.encode_memory(pix_feat, mask_for_mem, object_score_logits)

    def use_multimask(self, is_init_cond_frame: bool, point_inputs: Optional[Dict[str, torch.Tensor]]) -> bool:
        """Three candidate masks only for the first click(s) (and while tracking if configured)."""
        num_pts = 0 if point_inputs is None else point_inputs["point_labels"].size(1)
        return (
            self.multimask_output_in_sam
            and (is_init_cond_frame or self.multimask_output_for_tracking)
            and self.multimask_min_pt_num <= num_pts <= self.multimask_max_pt_num
        )

    @staticmethod
    def apply_non_overlapping_constraints(pred_masks: torch.Tensor) -> torch.Tensor:
        """Keep, at each pixel, only the highest-scoring object of ``N x 1 x H x W`` logits (others <= -10)."""
        if pred_masks.size(0) == 1:
            return pred_masks
        best = torch.argmax(pred_masks, dim=0, keepdim=True)
        keep = best == torch.arange(pred_masks.size(0), device=pred_masks.device)[:, None, None, None]
        return torch.where(keep, pred_masks, torch.clamp(pred_masks, max=-10.0))

    def track_step(
        self,
        frame_idx: int,
        is_init_cond_frame: bool,
        vision_feats: List[torch.Tensor],
        vision_pos: List[torch.Tensor],
        feat_sizes: List[Tuple[int, int]],
        point_inputs: Optional[Dict[str, torch.Tensor]],
        mask_inputs: Optional[torch.Tensor],
        cond_outputs: Dict[int, FrameOutput],
        non_cond_outputs: Dict[int, FrameOutput],
        num_frames: int,
        track_in_reverse: bool = False,
        run_mem_encoder: bool = True,
        prev_sam_mask_logits: Optional[torch.Tensor] = None,
    ) -> FrameOutput:
        """Segment one frame for a batch of objects from its prompts and/or the memory bank, then encode memory.

        ``vision_feats``/``vision_pos`` are the sequence-first features of :meth:`prepare_backbone_features`.
        """
        high_res_features = None
        if len(vision_feats) > 1:
            high_res_features = [self.seq_to_map(x, s) for x, s in zip(vision_feats[:-1], feat_sizes[:-1])]
        if mask_inputs is not None and self.use_mask_input_as_output_without_sam:
            # the mask input is taken as ground truth
            pix_feat = self.seq_to_map(vision_feats[-1], feat_sizes[-1])
            heads = self.use_mask_as_output(pix_feat, high_res_features, mask_inputs)
        else:
            pix_feat = self.condition_on_memory(
                frame_idx,
                is_init_cond_frame,
                vision_feats,
                vision_pos,
                feat_sizes,
                cond_outputs,
                non_cond_outputs,
                num_frames,
                track_in_reverse,
            )
            if prev_sam_mask_logits is not None:
                # earlier logits of this frame refine the new clicks (interactive correction)
                if point_inputs is None or mask_inputs is not None:
                    raise ValueError("prev_sam_mask_logits is only used together with point inputs and no mask input")
                mask_inputs = prev_sam_mask_logits
            heads = self.forward_sam_heads(
                pix_feat,
                point_inputs=point_inputs,
                mask_inputs=mask_inputs,
                high_res_features=high_res_features,
                multimask_output=self.use_multimask(is_init_cond_frame, point_inputs),
            )
        out = FrameOutput(
            pred_masks=heads.low_res_masks,
            obj_ptr=heads.obj_ptr,
            object_score_logits=heads.object_score_logits,
            pred_masks_high_res=heads.high_res_masks,
        )
        if run_mem_encoder and self.num_maskmem > 0:
            out.maskmem_features, out.maskmem_pos_enc = self.encode_new_memory(
                vision_feats, feat_sizes, heads.high_res_masks, heads.object_score_logits, point_inputs is not None
            )
        return out
