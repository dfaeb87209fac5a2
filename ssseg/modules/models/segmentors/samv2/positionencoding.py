"""Position encodings: 2-D sine (FPN neck, memory encoder), random Fourier (prompt encoder), 1-D sine (pointers)."""

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn


def sine_frequencies(num_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """The ``temperature ** (2 * (i // 2) / num_feats)`` divisors of the transformer sine encoding."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * (dim_t // 2) / num_feats)


def interleave_sin_cos(x: torch.Tensor) -> torch.Tensor:
    """sin of the even channels and cos of the odd ones, interleaved along the last axis."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """DETR-style 2-D sine encoding of a feature grid: ``B x C x H x W`` in, ``B x num_pos_feats x H x W`` out.

    The encoding depends only on the grid size, so it is computed once per size and cached.
    """

    def __init__(
        self, num_pos_feats: int, temperature: int = 10000, normalize: bool = True, scale: Optional[float] = None
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.cache: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}

    def grid_encoding(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``num_pos_feats x H x W`` encoding of an ``H x W`` grid (cached; callers must not modify it in place)."""
        key = (height, width, torch.device(device))
        if key in self.cache:
            return self.cache[key]
        # a normal tensor even when first asked for under inference mode, so later autograd use stays possible
        with torch.inference_mode(False), torch.no_grad():
            y = torch.arange(1, height + 1, dtype=torch.float32, device=device)[:, None].expand(height, width)
            x = torch.arange(1, width + 1, dtype=torch.float32, device=device)[None, :].expand(height, width)
            if self.normalize:
                eps = 1e-6
                y = y / (y[-1:, :] + eps) * self.scale
                x = x / (x[:, -1:] + eps) * self.scale
            dim_t = sine_frequencies(self.num_pos_feats, self.temperature, device)
            pos_x = interleave_sin_cos(x[..., None] / dim_t)
            pos_y = interleave_sin_cos(y[..., None] / dim_t)
            self.cache[key] = torch.cat((pos_y, pos_x), dim=-1).permute(2, 0, 1).contiguous()
        return self.cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.grid_encoding(x.shape[-2], x.shape[-1], x.device)
        return pos[None].expand(x.shape[0], -1, -1, -1).to(x.dtype)


class PositionEmbeddingRandom(nn.Module):
    """Fourier features with a fixed random Gaussian frequency matrix (the prompt encoder's encoding)."""

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``... x 2`` coordinates normalised to [0, 1] into ``... x 2*num_pos_feats`` features."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """``C x H x W`` encoding of pixel centres of an ``H x W`` grid."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Encode ``B x N x 2`` pixel coordinates (x, y) of an image of size ``(H, W)``: ``B x N x C``."""
        size_xy = coords.new_tensor([image_size[1], image_size[0]])
        return self.encode((coords / size_xy).float())


def get_1d_sine_pe(positions: torch.Tensor, dim: int, temperature: float = 10000) -> torch.Tensor:
    """1-D sine/cos encoding of ``positions`` (any shape): ``... x dim``, sines first, then cosines."""
    dim_t = sine_frequencies(dim // 2, temperature, positions.device)
    angles = positions.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
