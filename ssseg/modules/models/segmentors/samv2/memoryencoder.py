"""SAM 2 memory encoder: turns a frame's features and its predicted mask into a compact memory.

The mask (full image resolution) is strided down to the feature grid, added to projected image features, mixed by
a few ConvNeXt blocks and compressed to the memory width; a sine position encoding comes with it.
"""

import copy
from typing import Dict, List, Optional, Type, Union

import torch
from torch import nn

from .common import LayerNorm2d
from .positionencoding import PositionEmbeddingSine


def _num_stages(stride: int, total_stride: int) -> int:
    """How many ``stride``-steps make ``total_stride`` (which must be an exact power of ``stride``)."""
    if stride < 2:
        raise ValueError(f"stride must be >= 2, got {stride}")
    stages, reached = 0, 1
    while reached < total_stride:
        reached *= stride
        stages += 1
    if reached != total_stride:
        raise ValueError(f"total_stride={total_stride} is not a power of stride={stride}")
    return stages


class MaskDownSampler(nn.Module):
    """Strided convs that shrink a ``B x 1 x H x W`` mask by ``total_stride``: ``B x embed_dim x H/s x W/s``.

    Every stage is conv (``stride``) -> LayerNorm2d -> activation and multiplies the channels by ``stride**2``
    (no information is dropped by the striding); a final 1x1 conv projects to ``embed_dim``. Checkpoint keys:
    ``encoder.<3i>`` conv, ``encoder.<3i+1>`` norm of stage ``i``, then the last index for the projection.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 4,
        stride: int = 4,
        padding: int = 0,
        total_stride: int = 16,
        activation: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        channels = 1
        for _ in range(_num_stages(stride, total_stride)):
            widened = channels * stride * stride
            layers.append(nn.Conv2d(channels, widened, kernel_size=kernel_size, stride=stride, padding=padding))
            layers.append(LayerNorm2d(widened))
            layers.append(activation())
            channels = widened
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``p`` (rescaling the rest)."""

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.p = p
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if keep > 0.0 and self.scale_by_keep:
            mask.div_(keep)
        return x * mask


class CXBlock(nn.Module):
    """ConvNeXt block on ``B x C x H x W``: depthwise conv -> LayerNorm -> MLP (x4) -> layer scale, plus residual.

    The pointwise convs are Linear layers applied channels-last (``pwconv1``/``pwconv2``), as in the checkpoints.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        groups = dim if use_dwconv else 1
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        # Layer scale: a per-channel gain on the branch (absent when the init value is <= 0).
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # B x H x W x C for the Linear layers
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """Optional 1x1 input projection (``proj``) followed by ``num_layers`` :class:`CXBlock` (``layers``)."""

    def __init__(
        self,
        layer: Union[Dict, nn.Module],
        num_layers: int,
        dim: Optional[int] = None,
        input_projection: bool = False,
    ) -> None:
        super().__init__()
        if input_projection and dim is None:
            raise ValueError("input_projection needs dim")
        self.proj = nn.Conv2d(dim, dim, kernel_size=1) if input_projection else nn.Identity()
        # Deep copies of one prototype: every block starts from the same initial weights, as in SAM 2.
        prototype = CXBlock(**layer) if isinstance(layer, dict) else layer
        self.layers = nn.ModuleList(copy.deepcopy(prototype) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Fuse image features with a mask into a memory: ``B x out_dim x h x w`` features and their position encoding."""

    def __init__(
        self,
        out_dim: int,
        mask_downsampler: Dict,
        fuser: Dict,
        position_encoding: Dict,
        in_dim: int = 256,
    ) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(**mask_downsampler)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(**fuser)
        self.position_encoding = PositionEmbeddingSine(**position_encoding)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> Dict[str, Union[torch.Tensor, List[torch.Tensor]]]:
        """Encode one memory.

        Args:
            pix_feat: ``B x in_dim x h x w`` image features (stride 16).
            masks: ``B x 1 x H x W`` mask logits at ``total_stride`` times the feature resolution (or
                probabilities / binary masks with ``skip_mask_sigmoid``).
            skip_mask_sigmoid: use ``masks`` as given instead of squashing logits to (0, 1).

        Returns:
            ``{"vision_features": B x out_dim x h x w, "vision_pos_enc": [B x out_dim x h x w]}``.
        """
        # Probabilities rather than logits: closer to the binary ground-truth masks seen in training.
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        # The features may have been kept on another device (e.g. offloaded to CPU).
        pix_feat = pix_feat.to(masks.device)
        x = self.pix_feat_proj(pix_feat) + masks
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x).to(x.dtype)
        return {"vision_features": x, "vision_pos_enc": [pos]}
