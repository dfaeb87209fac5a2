"""Hiera: the hierarchical vision transformer used as the image trunk of SAM 2 / SAM 2.1.

Reference: Ryali et al., "Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles"
(https://arxiv.org/abs/2306.00989), with the windowed absolute position embedding of Bolya et al.,
"Window Attention is Bugged" (https://arxiv.org/abs/2311.05613).

The trunk is a patch embedding followed by four stages of transformer blocks. Stages are separated by
"q-pooling": the first block of a new stage max-pools its queries (and its skip connection) by ``q_stride``,
halving the resolution while doubling the width and the number of heads. Blocks attend within non-overlapping
windows, except the few listed in ``global_att_blocks``.

Token maps are kept channels-last (``B x H x W x C``) inside the trunk, because every Linear / LayerNorm acts
on the last axis; only the patch embedding and the outputs are channels-first.

Module attribute names reproduce the keys of the official checkpoints (``trunk.*`` of a SAM 2 state dict).
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Hiera", "HieraBlock", "HieraAttention", "PatchEmbed", "partition_windows", "merge_windows"]

# Tokens per chunk of the inference path of HieraBlock: about 4k tokens keep a chunk's largest intermediates (q/k/v,
# the MLP's hidden layer) at 6-25 MB. Measured on a 2-core CPU at 1024 x 1024: 2k and 4k fault no fresh pages per
# forward (whole maps: about 117k), 8k some (36k) and 16k more (83k); 2k-8k run within noise of each other, about
# 10% faster than whole maps.
CHUNK_TOKENS = 4096


def partition_windows(
    x: torch.Tensor, window_size: int, fill: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Cut a ``B x H x W x C`` map into non-overlapping ``window_size`` squares.

    The map is padded at the bottom / right up to a multiple of the window size first: with zeros, or with the
    ``C``-vector ``fill`` at every padded position when it is given.

    Returns:
        windows: ``(B * num_windows) x window_size x window_size x C``, contiguous, windows in row-major order per
            image.
        (Hp, Wp): the padded height and width.
    """
    b, h, w, c = x.shape
    ws = window_size
    if h % ws == 0 and w % ws == 0:  # no padding: one permuting copy, which reads strided and writes in order
        windows = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
        return windows.view(-1, ws, ws, c), (h, w)
    whole_h, rest_h = divmod(h, ws)  # windows without padding per column; real rows of the padded last one
    whole_w, rest_w = divmod(w, ws)
    grid_h, grid_w = whole_h + (rest_h > 0), whole_w + (rest_w > 0)
    # Written in place through a view of the windows as the padded map (B x grid_h x ws x grid_w x ws x C): one
    # pass over the memory, where padding a copy of the map and then permuting it takes three. Always a fresh
    # contiguous tensor, also with a single row of windows, where a reshape would give a strided view: Linear
    # takes another GEMM path on strided input, and its rounding would then depend on the map's height.
    windows = x.new_empty(b, grid_h, grid_w, ws, ws, c)
    padded = windows.permute(0, 1, 3, 2, 4, 5)
    for grid_i, rows, src_rows in _window_parts(h, ws):
        for grid_j, cols, src_cols in _window_parts(w, ws):
            part = x[:, src_rows, src_cols]
            if isinstance(grid_i, slice):  # whole windows: split the rows into (window, row in window)
                part = part.unflatten(1, (-1, ws))
            if isinstance(grid_j, slice):
                part = part.unflatten(part.dim() - 2, (-1, ws))
            padded[:, grid_i, rows, grid_j, cols].copy_(part)
    value = 0.0 if fill is None else fill
    if rest_h:
        padded[:, whole_h, rest_h:] = value
    if rest_w:
        padded[:, :, :, whole_w, rest_w:] = value
    return windows.view(-1, ws, ws, c), (grid_h * ws, grid_w * ws)


def _window_parts(size: int, window_size: int) -> List[Tuple[Union[slice, int], slice, slice]]:
    """Along one axis of ``size`` tokens: ``(windows, positions in the window, source tokens)`` for the whole
    windows (a slice of windows), then for the padded last window (its index) if there is one."""
    whole, rest = divmod(size, window_size)
    parts: List[Tuple[Union[slice, int], slice, slice]] = []
    if whole:
        parts.append((slice(0, whole), slice(None), slice(0, whole * window_size)))
    if rest:
        parts.append((whole, slice(0, rest), slice(whole * window_size, size)))
    return parts


