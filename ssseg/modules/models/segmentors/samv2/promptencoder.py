"""SAM prompt encoder: points, boxes and low-resolution masks -> sparse and dense prompt embeddings."""

from typing import List, Optional, Tuple, Type

import torch
from torch import nn

from .common import LayerNorm2d
from .positionencoding import PositionEmbeddingRandom

# Point labels understood by the encoder. Any other label keeps its bare positional encoding.
PADDING_LABEL = -1  # "not a point": positional encoding dropped, replaced by ``not_a_point_embed``
NEGATIVE_LABEL = 0
POSITIVE_LABEL = 1
BOX_TOP_LEFT_LABEL = 2
BOX_BOTTOM_RIGHT_LABEL = 3


class PromptEncoder(nn.Module):
    """Embeds SAM prompts for the mask decoder.

    Points and box corners become *sparse* tokens: a random-Fourier encoding of their position plus a learned
    per-label embedding. A low-resolution mask (``4x`` the image-embedding size) becomes a *dense* ``C x h x w``
    embedding through a small strided conv stack; without a mask, a learned "no mask" vector is broadcast instead.

    Args:
        embed_dim: channel width ``C`` of every prompt embedding.
        image_embedding_size: ``(h, w)`` of the image encoder's output grid.
        input_image_size: ``(H, W)`` of the padded image fed to the image encoder (point coordinates live here).
        mask_in_chans: hidden width of the mask-downscaling convolutions.
        activation: activation module class used between the mask-downscaling convolutions.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # One learned vector per label 0..3: negative point, positive point, box top-left, box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        # Two stride-2 convs bring the 4x mask down to the embedding grid, a 1x1 conv lifts it to ``embed_dim``.
        hidden = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            activation(),
            nn.Conv2d(hidden, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of every cell of the image-embedding grid: ``1 x C x h x w``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Embed ``B x N x 2`` pixel coordinates (x, y) with their ``B x N`` labels into ``B x N' x C`` tokens.

        With ``pad`` one extra "not a point" token is appended (``N' = N + 1``); the decoder was trained to see
        it whenever no box is given.
        """
        # Coordinates index pixels; the encoding is taken at the pixel centre.
        coords = coords + 0.5
        if pad:
            batch = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(batch, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((batch, 1), PADDING_LABEL)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels.unsqueeze(-1)
        # Padding tokens carry no position at all: only the learned "not a point" vector.
        embedding = torch.where(labels == PADDING_LABEL, self.not_a_point_embed.weight, embedding)
        for label, label_embed in enumerate(self.point_embeddings):
            embedding = torch.where(labels == label, embedding + label_embed.weight, embedding)
        return embedding

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Embed ``B x 4`` boxes (x0, y0, x1, y1) as two corner tokens each: ``B x 2 x C``."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embeds = torch.cat(
            [self.point_embeddings[BOX_TOP_LEFT_LABEL].weight, self.point_embeddings[BOX_BOTTOM_RIGHT_LABEL].weight]
        )
        return embedding + corner_embeds

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Embed ``B x 1 x 4h x 4w`` mask logits into ``B x C x h x w``."""
        return self.mask_downscaling(masks)

    @staticmethod
    def infer_batch_size(
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> int:
        """Batch size of the first prompt given (points, then boxes, then masks); 1 without prompts."""
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed any combination of prompts.

        Args:
            points: ``(coords B x N x 2, labels B x N)`` in input-image pixels, or None. Labels: -1 padding,
                0 negative, 1 positive, 2 / 3 box top-left / bottom-right corner.
            boxes: ``B x 4`` boxes (x0, y0, x1, y1) in input-image pixels, or None.
            masks: ``B x 1 x 4h x 4w`` mask logits, or None.

        Returns:
            sparse: ``B x N_tokens x C``; points (+1 padding token when there are no boxes) then box corners.
            dense: ``B x C x h x w``; the embedded mask, or a broadcast (stride-0) view of ``no_mask_embed``.
        """
        batch = self.infer_batch_size(points, boxes, masks)
        weight = self.no_mask_embed.weight
        tokens: List[torch.Tensor] = []
        if points is not None:
            tokens.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            tokens.append(self.embed_boxes(boxes))
        if tokens:
            sparse = torch.cat(tokens, dim=1)
        else:
            sparse = weight.new_empty((batch, 0, self.embed_dim))
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense
