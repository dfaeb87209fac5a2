"""The SAM 2 network: image encoder, prompt encoder + mask decoder, memory encoder and memory attention.

The predictors (image, automatic masks, video) wrap an instance of :class:`SAMV2`; this module only holds the
network and the per-frame tracking step. Attribute names follow the official checkpoints so that they load with
``strict=True``.
"""

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ...backbones import BuildBackbone
from .common import MLP
from .fpnneck import FPNNeck, ImageEncoder
from .maskdecoder import MaskDecoder
from .memoryattention import MemoryAttention
from .memoryencoder import MemoryEncoder
from .positionencoding import get_1d_sine_pe
from .promptencoder import PromptEncoder
from .samv2logic import NO_OBJ_SCORE, DecoderOutput, FrameOutput, MemoryBank, SAMHeadsOutput, SAMV2Logic
from .twowaytransformer import TwoWayTransformer

__all__ = ["NO_OBJ_SCORE", "SAMV2", "DecoderOutput", "FrameOutput", "MemoryBank", "SAMHeadsOutput"]


class SAMV2(SAMV2Logic, nn.Module):
    """Segment Anything Model 2: the four networks; the logic around them is :class:`~.samv2logic.SAMV2Logic`.

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
        self.mask_input_size = tuple(self.sam_prompt_encoder.mask_input_size)
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

    # ------------------------------------------------------------------ prompts
    def decode_prompts(
        self,
        image_embed: torch.Tensor,
        high_res_feats: Optional[List[torch.Tensor]],
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        mask_prompt: Optional[torch.Tensor],
        multimask_output: bool,
        repeat_image: bool = False,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder + object pointer (see :meth:`SAMV2Logic.decode_prompts`)."""
        sparse, dense = self.sam_prompt_encoder(points=points, boxes=None, masks=mask_prompt)
        raw = self.sam_mask_decoder.predict_masks(
            image_embed,
            self.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            repeat_image=repeat_image,
            high_res_features=high_res_feats,
        )
        return self.select_decoder_outputs(*raw, multimask_output=multimask_output)

    def select_decoder_outputs(
        self,
        masks: torch.Tensor,
        iou_pred: torch.Tensor,
        mask_tokens_out: torch.Tensor,
        object_score_logits: torch.Tensor,
        multimask_output: bool,
    ) -> DecoderOutput:
        """The single- or multi-mask outputs of one decoder run (:meth:`MaskDecoder.predict_masks`), with the object
        pointer of the best mask (the no-object pointer mixed in where the object is absent)."""
        masks, ious, sam_tokens, object_score_logits = self.sam_mask_decoder.select_outputs(
            masks, iou_pred, mask_tokens_out, object_score_logits, multimask_output
        )
        sam_token = sam_tokens[:, 0]
        if multimask_output and sam_tokens.size(1) > 1:
            rows = torch.arange(sam_tokens.size(0), device=sam_tokens.device)
            sam_token = sam_tokens[rows, torch.argmax(ious, dim=-1)]
        obj_ptr = self.obj_ptr_proj(sam_token)
        if self.pred_obj_scores:
            # unlike masks, the pointer may mix in the no-object pointer softly
            appearing = object_score_logits.sigmoid() if self.soft_no_obj_ptr else (object_score_logits > 0).float()
            obj_ptr = self.mix_no_obj_ptr(obj_ptr, appearing)
        return DecoderOutput(masks, ious, obj_ptr, object_score_logits)

    # ------------------------------------------------------------------ memory
    def pointer_tokens(self, obj_ptrs: torch.Tensor, rel_pos: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``P x B x C`` object pointers at temporal distances ``rel_pos`` (``P``) -> memory tokens and their
        position encoding, ``P * C / mem_dim x B x mem_dim`` each."""
        batch = obj_ptrs.size(1)
        if self.add_tpos_enc_to_obj_ptrs:
            # sine encoding of the temporal distance, normalised by the largest possible distance
            tpos_dim = self.hidden_dim if self.proj_tpos_enc_in_obj_ptrs else self.mem_dim
            obj_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(rel_pos, dim=tpos_dim))
            obj_pos = obj_pos.unsqueeze(1).expand(-1, batch, self.mem_dim)
        else:
            obj_pos = obj_ptrs.new_zeros(obj_ptrs.size(0), batch, self.mem_dim)
        if self.mem_dim < self.hidden_dim:
            # a C-dim pointer becomes C / mem_dim tokens of the memory width
            split = self.hidden_dim // self.mem_dim
            obj_ptrs = obj_ptrs.reshape(-1, batch, split, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            obj_pos = obj_pos.repeat_interleave(split, dim=0)
        return obj_ptrs, obj_pos

    def attend_memory(self, curr: torch.Tensor, curr_pos: torch.Tensor, bank: Optional[MemoryBank]) -> torch.Tensor:
        """Memory attention with temporal encodings (see :meth:`SAMV2Logic.attend_memory`)."""
        num_obj_ptr_tokens = 0
        if bank is None:
            # a dummy memory token, so that the memory attention never sees an empty memory
            batch = curr.size(1)
            memory = self.no_mem_embed.expand(1, batch, self.mem_dim)
            memory_pos = self.no_mem_pos_enc.expand(1, batch, self.mem_dim)
        else:
            # N x B x D x h x w -> N*hw x B x D, conditioning frames first
            memory = bank.features.flatten(3).permute(0, 3, 1, 2)
            memory_pos = bank.pos_enc.flatten(3).permute(0, 3, 1, 2) + self.maskmem_tpos_enc[bank.tpos_index]
            memory, memory_pos = memory.flatten(0, 1), memory_pos.flatten(0, 1)
            if bank.obj_ptrs is not None:
                tokens, tokens_pos = self.pointer_tokens(bank.obj_ptrs, bank.obj_ptr_rel_pos)
                memory = torch.cat([memory, tokens], dim=0)
                memory_pos = torch.cat([memory_pos, tokens_pos], dim=0)
                num_obj_ptr_tokens = tokens.shape[0]
        return self.memory_attention(
            curr=curr, curr_pos=curr_pos, memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=num_obj_ptr_tokens
        )

    def encode_memory(
        self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor, object_score_logits: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Memory encoder (see :meth:`SAMV2Logic.encode_memory`)."""
        out = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        features, pos_enc = out["vision_features"], out["vision_pos_enc"][-1]
        if self.no_obj_embed_spatial is not None:
            # tell the memory that the object is occluded on this frame
            absent = 1 - (object_score_logits > 0).float()
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features, pos_enc
