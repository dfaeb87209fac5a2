"""SAM 2 memory attention: conditions the current frame's features on memories of past frames.

Each layer is pre-norm self-attention over the current frame, cross-attention from the frame to the memory bank
(spatial memories of a few frames followed by object-pointer tokens) and an MLP. Both attentions use 2-D axial
rotary position encoding (RoPE); the object-pointer tokens, which have no grid position, are left unrotated.
"""

import copy
import math
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .common import activation_fn


def axial_rope_angles(head_dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles of 2-D axial RoPE for the tokens of an ``end_y x end_x`` grid in raster order.

    Channel pair ``j < head_dim/4`` of token ``t`` turns by ``x(t) * f_j`` and pair ``head_dim/4 + j`` by
    ``y(t) * f_j``, where ``x(t) = t mod end_x``, ``y(t) = t div end_x`` and ``f_j = theta ** (-4j / head_dim)``.

    Returns:
        ``(end_x * end_y) x head_dim/2`` float32 angles (radians).
    """
    if head_dim % 4 != 0:
        raise ValueError(f"axial RoPE needs a head dim divisible by 4, got {head_dim}")
    # 1 / theta**e (reciprocal of the power, not a negative power) keeps the frequencies bit-identical to SAM 2's.
    exponents = torch.arange(0, head_dim, 4, dtype=torch.float32) / head_dim
    freqs = 1.0 / theta**exponents
    col = torch.arange(end_x, dtype=torch.float32).repeat(end_y)
    row = torch.arange(end_y, dtype=torch.float32).repeat_interleave(end_x)
    return torch.cat([col[:, None] * freqs, row[:, None] * freqs], dim=1)


@lru_cache(maxsize=32)
def axial_rope_table(head_dim: int, end_x: int, end_y: int, theta: float, device: torch.device) -> torch.Tensor:
    """Unit complex numbers ``exp(i * angle)`` of :func:`axial_rope_angles`: ``N x head_dim/2`` complex64.

    The table depends only on its arguments, so one copy per (grid, device) is shared by every layer. It is
    built outside inference mode so that the cached tensor can also be saved for backward in a later training
    step. Callers must not modify the returned tensor.
    """
    with torch.inference_mode(False), torch.no_grad():
        angles = axial_rope_angles(head_dim, end_x, end_y, theta)
        return torch.polar(torch.ones_like(angles), angles).to(device)


def rotate_pairs_(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs ``(x[..., 2j], x[..., 2j+1])`` of every token by the complex ``table``, in place.

    Args:
        x: ``... x N x c`` tokens; ``x`` is overwritten (it is always a fresh projection output here).
        table: ``N x c/2`` complex rotations, broadcast over the leading dims of ``x``.

    Returns:
        ``x`` (the same tensor object), rotated. Non-fp32 inputs are rotated in fp32 and rounded back, as SAM 2
        does under autocast.
    """
    shape = (*x.shape[:-1], x.shape[-1] // 2, 2)
    if x.dtype == torch.float32:
        # Complex view of the same storage: one read-modify-write pass, no temporary. (Needs even strides and
        # offset, which holds for the head-split projections this is used on: head dims are multiples of 4.)
        torch.view_as_complex(x.view(shape)).mul_(table)
    else:
        rotated = torch.view_as_complex(x.float().reshape(shape)) * table
        x.copy_(torch.view_as_real(rotated).flatten(-2))
    return x


def rotate_pairs_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Out-of-place :func:`rotate_pairs_` with real ``cos`` / ``sin`` tables (``N x c/2`` each): the same rotation
    without complex tensors, which the ONNX exporter cannot translate. Equal up to rounding, so it is only used for
    export (see :attr:`RoPEAttention.real_rotation`)."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


class RoPEAttention(Attention):
    """:class:`Attention` with 2-D axial rotary position encoding of queries and keys.

    The queries form a square grid (``side = sqrt(Nq)``, or ``feat_sizes`` when its area equals ``Nq``); the
    RoPE table is derived from the actual token count on every call and cached per grid and device.

    Keys: the first ``Nk - num_k_exclude_rope`` keys are rotated; the trailing ``num_k_exclude_rope`` ones
    (object pointers) are not. Without ``rope_k_repeat`` the rotated keys must be exactly the query grid;
    with it they may be several frames of that grid (``r * Nq`` tokens), each frame rotated like the queries.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: Optional[int] = None,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: Sequence[int] = (64, 64),
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, dropout, kv_in_dim)
        self.head_dim = self.internal_dim // num_heads
        if self.head_dim % 4 != 0:
            raise ValueError(f"axial RoPE needs a head dim divisible by 4, got {self.head_dim}")
        self.rope_theta = float(rope_theta)
        self.rope_k_repeat = rope_k_repeat
        # (width, height); only a preferred layout for non-square grids, never a fixed size.
        self.feat_sizes = (int(feat_sizes[0]), int(feat_sizes[1]))

    # Set (on a copy of the model) by the ONNX export: rotate with real cos / sin, out of place, and read the key
    # frame count from the shapes; the PyTorch path keeps the complex in-place rotation (bit-identical to SAM 2).
    real_rotation: bool = False

    def grid_size(self, num_tokens: int) -> Tuple[int, int]:
        """``(width, height)`` of the query grid holding ``num_tokens`` tokens."""
        if self.feat_sizes[0] * self.feat_sizes[1] == num_tokens:
            return self.feat_sizes
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"RoPE expects a square token grid, got {num_tokens} query tokens")
        return side, side

    def rope_table(self, num_tokens: int, device: torch.device) -> torch.Tensor:
        """``num_tokens x head_dim/2`` complex rotations of the query grid (cached)."""
        end_x, end_y = self.grid_size(num_tokens)
        return axial_rope_table(self.head_dim, end_x, end_y, self.rope_theta, torch.device(device))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
        """Attend ``q`` (``B x Nq x C``) to ``k``/``v`` (``B x Nk x kv_in_dim``); returns ``B x Nq x C``."""
        q = self.split_heads(self.q_proj(q))
        k = self.split_heads(self.k_proj(k))
        v = self.split_heads(self.v_proj(v))

        num_q = q.shape[-2]
        num_k_rope = k.shape[-2] - num_k_exclude_rope
        if self.real_rotation:
            q, k = self.rotate_real(q, k, num_k_rope)
            return self.out_proj(self.merge_heads(self.attend(q, k, v)))
        if num_k_exclude_rope < 0 or num_k_rope < 0:
            raise ValueError(f"num_k_exclude_rope={num_k_exclude_rope} is outside [0, {k.shape[-2]}]")
        table = self.rope_table(num_q, q.device)
        rotate_pairs_(q, table)
        if num_k_rope > 0:
            k_rope = k[:, :, :num_k_rope]  # a view: rotated in place inside k
            if num_k_rope != num_q:
                if not self.rope_k_repeat or num_k_rope % num_q != 0:
                    raise ValueError(
                        f"{num_k_rope} rotated keys do not match {num_q} queries"
                        + ("" if self.rope_k_repeat else " (set rope_k_repeat for multi-frame keys)")
                    )
                # B x heads x frames x Nq x c: the table broadcasts over frames instead of being repeated.
                k_rope = k_rope.unflatten(2, (num_k_rope // num_q, num_q))
            rotate_pairs_(k_rope, table)

        return self.out_proj(self.merge_heads(self.attend(q, k, v)))

    def rotate_real(self, q: torch.Tensor, k: torch.Tensor, num_k_rope: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rotate ``q`` and the first ``num_k_rope`` keys (any number of query-grid frames) with real tables."""
        num_q = q.shape[-2]
        end_x, end_y = self.grid_size(num_q)
        angles = axial_rope_angles(self.head_dim, end_x, end_y, self.rope_theta).to(q.device)
        cos, sin = angles.cos(), angles.sin()
        b, h, _, c = k.shape
        k_rope = rotate_pairs_real(k[:, :, :num_k_rope].reshape(b, h, -1, num_q, c), cos, sin)
        k = torch.cat([k_rope.reshape(b, h, -1, c), k[:, :, num_k_rope:]], dim=2)
        return rotate_pairs_real(q, cos, sin), k


AttentionSpec = Union[Dict, nn.Module]


def _build_attention(spec: AttentionSpec) -> nn.Module:
    """A :class:`RoPEAttention` from a kwargs dict; an already built module is used as is."""
    return spec if isinstance(spec, nn.Module) else RoPEAttention(**spec)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the memory bank, then an MLP, each with a residual.

    Tokens are batch-first: ``B x N x d_model`` for the current frame and ``B x M x kv_in_dim`` for memories.
    """

    def __init__(
        self,
        activation: str,
        cross_attention: AttentionSpec,
        d_model: int,
        dim_feedforward: int,
        dropout: float,
        pos_enc_at_attn: bool,
        pos_enc_at_cross_attn_keys: bool,
        pos_enc_at_cross_attn_queries: bool,
        self_attention: AttentionSpec,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.self_attn = _build_attention(self_attention)
        self.cross_attn_image = _build_attention(cross_attention)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = activation_fn(activation)
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    def cross_attention_keys(self, memory: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        """Input of the cross-attention key projection: ``memory (+ pos)``, ``B x M x kv_in_dim``."""
        return memory + pos if self.pos_enc_at_cross_attn_keys and pos is not None else memory

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: Optional[torch.Tensor] = None,
        query_pos: Optional[torch.Tensor] = None,
        num_k_exclude_rope: int = 0,
        memory_keys: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Update the current-frame tokens.

        Args:
            tgt: ``B x N x d_model`` current-frame tokens.
            memory: ``B x M x kv_in_dim`` memory tokens (the cross-attention values).
            pos: ``B x M x kv_in_dim`` memory position encoding, or None.
            query_pos: ``B x N x d_model`` current-frame position encoding, or None.
            num_k_exclude_rope: trailing memory tokens (object pointers) that get no rotary encoding.
            memory_keys: precomputed :meth:`cross_attention_keys` (shared by all layers); overrides ``pos``.

        Returns:
            ``B x N x d_model`` updated tokens.
        """
        x = self.norm1(tgt)
        qk = x + query_pos if self.pos_enc_at_attn and query_pos is not None else x
        tgt = tgt + self.dropout1(self.self_attn(qk, qk, x))

        x = self.norm2(tgt)
        q = x + query_pos if self.pos_enc_at_cross_attn_queries and query_pos is not None else x
        k = memory_keys if memory_keys is not None else self.cross_attention_keys(memory, pos)
        if isinstance(self.cross_attn_image, RoPEAttention):
            x = self.cross_attn_image(q, k, memory, num_k_exclude_rope=num_k_exclude_rope)
        elif num_k_exclude_rope > 0:
            raise ValueError("num_k_exclude_rope needs a RoPEAttention cross-attention")
        else:
            x = self.cross_attn_image(q, k, memory)
        tgt = tgt + self.dropout2(x)

        hidden = self.linear1(self.norm3(tgt))
        if self.activation is F.relu and not (torch.is_grad_enabled() or self.training):
            hidden.relu_()  # a fresh tensor: in place saves a second N x dim_feedforward buffer
        else:
            hidden = self.dropout(self.activation(hidden))
        return tgt + self.dropout3(self.linear2(hidden))


def _single(x: Union[torch.Tensor, List[torch.Tensor], None], name: str) -> Optional[torch.Tensor]:
    """Unwrap the one-element lists SAM 2 passes for single-level features."""
    if isinstance(x, (list, tuple)):
        if len(x) != 1:
            raise ValueError(f"{name} must hold exactly one feature level, got {len(x)}")
        return x[0]
    return x


class MemoryAttention(nn.Module):
    """A stack of :class:`MemoryAttentionLayer` followed by a final LayerNorm.

    Inputs and output are sequence-first, as in SAM 2: ``N x B x C``.
    """

    def __init__(
        self, d_model: int, pos_enc_at_input: bool, layer: Dict, num_layers: int, batch_first: bool = True
    ) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("the layers' attention is batch-first; batch_first=False is not supported")
        self.d_model = d_model
        self.num_layers = num_layers
        self.pos_enc_at_input = pos_enc_at_input
        self.batch_first = batch_first
        # Deep copies of one prototype: every layer starts from the same initial weights, as in SAM 2.
        prototype = MemoryAttentionLayer(**layer) if isinstance(layer, dict) else layer
        self.layers = nn.ModuleList(copy.deepcopy(prototype) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        curr: Union[torch.Tensor, List[torch.Tensor]],
        memory: torch.Tensor,
        curr_pos: Union[torch.Tensor, List[torch.Tensor], None] = None,
        memory_pos: Optional[torch.Tensor] = None,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """Condition the current frame on the memory bank.

        Args:
            curr: ``N x B x d_model`` current-frame tokens (or a one-element list of it).
            memory: ``M x B x kv_in_dim`` memory tokens: spatial memories, then ``num_obj_ptr_tokens`` pointers.
            curr_pos: ``N x B x d_model`` position encoding of ``curr`` (or a one-element list), or None.
            memory_pos: ``M x B x kv_in_dim`` position encoding of ``memory``, or None.
            num_obj_ptr_tokens: trailing memory tokens that get no rotary encoding.

        Returns:
            ``N x B x d_model`` (a transposed view of a batch-first tensor, like SAM 2's output).
        """
        curr = _single(curr, "curr")
        curr_pos = _single(curr_pos, "curr_pos")
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(f"batch size of curr ({curr.shape[1]}) and memory ({memory.shape[1]}) differ")

        x = curr
        if self.pos_enc_at_input and curr_pos is not None:
            x = x + 0.1 * curr_pos
        # Batch-first and contiguous once here (a no-op for B=1), so the per-layer projections never re-copy.
        x = x.transpose(0, 1).contiguous()
        memory = memory.transpose(0, 1).contiguous()
        query_pos = curr_pos.transpose(0, 1) if curr_pos is not None else None
        pos = memory_pos.transpose(0, 1) if memory_pos is not None else None
        # memory + pos is the same for every layer: add it once instead of once per layer.
        shared_keys: Dict[bool, torch.Tensor] = {}
        for layer in self.layers:
            adds_pos = layer.pos_enc_at_cross_attn_keys and pos is not None
            if adds_pos not in shared_keys:
                shared_keys[adds_pos] = layer.cross_attention_keys(memory, pos)
            x = layer(
                x,
                memory,
                pos=pos,
                query_pos=query_pos,
                num_k_exclude_rope=num_obj_ptr_tokens,
                memory_keys=shared_keys[adds_pos],
            )
        return self.norm(x).transpose(0, 1)
