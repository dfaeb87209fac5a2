"""The SAM 2 network: image encoder, prompt encoder + mask decoder, memory encoder and memory attention.

The predictors (image, automatic masks, video) wrap an instance of :class:`SAMV2`; this module only holds the
network and the per-frame tracking step. Attribute names follow the official checkpoints so that they load with
``strict=True``.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones import BuildBackbone
from .common import MLP
from .fpnneck import FPNNeck, ImageEncoder
from .maskdecoder import MaskDecoder
from .memoryattention import MemoryAttention
from .memoryencoder import MemoryEncoder
from .memoryselection import recent_memory_frames, select_closest_cond_frames
from .positionencoding import get_1d_sine_pe
from .promptencoder import PromptEncoder
from .twowaytransformer import TwoWayTransformer

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


@dataclass
class FrameOutput:
    """What the tracker keeps of one frame: its mask logits, object pointer and encoded memory."""

    pred_masks: torch.Tensor  # B x 1 x 4h x 4w low-resolution mask logits
    obj_ptr: torch.Tensor  # B x C
    object_score_logits: torch.Tensor  # B x 1
    pred_masks_high_res: Optional[torch.Tensor] = None  # B x 1 x S x S, dropped once the memory is encoded
    maskmem_features: Optional[torch.Tensor] = None  # B x mem_dim x h x w
    maskmem_pos_enc: Optional[torch.Tensor] = None  # B x mem_dim x h x w


class SAMV2(nn.Module):
    """Segment Anything Model 2.

    ``backbone`` is a backbone-registry config (the Hiera trunk); ``neck``, ``memory_attention`` and
    ``memory_encoder`` are the keyword arguments of their modules. The remaining options keep the names and meaning
    of the official yaml configs.
    """

    def __init__(
        self,
        backbone: Dict[str, Any],
        neck: Dict[str, Any],
        memory_attention: Dict[str, Any],
        memory_encoder: Dict[str, Any],
        scalp: int = 1,
        num_maskmem: int = 7,
        image_size: int = 1024,
        backbone_stride: int = 16,
        sigmoid_scale_for_mem_enc: float = 1.0,
        sigmoid_bias_for_mem_enc: float = 0.0,
        binarize_mask_from_pts_for_mem_enc: bool = False,
        use_mask_input_as_output_without_sam: bool = False,
        max_cond_frames_in_attn: int = -1,
        directly_add_no_mem_embed: bool = False,
        use_high_res_features_in_sam: bool = False,
        multimask_output_in_sam: bool = False,
        multimask_min_pt_num: int = 1,
        multimask_max_pt_num: int = 1,
        multimask_output_for_tracking: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        memory_temporal_stride_for_eval: int = 1,
        non_overlap_masks_for_mem_enc: bool = False,
        use_obj_ptrs_in_encoder: bool = False,
        max_obj_ptrs_in_encoder: int = 16,
        add_tpos_enc_to_obj_ptrs: bool = True,
        proj_tpos_enc_in_obj_ptrs: bool = False,
        use_signed_tpos_enc_to_obj_ptrs: bool = False,
        only_obj_ptrs_in_the_past_for_eval: bool = False,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        fixed_no_obj_ptr: bool = False,
        soft_no_obj_ptr: bool = False,
        use_mlp_for_obj_ptr_proj: bool = False,
        no_obj_embed_spatial: bool = False,
        sam_mask_decoder_extra_args: Optional[Dict[str, Any]] = None,
        compile_image_encoder: bool = False,
    ) -> None:
        super().__init__()
        if image_size % backbone_stride != 0:
            raise ValueError(f"image_size={image_size} must be a multiple of backbone_stride={backbone_stride}")
        if proj_tpos_enc_in_obj_ptrs and not add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        if fixed_no_obj_ptr and not (pred_obj_scores and use_obj_ptrs_in_encoder):
            raise ValueError("fixed_no_obj_ptr needs pred_obj_scores and use_obj_ptrs_in_encoder")

        self.image_encoder = ImageEncoder(trunk=BuildBackbone(backbone), neck=FPNNeck(**neck), scalp=scalp)
        self.memory_attention = MemoryAttention(**memory_attention)
        self.memory_encoder = MemoryEncoder(**memory_encoder)
        self.hidden_dim = self.image_encoder.neck.d_model
        self.mem_dim = self.memory_encoder.out_proj.weight.shape[0]

        self.image_size = image_size
        self.backbone_stride = backbone_stride
        self.num_maskmem = num_maskmem
        self.use_high_res_features_in_sam = use_high_res_features_in_sam
        self.num_feature_levels = 3 if use_high_res_features_in_sam else 1
        self.sigmoid_scale_for_mem_enc = sigmoid_scale_for_mem_enc
        self.sigmoid_bias_for_mem_enc = sigmoid_bias_for_mem_enc
        self.binarize_mask_from_pts_for_mem_enc = binarize_mask_from_pts_for_mem_enc
        self.use_mask_input_as_output_without_sam = use_mask_input_as_output_without_sam
        self.max_cond_frames_in_attn = max_cond_frames_in_attn
        self.directly_add_no_mem_embed = directly_add_no_mem_embed
        self.multimask_output_in_sam = multimask_output_in_sam
        self.multimask_min_pt_num = multimask_min_pt_num
        self.multimask_max_pt_num = multimask_max_pt_num
        self.multimask_output_for_tracking = multimask_output_for_tracking
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.iou_prediction_use_sigmoid = iou_prediction_use_sigmoid
        self.memory_temporal_stride_for_eval = memory_temporal_stride_for_eval
        self.non_overlap_masks_for_mem_enc = non_overlap_masks_for_mem_enc
        self.use_obj_ptrs_in_encoder = use_obj_ptrs_in_encoder
        self.max_obj_ptrs_in_encoder = max_obj_ptrs_in_encoder
        self.add_tpos_enc_to_obj_ptrs = add_tpos_enc_to_obj_ptrs
        self.proj_tpos_enc_in_obj_ptrs = proj_tpos_enc_in_obj_ptrs
        self.use_signed_tpos_enc_to_obj_ptrs = use_signed_tpos_enc_to_obj_ptrs
        self.only_obj_ptrs_in_the_past_for_eval = only_obj_ptrs_in_the_past_for_eval
        self.pred_obj_scores = pred_obj_scores
        self.pred_obj_scores_mlp = pred_obj_scores_mlp
        self.fixed_no_obj_ptr = fixed_no_obj_ptr
        self.soft_no_obj_ptr = soft_no_obj_ptr
        self.sam_mask_decoder_extra_args = sam_mask_decoder_extra_args

        # Learned embeddings; zero-initialised here, their values always come from a checkpoint.
        if use_obj_ptrs_in_encoder:
            # turns a mask prompt into stride-4 SAM logit scale, to produce a pointer from a mask input
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(num_maskmem, 1, 1, self.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        if pred_obj_scores and use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, self.hidden_dim))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, self.mem_dim)) if no_obj_embed_spatial else None

        embedding_size = image_size // backbone_stride
        self.sam_prompt_embed_dim = self.hidden_dim
        self.sam_image_embedding_size = embedding_size
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=self.hidden_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        )
        self.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=self.hidden_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=self.hidden_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=iou_prediction_use_sigmoid,
            pred_obj_scores=pred_obj_scores,
            pred_obj_scores_mlp=pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=use_multimask_token_for_obj_ptr,
            **(sam_mask_decoder_extra_args or {}),
        )
        if not use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = nn.Identity()
        elif use_mlp_for_obj_ptr_proj:
            self.obj_ptr_proj = MLP(self.hidden_dim, self.hidden_dim, self.hidden_dim, 3)
        else:
            self.obj_ptr_proj = nn.Linear(self.hidden_dim, self.hidden_dim)
        # a separate projection keeps the temporal encoding of pointers apart from the spatial one
        self.obj_ptr_tpos_proj = (
            nn.Linear(self.hidden_dim, self.mem_dim) if proj_tpos_enc_in_obj_ptrs else nn.Identity()
        )
        if compile_image_encoder:
            # compile the bound forward, not the module, so that checkpoint keys stay unchanged
            self.image_encoder.forward = torch.compile(
                self.image_encoder.forward, mode="max-autotune", fullgraph=True, dynamic=False
            )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            "SAMV2 is driven by SAMV2ImagePredictor, SAMV2AutomaticMaskGenerator or SAMV2VideoPredictor"
        )

    # ------------------------------------------------------------------ image features
    def forward_image(self, images: torch.Tensor) -> Dict[str, Any]:
        """Encode a ``B x 3 x S x S`` normalised image batch.

        Returns the image encoder's dict; the two high-resolution levels are already projected by the decoder's
        ``conv_s0``/``conv_s1`` so that repeated prompts on the same image do not redo it.
        """
        out = self.image_encoder(images)
        if self.use_high_res_features_in_sam:
            fpn = list(out["backbone_fpn"])
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
            out["backbone_fpn"] = fpn
        return out

    def prepare_backbone_features(
        self, backbone_out: Dict[str, Any]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[Tuple[int, int]]]:
        """Flatten the levels used by the heads to sequence-first ``HW x B x C`` tensors.

        Returns ``(vision_feats, vision_pos_embeds, feat_sizes)``, lowest resolution last.
        """
        feature_maps = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        pos_maps = backbone_out["vision_pos_enc"][-self.num_feature_levels :]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos_maps]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos = [x.flatten(2).permute(2, 0, 1) for x in pos_maps]
        return vision_feats, vision_pos, feat_sizes

    @staticmethod
    def seq_to_map(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``HW x B x C`` -> ``B x C x H x W``."""
        return x.permute(1, 2, 0).view(x.size(1), x.size(2), *size)

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
            if mask_inputs.shape[-2:] != self.sam_prompt_encoder.mask_input_size:
                mask_prompt = F.interpolate(
                    mask_inputs.float(),
                    size=self.sam_prompt_encoder.mask_input_size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
        sparse, dense = self.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
        low_res_multimasks, ious, sam_tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=backbone_features,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=high_res_features,
        )
        is_obj_appearing = object_score_logits > 0
        if self.pred_obj_scores:
            # the memory sees a hard object / no-object decision, consistent with the predicted mask
            low_res_multimasks = torch.where(is_obj_appearing[:, None, None], low_res_multimasks, NO_OBJ_SCORE)
        low_res_multimasks = low_res_multimasks.float()
        high_res_multimasks = F.interpolate(
            low_res_multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )

        sam_token = sam_tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(batch, device=device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
            if sam_tokens.size(1) > 1:
                sam_token = sam_tokens[rows, best]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks

        obj_ptr = self.obj_ptr_proj(sam_token)
        if self.pred_obj_scores:
            # unlike masks, the pointer may mix in the no-object pointer softly
            appearing = object_score_logits.sigmoid() if self.soft_no_obj_ptr else is_obj_appearing.float()
            obj_ptr = self.mix_no_obj_ptr(obj_ptr, appearing)
        return SAMHeadsOutput(
            low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits
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
        batch: int,
    ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Object pointers of other frames as memory tokens: ``(tokens N x B x mem_dim, their pos N x B x mem_dim)``."""
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
        device = obj_ptrs.device
        if self.add_tpos_enc_to_obj_ptrs:
            # sine encoding of the temporal distance, normalised by the largest possible distance
            tpos_dim = self.hidden_dim if self.proj_tpos_enc_in_obj_ptrs else self.mem_dim
            pos = torch.tensor(positions, device=device)
            obj_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(pos / (max_ptrs - 1), dim=tpos_dim))
            obj_pos = obj_pos.unsqueeze(1).expand(-1, batch, self.mem_dim)
        else:
            obj_pos = obj_ptrs.new_zeros(len(positions), batch, self.mem_dim)
        if self.mem_dim < self.hidden_dim:
            # a C-dim pointer becomes C / mem_dim tokens of the memory width
            split = self.hidden_dim // self.mem_dim
            obj_ptrs = obj_ptrs.reshape(-1, batch, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            obj_pos = obj_pos.repeat_interleave(split, dim=0)
        return obj_ptrs, obj_pos

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
        batch = feats.size(1)
        size = feat_sizes[-1]
        if self.num_maskmem == 0:  # plain SAM on images: no memory at all
            return self.seq_to_map(feats, size)

        num_obj_ptr_tokens = 0
        if is_init_cond_frame:
            if self.directly_add_no_mem_embed:
                return self.seq_to_map(feats + self.no_mem_embed, size)
            # a dummy memory token, so that the memory attention never sees an empty memory
            memory = self.no_mem_embed.expand(1, batch, self.mem_dim)
            memory_pos = self.no_mem_pos_enc.expand(1, batch, self.mem_dim)
        else:
            if not cond_outputs:
                raise RuntimeError(f"frame {frame_idx} is tracked but no conditioning frame has been added")
            selected, unselected = select_closest_cond_frames(frame_idx, cond_outputs, self.max_cond_frames_in_attn)
            memories, memory_pos_list = [], []
            for t_pos, out in self.memory_frames(frame_idx, selected, unselected, non_cond_outputs, reverse):
                # memories may be stored offloaded and/or in lower precision (bfloat16, as the official predictor does)
                mem = out.maskmem_features.to(feats.device, dtype=feats.dtype, non_blocking=True)
                memories.append(mem.flatten(2).permute(2, 0, 1))
                pos = out.maskmem_pos_enc.to(feats.device).flatten(2).permute(2, 0, 1)
                memory_pos_list.append(pos + self.maskmem_tpos_enc[self.num_maskmem - t_pos - 1])
            if self.use_obj_ptrs_in_encoder:
                pointers = self.object_pointers(
                    frame_idx, selected, unselected, non_cond_outputs, num_frames, reverse, batch
                )
                if pointers is not None:
                    memories.append(pointers[0])
                    memory_pos_list.append(pointers[1])
                    num_obj_ptr_tokens = pointers[0].shape[0]
            memory = torch.cat(memories, dim=0)
            memory_pos = torch.cat(memory_pos_list, dim=0)

        fused = self.memory_attention(
            curr=vision_feats[-1:],
            curr_pos=vision_pos[-1:],
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=num_obj_ptr_tokens,
        )
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
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        features, pos_enc = out["vision_features"], out["vision_pos_enc"][-1]
        if self.no_obj_embed_spatial is not None:
            # tell the memory that the object is occluded on this frame
            absent = 1 - (object_score_logits > 0).float()
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features, pos_enc

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
