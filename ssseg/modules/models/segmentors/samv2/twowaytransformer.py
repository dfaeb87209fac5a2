"""The SAM mask decoder's two-way transformer: prompt tokens and image tokens attend to each other."""

from typing import Tuple, Type

import torch
from torch import nn

from .attention import Attention
from .common import MLP


def broadcast_attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q, k, v)`` where one side may have batch 1 against batch ``B`` on the other.

    Many prompts on one image share the image tokens until the first image-side update, so the key/value (or
    query) projections of those tokens are computed once instead of ``B`` times. The result equals ``attn`` run
    on inputs repeated to batch ``B``: projections act row by row and the attention of a query row only depends
    on that row and on the keys/values it sees.

    Args:
        attn: the attention module whose projections and attention kernel are used.
        q: ``Bq x Nq x C`` queries.
        k: ``Bk x Nk x C`` keys, ``v``: ``Bk x Nk x C`` values; ``Bq == Bk`` or one of them is 1.

    Returns:
        ``max(Bq, Bk) x Nq x C``.
    """
    if q.shape[0] == k.shape[0]:
        return attn(q, k, v)
    q = attn.split_heads(attn.q_proj(q))
    k = attn.split_heads(attn.k_proj(k))
    v = attn.split_heads(attn.v_proj(v))
    if k.shape[0] == 1:
        # Shared keys: fold the query batch into the query axis and run one attention over the shared keys.
        batch, heads, length, channels = q.shape
        folded = q.transpose(0, 1).reshape(1, heads, batch * length, channels)
        out = attn.attend(folded, k, v).reshape(heads, batch, length, channels).transpose(0, 1)
    elif q.shape[0] == 1:
        # Shared queries: the projection was the expensive part; a stride-0 view feeds the per-item attention.
        out = attn.attend(q.expand(k.shape[0], -1, -1, -1), k, v)
    else:
        raise ValueError(f"cannot broadcast query batch {q.shape[0]} against key batch {k.shape[0]}")
    return attn.out_proj(attn.merge_heads(out))


class TwoWayAttentionBlock(nn.Module):
    """One decoder block: token self-attention, token-to-image attention, token MLP, image-to-token attention.

    Each sub-layer is residual and followed by a LayerNorm (post-norm). Positional encodings are added to the
    queries and keys of every attention, never to the values. With ``skip_first_layer_pe`` the self-attention
    sees the bare tokens and its output *replaces* them (no residual), as in the first SAM decoder layer.

    Args:
        embedding_dim: token width ``C``.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLP.
        activation: activation module class of the token MLP.
        attention_downsample_rate: the cross-attentions project to ``C / rate`` channels.
        skip_first_layer_pe: see above.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Update both token sets.

        Args:
            queries: ``B x Nq x C`` prompt/output tokens; ``query_pe`` has the same shape.
            keys: ``Bk x Nk x C`` image tokens with ``Bk`` equal to ``B`` or 1 (shared by the whole batch);
                ``key_pe``: ``1 x Nk x C`` or ``Bk x Nk x C``.

        Returns:
            ``(queries B x Nq x C, keys B x Nk x C)``.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        # The image tokens do not change before the last sub-layer, so their PE-augmented copy serves both
        # cross-attentions.
        keys_with_pe = keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + broadcast_attention(self.cross_attn_token_to_image, q, keys_with_pe, keys))

        queries = self.norm3(queries + self.mlp(queries))

        # The image tokens query the updated prompt tokens.
        q = queries + query_pe
        attn_out = broadcast_attention(self.cross_attn_image_to_token, keys_with_pe, q, queries)
        # ``attn_out`` goes first: it always has the full batch and a contiguous layout, which the sum inherits
        # (addition commutes exactly), so the LayerNorm does not need to copy its input.
        keys = self.norm4(attn_out + keys)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayAttentionBlock` plus a final token-to-image attention.

    Args:
        depth: number of blocks (the first one skips the query PE in its self-attention).
        embedding_dim: token width ``C``.
        num_heads: attention heads (must divide ``C / attention_downsample_rate``).
        mlp_dim: hidden width of the token MLPs.
        activation: activation module class of the token MLPs.
        attention_downsample_rate: channel reduction of the cross-attentions.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: Type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the decoder transformer.

        Args:
            image_embedding: ``Bi x C x h x w`` image features, ``Bi`` equal to ``B`` or 1 (one image shared by
                all ``B`` prompt sets; equivalent to repeating it ``B`` times, but cheaper).
            image_pe: ``1 x C x h x w`` (or ``Bi x C x h x w``) positional encoding of the image grid.
            point_embedding: ``B x N x C`` tokens; they double as the query positional encoding.

        Returns:
            ``(queries B x N x C, keys B x hw x C)``: the updated tokens and image features.
        """
        # B x C x h x w -> B x hw x C. The image tokens stay a transposed view: the first projections then run the
        # same GEMM variant as the reference (a contiguous copy would move the results by float32 rounding). The PE is
        # made contiguous once (one image's worth): the later ``keys + key_pe`` sums, on contiguous keys, then avoid a
        # slow mixed-layout loop; in the first layer the sum still takes the layout of ``keys``.
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe=point_embedding, key_pe=key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + broadcast_attention(self.final_attn_token_to_image, q, k, keys))
        return queries, keys.expand(queries.shape[0], -1, -1)
