"""The four exported graphs as ``nn.Module`` wrappers around the model's own methods (nothing re-implemented).

Each wrapper calls the methods :class:`~ssseg.modules.models.segmentors.samv2.samv2.SAMV2` uses itself, with
tensor-only inputs and outputs named as in :mod:`ssseg.modules.models.segmentors.samv2.onnxbackend`.
"""

from typing import Tuple

import torch
from torch import nn

from ssseg.modules.models.segmentors.samv2.samv2 import SAMV2, MemoryBank


class ImageEncoderGraph(nn.Module):
    """``image 1 x 3 x S x S`` -> image embedding (no-memory embedding added), the two projected high-resolution
    levels, the raw lowest level and its position encoding."""

    def __init__(self, model: SAMV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        backbone_out = self.model.forward_image(image)
        embedding = self.model.image_embedding(backbone_out)
        return (
            embedding["image_embed"],
            *embedding["high_res_feats"],
            backbone_out["backbone_fpn"][-1],
            backbone_out["vision_pos_enc"][-1],
        )


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder + object pointer for ``B`` prompt sets on one image, both output choices
    (three masks, and the single mask with the dynamic fallback) from one decoder run.

    A mask prompt is used where ``has_mask_input`` is 1; with 0 the learned "no mask" embedding is (``mask_input``
    is then ignored).
    """

    def __init__(self, model: SAMV2) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> Tuple[torch.Tensor, ...]:
        model = self.model
        encoder = model.sam_prompt_encoder
        sparse, dense = encoder(points=(point_coords, point_labels), boxes=None, masks=mask_input)
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = torch.where(has_mask_input.reshape(1, 1, 1, 1) > 0, dense, no_mask)
        raw = model.sam_mask_decoder.predict_masks(
            image_embed,
            encoder.get_dense_pe(),
            sparse,
            dense,
            repeat_image=True,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        multi = model.select_decoder_outputs(*raw, multimask_output=True)
        single = model.select_decoder_outputs(*raw, multimask_output=False)
        return (
            multi.low_res_masks,
            multi.ious,
            multi.obj_ptr,
            single.low_res_masks,
            single.ious,
            single.obj_ptr,
            single.object_score_logits,
        )


class MemoryAttentionGraph(nn.Module):
    """Memory attention of the current frame to ``N`` memory frames and ``P`` object pointers, with the temporal
    encodings (``maskmem_tpos_enc`` rows, sine encoding of pointer distances) applied inside."""

    def __init__(self, model: SAMV2) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        maskmem_features: torch.Tensor,
        maskmem_pos_enc: torch.Tensor,
        maskmem_tpos_index: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptr_rel_pos: torch.Tensor,
    ) -> torch.Tensor:
        bank = MemoryBank(maskmem_features, maskmem_pos_enc, maskmem_tpos_index, obj_ptrs, obj_ptr_rel_pos)
        return self.model.attend_memory(curr, curr_pos, bank)


class MemoryEncoderGraph(nn.Module):
    """Memory encoder: features + mask probabilities -> memory features and their position encoding."""

    def __init__(self, model: SAMV2) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor, object_score_logits: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_memory(pix_feat, mask_for_mem, object_score_logits)
