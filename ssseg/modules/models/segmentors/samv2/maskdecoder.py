"""SAM 2 mask decoder: prompt tokens + image embedding -> mask logits, IoU estimates, object scores."""

from typing import List, Optional, Tuple, Type

import torch
from torch import nn

from .common import MLP, LayerNorm2d


def is_batch_shared(x: torch.Tensor) -> bool:
    """True when every batch item of ``x`` is provably the same tensor (batch 1, or a stride-0 batch view)."""
    return x.shape[0] == 1 or x.stride(0) == 0


def add_in_layout_of(x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
    """``x + feat`` (``feat`` broadcast over the batch) computed in the memory layout of ``x``.

    ``x`` comes out of a transposed convolution whose input is a transposed view of the transformer's tokens, so it
    is channels-last; the backbone features are contiguous. A sum of mixed layouts runs a slow strided loop, so a
    batch-shared ``feat`` (one image's features, cheap to copy) is first converted to the layout of ``x``. The sum
    is elementwise, so the result is the same.
    """
    channels_last = torch.channels_last
    if (
        x.dim() == 4
        and is_batch_shared(feat)
        and x.is_contiguous(memory_format=channels_last)
        and not x.is_contiguous()
        and not feat.is_contiguous(memory_format=channels_last)
    ):
        feat = feat[:1].contiguous(memory_format=channels_last)
    return x + feat


class MaskDecoder(nn.Module):
    """Predicts masks from an image embedding and prompt embeddings with a two-way transformer.

    Output tokens ``[obj_score?, iou, mask_0 .. mask_K]`` are prepended to the prompt tokens. After the
    transformer, each mask token drives a hypernetwork MLP whose output is dotted with the upscaled (4x) image
    features to give one mask; mask 0 is the single-mask output, masks ``1..K`` the multimask outputs.

    Args:
        transformer_dim: channel width ``C`` of tokens and image embedding.
        transformer: the two-way transformer (``(image B x C x h x w, pe, tokens B x N x C) -> (tokens, image)``);
            it must also accept a ``1 x C x h x w`` image shared by all ``B`` token sets (as ``TwoWayTransformer``
            does), which the decoder passes whenever the image and dense prompt are the same for every prompt set.
        num_multimask_outputs: ``K``, the number of ambiguity-resolving masks.
        activation: activation module class of the upscaling path.
        iou_head_depth: layers of the IoU prediction MLP.
        iou_head_hidden_dim: hidden width of the IoU prediction MLP.
        use_high_res_features: add stride-4 / stride-8 backbone features inside the upscaling path (SAM 2).
        iou_prediction_use_sigmoid: squash IoU predictions to [0, 1].
        dynamic_multimask_via_stability: in eval, when a single mask is requested but it is unstable, return the
            multimask output with the best predicted IoU instead.
        dynamic_multimask_stability_delta: logit margin defining stability (IoU of masks thresholded at +-delta).
        dynamic_multimask_stability_thresh: stability score below which the fallback kicks in.
        pred_obj_scores: predict an object-presence logit from a dedicated token.
        pred_obj_scores_mlp: use a 3-layer MLP instead of a Linear for that logit.
        use_multimask_token_for_obj_ptr: with multimask output, return the multimask tokens as SAM tokens.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            # Project the backbone's stride-4 (s0) and stride-8 (s1) features to the upscaling widths.
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1, stride=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            if pred_obj_scores_mlp:
                self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
            else:
                self.pred_obj_score_head = nn.Linear(transformer_dim, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for ``B`` prompt sets.

        Args:
            image_embeddings: ``B x C x h x w``, or ``1 x C x h x w`` with ``repeat_image`` (one image, B prompts).
            image_pe: ``1 x C x h x w`` positional encoding of the image grid (``PromptEncoder.get_dense_pe``).
            sparse_prompt_embeddings: ``B x N x C`` prompt tokens.
            dense_prompt_embeddings: ``B x C x h x w`` (or a broadcastable ``1 x C x h x w``) mask embedding.
            multimask_output: return the K multimask outputs instead of the single mask.
            repeat_image: use the single image embedding for every prompt set.
            high_res_features: ``[s0 Bh x C/8 x 4h x 4w, s1 Bh x C/4 x 2h x 2w]`` (already projected by
                ``conv_s0`` / ``conv_s1``), ``Bh`` equal to ``B`` or 1; required iff ``use_high_res_features``.

        Returns:
            masks: ``B x M x 4h x 4w`` logits, ``M = K`` with multimask output, else 1.
            iou_pred: ``B x M`` predicted IoUs.
            sam_tokens_out: ``B x M' x C`` output tokens for the object pointer (``M' = K`` only with multimask
                output and ``use_multimask_token_for_obj_ptr``; the single-mask token otherwise).
            object_score_logits: ``B x 1``; a constant 10 (object present) without ``pred_obj_scores``.
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        return self.select_outputs(masks, iou_pred, mask_tokens_out, object_score_logits, multimask_output)

    def select_outputs(
        self,
        masks: torch.Tensor,
        iou_pred: torch.Tensor,
        mask_tokens_out: torch.Tensor,
        object_score_logits: torch.Tensor,
        multimask_output: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs of :meth:`forward` from those of :meth:`predict_masks` (separate so that an export can take
        both choices of ``multimask_output`` from one decoder run)."""
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self.dynamic_multimask_via_stability_select(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, :1], iou_pred[:, :1]
        # The object pointer is trained on the single-mask token (tracking always follows several clicks), so that
        # token is used even with multimask output unless the config says otherwise.
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, :1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def output_tokens(self) -> torch.Tensor:
        """The learned output tokens ``[obj_score?, iou, mask_0..mask_K]``: ``T x C``."""
        parts = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            parts.insert(0, self.obj_score_token.weight)
        return torch.cat(parts, dim=0)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ``K + 1`` masks before output selection (shapes as in :meth:`forward` with ``M = K + 1``).

        Returns ``(masks B x (K+1) x 4h x 4w, iou_pred B x (K+1), mask_tokens_out B x (K+1) x C, obj logits B x 1)``.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = self.output_tokens()
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)

        num_images = image_embeddings.shape[0]
        if repeat_image and num_images != 1:
            raise ValueError(f"repeat_image needs a single image embedding, got {num_images}")
        if not repeat_image and num_images != batch:
            raise ValueError(f"got {num_images} image embeddings for {batch} prompt sets")
        if image_pe.shape[0] != 1:
            raise ValueError("image_pe must have batch size 1 (see PromptEncoder.get_dense_pe)")
        # Instead of materialising B copies of the image (and of its PE), rely on broadcasting. When the image and
        # the dense prompt are the same for every prompt set (one image, no mask prompts), the sum stays at batch 1
        # and the transformer shares the image-side work of its first layer across the batch.
        if is_batch_shared(image_embeddings) and is_batch_shared(dense_prompt_embeddings):
            src = image_embeddings[:1] + dense_prompt_embeddings[:1]
        else:
            src = image_embeddings + dense_prompt_embeddings
        c, h, w = src.shape[1:]

        hs, src = self.transformer(src, image_pe, tokens)
        s = 1 if self.pred_obj_scores else 0  # index of the IoU token
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens, :]

        # B x hw x C -> B x C x h x w, then 4x upscaling (optionally fused with high-resolution backbone features).
        src = src.transpose(1, 2).reshape(batch, c, h, w)
        if self.use_high_res_features:
            deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            upscaled = act1(norm1(add_in_layout_of(deconv1(src), feat_s1)))
            upscaled = act2(add_in_layout_of(deconv2(upscaled), feat_s0))
        else:
            upscaled = self.output_upscaling(src)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        up_c, up_h, up_w = upscaled.shape[1:]
        masks = (hyper_in @ upscaled.reshape(batch, up_c, up_h * up_w)).reshape(batch, -1, up_h, up_w)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            # sigmoid(10) ~ 1: "object present" for decoders without an object-score head.
            object_score_logits = iou_pred.new_full((iou_pred.shape[0], 1), 10.0)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU between the masks thresholded at ``+delta`` and at ``-delta``: ``B x M x H x W`` -> ``B x M``.

        Empty masks (nothing above ``-delta``) count as perfectly stable.
        """
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        area_inner = (flat > delta).sum(dim=-1).float()
        area_outer = (flat > -delta).sum(dim=-1).float()
        return torch.where(area_outer > 0, area_inner / area_outer, 1.0)

    def dynamic_multimask_via_stability_select(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output with a fallback: where mask 0 is unstable, take the best-IoU multimask output.

        Args:
            all_mask_logits: ``B x (K+1) x H x W``; all_iou_scores: ``B x (K+1)``.

        Returns:
            ``(B x 1 x H x W, B x 1)``.
        """
        multi_iou = all_iou_scores[:, 1:]
        best = multi_iou.argmax(dim=-1, keepdim=True) + 1  # index into all outputs, skipping the single mask
        # gather with an explicit expand (not take_along_dim, whose broadcast fixes the batch size in an export)
        index = best[:, :, None, None].expand(-1, -1, *all_mask_logits.shape[-2:])
        best_logits = torch.gather(all_mask_logits, 1, index)
        best_iou = torch.gather(all_iou_scores, 1, best)
        single_logits = all_mask_logits[:, :1]
        single_iou = all_iou_scores[:, :1]
        is_stable = self.stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh
        mask_logits = torch.where(is_stable[..., None, None], single_logits, best_logits)
        iou_scores = torch.where(is_stable, single_iou, best_iou)
        return mask_logits, iou_scores
