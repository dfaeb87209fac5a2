"""The SAM 2 image encoder: a multi-scale trunk (Hiera) followed by a light FPN neck.

The neck projects every trunk level to ``d_model`` channels with a 1x1 convolution and, for the levels listed
in ``fpn_top_down_levels``, adds the upsampled result of the next coarser level (top-down fusion, as in
detectron2's FPN but without output convolutions). Each level also gets a 2-D sine position encoding.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .positionencoding import PositionEmbeddingSine

__all__ = ["FPNNeck", "ImageEncoder"]


class LateralConv(nn.Module):
    """Holds the lateral projection of one trunk level as ``.conv`` (checkpoint key ``convs.<i>.conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPNNeck(nn.Module):
    """FPN-style neck over the trunk's feature pyramid.

    Args:
        position_encoding: keyword arguments of :class:`PositionEmbeddingSine` (or an already built module).
        d_model: output width of every level.
        backbone_channel_list: trunk widths, deepest (lowest resolution) level first, i.e. the reverse of the
            order in which the trunk returns its features.
        kernel_size, stride, padding: of the lateral convolutions.
        fpn_interp_model: ``F.interpolate`` mode of the 2x top-down upsampling.
        fuse_type: ``"sum"`` adds lateral and top-down features, ``"avg"`` also halves the sum.
        fpn_top_down_levels: the levels (0 = highest resolution) that receive top-down features; the others
            keep their lateral features only. ``None`` means all levels.
    """

    def __init__(
        self,
        position_encoding: Union[Dict, nn.Module],
        d_model: int,
        backbone_channel_list: Sequence[int],
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        if isinstance(position_encoding, nn.Module):
            self.position_encoding = position_encoding
        else:
            self.position_encoding = PositionEmbeddingSine(**position_encoding)
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList(
            LateralConv(dim, d_model, kernel_size, stride, padding) for dim in self.backbone_channel_list
        )
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        num_levels = len(self.convs)
        self.fpn_top_down_levels = list(range(num_levels) if fpn_top_down_levels is None else fpn_top_down_levels)

    def forward(self, xs: List[torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Fuse the trunk outputs.

        Args:
            xs: trunk features ``B x C_i x H_i x W_i``, highest resolution first; each level is half the size
                of the previous one.

        Returns:
            (features, positions): two lists in the same order as ``xs``, of ``B x d_model x H_i x W_i`` maps
            and of their ``B x num_pos_feats x H_i x W_i`` position encodings.
        """
        num_levels = len(self.convs)
        if len(xs) != num_levels:
            raise ValueError(f"expected {num_levels} feature levels, got {len(xs)}")
        features: List[Optional[torch.Tensor]] = [None] * num_levels
        positions: List[Optional[torch.Tensor]] = [None] * num_levels
        align_corners = None if self.fpn_interp_model == "nearest" else False
        coarser = None
        # Coarsest level first, so that each level can take the already fused level below it.
        for level in range(num_levels - 1, -1, -1):
            # convs follow backbone_channel_list (deepest first), xs the trunk order (finest first).
            lateral = self.convs[num_levels - 1 - level](xs[level])
            if coarser is not None and level in self.fpn_top_down_levels:
                # Upsampled in fp32 (the official model does so even under autocast).
                top_down = F.interpolate(
                    coarser.to(dtype=torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=align_corners,
                    antialias=False,
                )
                fused = lateral + top_down
                if self.fuse_type == "avg":
                    fused = fused / 2
            else:
                fused = lateral
            features[level] = fused
            positions[level] = self.position_encoding(fused).to(fused.dtype)
            coarser = fused
        return features, positions


class ImageEncoder(nn.Module):
    """Trunk + neck: ``B x 3 x H x W`` images -> the feature dict consumed by SAM 2.

    Args:
        trunk: a built trunk (e.g. :class:`~ssseg.modules.models.backbones.hiera.Hiera`) returning features
            highest resolution first and exposing ``channel_list`` (deepest first).
        neck: a built :class:`FPNNeck` whose ``backbone_channel_list`` equals the trunk's ``channel_list``.
        scalp: number of lowest-resolution levels to discard from the outputs (they still feed the top-down
            fusion of the finer levels).
    """

    def __init__(self, trunk: nn.Module, neck: nn.Module, scalp: int = 0) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"trunk and neck channels differ: trunk {list(trunk.channel_list)}, "
                f"neck {list(neck.backbone_channel_list)}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        """Encode a ``B x 3 x H x W`` batch.

        Returns:
            a dict with ``backbone_fpn`` (the kept neck levels ``B x d_model x H_i x W_i``, highest resolution
            first), ``vision_pos_enc`` (their position encodings) and ``vision_features`` (the last kept,
            i.e. lowest-resolution, level).
        """
        features, positions = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": positions, "backbone_fpn": features}