def merge_windows(
    windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: ``(B * num_windows) x ws x ws x C`` -> ``B x H x W x C``.

    Args:
        windows: the windows, in the order produced by :func:`partition_windows`.
        window_size: side of each window (``ws``).
        padded_hw: ``(Hp, Wp)``, the padded map size; both must be multiples of ``window_size``.
        hw: ``(H, W)``, the size to crop the merged map to (drops the padding).
    """
    hp, wp = padded_hw
    h, w = hw
    grid_h, grid_w = hp // window_size, wp // window_size
    b = windows.shape[0] // (grid_h * grid_w)
    x = windows.reshape(b, grid_h, grid_w, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def max_pool_channels_last(x: torch.Tensor, stride: Tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max pooling (kernel = stride, floor mode) of a ``B x H x W x C`` map.

    Computed as the elementwise maximum of the ``sh * sw`` strided sub-grids: the same values as ``max_pool2d``,
    but it reads a strided input (the queries are a view into the q/k/v projection) in place, with neither a
    layout copy nor argmax indices, which makes it three to four times faster on CPU.
    """
    sh, sw = stride
    h, w = x.shape[1] // sh * sh, x.shape[2] // sw * sw
    grids = [x[:, i:h:sh, j:w:sw] for i in range(sh) for j in range(sw)]
    out = grids[0]
    for grid in grids[1:]:
        out = torch.maximum(out, grid)
    return out


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``drop_prob`` (training only).

    Kept samples are rescaled by ``1 / (1 - drop_prob)`` so that the expectation is unchanged.
    """
    if drop_prob <= 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided convolution, ``B x C_in x H x W`` -> ``B x H' x W' x embed_dim``."""

    def __init__(
        self,
        embed_dim: int,
        in_chans: int = 3,
        kernel_size: Tuple[int, int] = (7, 7),
        stride: Tuple[int, int] = (4, 4),
        padding: Tuple[int, int] = (3, 3),
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A B x H x W x C view of the channels-first conv output, not a copy; Hiera.forward lays it out
        # contiguously for free when it adds the position embedding.
        return self.proj(x).permute(0, 2, 3, 1)


class HieraAttention(nn.Module):
    """Multi-head self-attention over a ``B x H x W x dim`` token map, optionally max-pooling the queries.

    With ``q_stride`` the output has the pooled size ``B x H/s x W/s x dim_out``: keys and values keep the
    full resolution, so each pooled query still sees every token of its window.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        if dim_out % num_heads != 0:
            raise ValueError(f"dim_out ({dim_out}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = tuple(q_stride) if q_stride else None
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x dim`` -> ``B x H' x W' x dim_out`` (``H' = H / q_stride`` when pooling queries)."""
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention from the ``B x H x W x 3*dim_out`` q/k/v projection to ``B x H' x W' x dim_out``, the input of
        ``proj``."""
        b, h, w, _ = qkv.shape
        # B x HW x 3 x heads x head_dim; q, k and v are strided views into the one projection.
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)
        if self.q_stride is not None:
            q = max_pool_channels_last(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        # SDPA takes B x heads x L x head_dim; transposes are views.
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2).reshape(b, h, w, -1)

    def attend_cropped(
        self, windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int], out_hw: Tuple[int, int]
    ) -> torch.Tensor:
        """:meth:`attend` on padded windows, merged and cropped: ``(B * num_windows) x ws x ws x 3*dim_out`` ->
        a contiguous ``B x H' x W' x dim_out``, where ``H' x W'`` (``out_hw``) is the top-left part of the merged
        output that is kept.

        Only the queries that survive the crop are computed; keys and values are the whole padded windows. Each
        query row of attention is computed on its own (the same bits whatever the other rows are), so this equals
        cropping :meth:`attend`'s merged output, with up to 42% less attention work on maps that windows tile
        badly. SDPA runs once per group of windows with the same kept extent, per window row and image.
        """
        num_windows = windows.shape[0]
        grid_h, grid_w = padded_hw[0] // window_size, padded_hw[1] // window_size
        b = num_windows // (grid_h * grid_w)
        qkv = windows.reshape(num_windows, window_size * window_size, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # num_windows x heads x L x head_dim views
        q = q.reshape(num_windows, window_size, window_size, -1)
        if self.q_stride is not None:
            q = max_pool_channels_last(q, self.q_stride)
        q_size = q.shape[1]  # window side after pooling
        out_h, out_w = out_hw
        full_cols = min(grid_w, out_w // q_size)  # windows whose queries are all kept, column-wise
        col_groups = [(0, full_cols, q_size), (full_cols, full_cols + 1, out_w - full_cols * q_size)]
        out = q.new_empty(b, out_h, out_w, self.dim_out)
        for image in range(b):
            for row in range(min(grid_h, -(-out_h // q_size))):
                top = row * q_size
                rows = min(q_size, out_h - top)
                first = (image * grid_h + row) * grid_w
                for start, stop, cols in col_groups:
                    if stop <= start or cols <= 0:
                        continue
                    n, kept = stop - start, rows * cols
                    group = slice(first + start, first + stop)
                    # SDPA computes query rows in blocks, and a last block of 1-3 rows rounds differently:
                    # whole multiples of 4 (padded with zero queries) keep every row in a block like the official.
                    q_kept = q.new_zeros(n, -(-kept // 4) * 4, self.num_heads, q.shape[-1] // self.num_heads)
                    q_kept[:, :kept].view(n, rows, cols, -1).copy_(q[group, :rows, :cols])
                    attended = F.scaled_dot_product_attention(q_kept.transpose(1, 2), k[group], v[group])
                    attended = attended[:, :, :kept].unflatten(2, (rows, cols))  # n x heads x rows x cols x hd
                    target = out[image, top : top + rows, start * q_size : start * q_size + n * cols]
                    target.view(rows, n, cols, self.num_heads, -1).copy_(attended.permute(2, 0, 3, 1, 4))
        return out


class HieraBlock(nn.Module):
    """Pre-norm transformer block of Hiera on a ``B x H x W x dim`` map -> ``B x H' x W' x dim_out``.

    Args:
        dim: input width.
        dim_out: output width; when it differs, the skip connection goes through ``proj`` (applied to the
            normalised input, as in the official model).
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``dim_out``.
        drop_path: stochastic-depth probability of both residual branches (training only).
        q_stride: if set, queries and the skip connection are max-pooled by this stride (stage transition).
        window_size: side of the attention windows, 0 for global attention.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        q_stride: Optional[Tuple[int, int]] = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = tuple(q_stride) if q_stride else None
        self.drop_path_prob = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = HieraAttention(dim, dim_out, num_heads=num_heads, q_stride=self.q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        # Imported here, not at module level: the segmentors package imports the backbone registry (and so
        # this file) while it initialises, and a module-level import back into it would be circular.
        from ..segmentors.samv2.common import MLP

        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x dim`` -> ``B x H' x W' x dim_out``."""
        if torch.is_grad_enabled() or self.training or torch.compiler.is_compiling():
            x = self._attention_residual(x)
            return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_prob, self.training)
        # Inference: windows never interact, so the whole block runs one band of window rows at a time (global
        # attention blocks chunk their MLP only). The intermediates then stay small: in cache, and reused by the
        # allocator instead of being faulted in fresh on every call, which costs more than the arithmetic on them.
        # Every token goes through the same operations as above, so the result is the same.
        b, h, w, _ = x.shape
        ws = self.window_size
        stride = self.q_stride[0] if self.q_stride is not None else 1
        rows = ws * max(1, CHUNK_TOKENS // (ws * w)) if ws > 0 else h
        if rows >= h or ws % stride != 0:  # (a window that pooling does not tile would straddle two bands)
            x = self._attention_residual(x, inference=True)
            self._mlp_residual_(x)
            return x
        out = None
        for top in range(0, h, rows):
            band = self._attention_residual(x[:, top : top + rows], inference=True)
            self._mlp_residual_(band)
            if out is None:
                out = band.new_empty(b, h // stride, band.shape[2], band.shape[3])
            out[:, top // stride : top // stride + band.shape[1]] = band
        return out

    def _attention_residual(self, x: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """``shortcut + attention(norm1(x))``, a new ``B x H' x W' x dim_out`` tensor.

        In ``inference``, windows that need padding get it after the q/k/v projection instead of before: the
        padding is zeros, whose projection is exactly the bias, so only the real tokens are projected and the
        projection is padded with the bias. Attention then runs for the kept queries only (see
        :meth:`HieraAttention.attend_cropped`) over the whole padded windows, and ``proj`` on the kept tokens
        only. Each token's row goes through the same products as in the plain path: the same numbers, with less
        work (32 x 32 tokens in 14 x 14 windows, stage 3 at image_size 512, are 72% padding; 64 x 64 are 20%).
        """
        normed = self.norm1(x)
        shortcut = x
        if self.dim != self.dim_out:
            shortcut = self.proj(normed)
            if self.q_stride is not None:
                shortcut = max_pool_channels_last(shortcut, self.q_stride)

        ws = self.window_size
        if ws == 0:
            return shortcut + drop_path(self.attn(normed), self.drop_path_prob, self.training)
        if inference and (x.shape[1] % ws != 0 or x.shape[2] % ws != 0):
            qkv, padded_hw = partition_windows(self.attn.qkv(normed), ws, fill=self.attn.qkv.bias)
            attended = self.attn.attend_cropped(qkv, ws, padded_hw, shortcut.shape[1:3])
            return shortcut + self.attn.proj(attended)
        windows, padded_hw = partition_windows(normed, ws)
        attended = self.attn(windows)
        if self.q_stride is not None:
            # Every window had its queries pooled, so the windows shrink while the window grid stays. Sizing
            # the merged map from that grid (not from the pooled shortcut) also holds for odd token counts.
            pooled_ws = ws // self.q_stride[0]
            padded_hw = (padded_hw[0] // ws * pooled_ws, padded_hw[1] // ws * pooled_ws)
            ws = pooled_ws
        return self._add_windows(shortcut, attended, ws, padded_hw)

    def _mlp_residual_(self, x: torch.Tensor) -> None:
        """``x += mlp(norm2(x))`` in place, ``CHUNK_TOKENS`` tokens at a time (inference only: ``x`` must be a
        fresh tensor; the MLP's activation is the exact GELU it is built with)."""
        fc1, fc2 = self.mlp.layers
        rows = max(1, CHUNK_TOKENS // x.shape[2])
        for top in range(0, x.shape[1], rows):
            part = x[:, top : top + rows]
            hidden = fc1(self.norm2(part))
            torch.ops.aten.gelu_(hidden)
            part.add_(fc2(hidden))

    def _add_windows(
        self, shortcut: torch.Tensor, windows: torch.Tensor, window_size: int, padded_hw: Tuple[int, int]
    ) -> torch.Tensor:
        """``shortcut + merge(windows)``: ``B x H x W x C`` plus ``(B * num_windows) x ws x ws x C`` windows."""
        b, h, w, c = shortcut.shape
        if tuple(padded_hw) != (h, w):
            merged = merge_windows(windows, window_size, padded_hw, (h, w))
            return shortcut + drop_path(merged, self.drop_path_prob, self.training)
        # Nothing to crop: add the windows to a windowed view of the shortcut instead of first copying them back
        # to image order. The sum takes the (contiguous) layout of the first operand, so it is already in
        # B x H x W x C order and the final reshape is free.
        grid_h, grid_w = h // window_size, w // window_size
        shortcut = shortcut.reshape(b, grid_h, window_size, grid_w, window_size, c)
        windows = windows.reshape(b, grid_h, grid_w, window_size, window_size, c).transpose(2, 3)
        return (shortcut + drop_path(windows, self.drop_path_prob, self.training)).reshape(b, h, w, c)


class Hiera(nn.Module):
    """The Hiera trunk of SAM 2: ``B x 3 x H x W`` image -> multi-scale ``B x C_i x H_i x W_i`` feature maps.

    With the default patch embedding (stride 4) and three q-pooling stages, the outputs have strides
    4, 8, 16 and 32 and widths ``embed_dim * dim_mul ** i``. Any input size works: windows are zero-padded
    as needed and the position embedding is resampled to the token grid.

    Args:
        embed_dim: width of the first stage.
        num_heads: attention heads of the first stage.
        drop_path_rate: final stochastic-depth rate (linearly increasing over blocks; training only).
        q_pool: how many stage transitions pool the queries (at most ``len(stages) - 1``).
        q_stride: pooling stride at those transitions.
        stages: number of blocks per stage.
        dim_mul: width multiplier at each stage transition.
        head_mul: head-count multiplier at each stage transition.
        window_pos_embed_bkg_spatial_size: size of the learned background position embedding, which is
            bicubically resized to the token grid.
        window_spec: attention window size per stage.
        global_att_blocks: indices of the blocks that use global attention instead of windows.
        return_interm_layers: return the output of every stage (otherwise only the last one).
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: Sequence[int] = (2, 2),
        stages: Sequence[int] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: Sequence[int] = (14, 14),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        global_att_blocks: Optional[Sequence[int]] = (12, 16, 20),
        return_interm_layers: bool = True,
    ) -> None:
        super().__init__()
        stages = tuple(stages)
        window_spec = tuple(window_spec)
        if len(stages) != len(window_spec):
            raise ValueError(f"stages {stages} and window_spec {window_spec} must have the same length")
        self.q_stride = tuple(q_stride)
        self.window_spec = window_spec
        self.global_att_blocks = tuple(global_att_blocks) if global_att_blocks is not None else ()
        self.window_pos_embed_bkg_spatial_size = tuple(window_pos_embed_bkg_spatial_size)
        self.return_interm_layers = return_interm_layers

        # Index of the last block of every stage.
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {q_pool}")
        # The first block of each of the first q_pool stage transitions pools its queries.
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]

        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *self.window_pos_embed_bkg_spatial_size))
        # One window's worth of embedding, tiled over the whole map; sized by the first stage's window.
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))

        depth = sum(stages)
        # Stochastic-depth rates rising linearly to drop_path_rate (plain floats, so meta-device init works).
        drop_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList()
        stage, dim = 0, embed_dim
        for i in range(depth):
            # The window size lags one block behind the stage: a transition block still attends in the
            # previous stage's windows (the pooled queries then cover windows of the new stage's size).
            window_size = 0 if i in self.global_att_blocks else window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
            self.blocks.append(
                HieraBlock(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=num_heads,
                    drop_path=drop_rates[i],
                    q_stride=self.q_stride if i in self.q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            dim = dim_out

        out_blocks = self.stage_ends[::-1] if return_interm_layers else [self.stage_ends[-1]]
        # Deepest (lowest-resolution) first, matching the FPN neck's backbone_channel_list.
        self.channel_list = [self.blocks[i].dim_out for i in out_blocks]
        self._out_blocks = set(out_blocks)
        # ((h, w), parameter values it was computed from, 1 x h x w x C embedding) of the last grid size seen;
        # see _position_embedding.
        self._pos_embed_cache: Optional[Tuple[Tuple[int, int], Tuple[torch.Tensor, ...], torch.Tensor]] = None

    def _compute_position_embedding(self, h: int, w: int) -> torch.Tensor:
        """``1 x h x w x C``: the background embedding resized to ``h x w`` plus the window embedding tiled."""
        background = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        window = self.pos_embed_window
        win_h, win_w = window.shape[-2:]
        # Tile whole windows from the top-left corner (where the window partition starts) and crop, so that
        # grids that are not a multiple of the window size get the same per-window pattern.
        tiled = window.tile(1, 1, -(-h // win_h), -(-w // win_w))[:, :, :h, :w]
        return (background + tiled).permute(0, 2, 3, 1)

    def _position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The ``1 x h x w x C`` position embedding, cached per grid size when no gradient is needed.

        The cache is checked against a copy of both parameters' values (a few thousand numbers, so the check
        costs microseconds) rather than their version counters: inference tensors (a model built or loaded inside
        ``torch.inference_mode()``) have no version counter, and in-place copies into them inside inference mode
        (``load_state_dict``) would not bump one anyway. Any change of values, device or dtype recomputes.
        """
        params = (self.pos_embed, self.pos_embed_window)
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        # Under torch.compile the embedding is folded into the graph; the Python-side cache would only break it.
        if needs_grad or torch.compiler.is_compiling():
            return self._compute_position_embedding(h, w)
        cached = self._pos_embed_cache  # one read: another thread may replace it meanwhile
        if cached is not None and cached[0] == (h, w) and self._same_values(cached[1], params):
            return cached[2]
        with torch.no_grad():
            embedding = self._compute_position_embedding(h, w).contiguous()
            snapshot = tuple(p.detach().clone() for p in params)
        self._pos_embed_cache = ((h, w), snapshot, embedding)
        return embedding

    @staticmethod
    def _same_values(snapshot: Tuple[torch.Tensor, ...], params: Tuple[torch.Tensor, ...]) -> bool:
        """Whether ``params`` still hold exactly the values (and device, dtype, shape) of ``snapshot``."""
        return all(
            s.device == p.device and s.dtype == p.dtype and s.shape == p.shape and torch.equal(s, p.detach())
            for s, p in zip(snapshot, params)
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Encode a ``B x 3 x H x W`` image batch.

        Returns:
            the stage outputs ``B x C_i x H_i x W_i``, highest resolution first (every stage if
            ``return_interm_layers``, else only the last). They are channels-first views of channels-last
            tensors, not contiguous copies.
        """
        x = self.patch_embed(x)
        # Position embedding first: the sum takes its contiguous channels-last layout, whereas the patch
        # embedding is a permuted channels-first view, which every later LayerNorm would have to copy.
        x = self._position_embedding(x.shape[1], x.shape[2]) + x
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._out_blocks:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
