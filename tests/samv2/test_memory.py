"""Video memory modules against the official sam2 oracle: memory attention (axial RoPE) and memory encoder.

Both sides get the same deterministic random weights, chosen so that bugs cannot hide: LayerNorm gains away from 1,
non-zero biases, ConvNeXt layer scales of ~0.4 instead of 1e-6, and sharpened attention logits so that the memory
read-out is far from a uniform average.
"""

import copy
import importlib
import os
import zlib
from typing import Any, Dict

import pytest
import torch
from torch import nn

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2.common import LayerNorm2d
from ssseg.modules.models.segmentors.samv2.memoryattention import (
    MemoryAttention,
    RoPEAttention,
    axial_rope_table,
)
from ssseg.modules.models.segmentors.samv2.memoryencoder import MemoryEncoder

TOL = 1e-4
NUM_PTR_TOKENS = 4  # SAM 2 splits each 256-dim object pointer into 4 tokens of the 64-dim memory width


def _official_yaml() -> Dict[str, Any]:
    import sam2
    from omegaconf import OmegaConf

    path = os.path.join(os.path.dirname(sam2.__file__), "configs/sam2.1/sam2.1_hiera_t.yaml")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)["model"]


def _strip_targets(node: Any) -> Any:
    """The yaml node as plain kwargs dicts (how this project's configs spell sub-modules)."""
    if isinstance(node, dict):
        return {k: _strip_targets(v) for k, v in node.items() if k != "_target_"}
    return node


def _instantiate(node: Any) -> Any:
    """Build the official classes named by ``_target_`` (a minimal stand-in for hydra.utils.instantiate)."""
    if isinstance(node, dict):
        kwargs = {k: _instantiate(v) for k, v in node.items() if k != "_target_"}
        if "_target_" not in node:
            return kwargs
        module_name, cls_name = node["_target_"].rsplit(".", 1)
        return getattr(importlib.import_module(module_name), cls_name)(**kwargs)
    return node


def _norm_param_names(model: nn.Module) -> set:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or type(module).__name__ == "LayerNorm2d":
            names.update(f"{prefix}.{p}" for p, _ in module.named_parameters())
    return names


def _random_weights(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Deterministic weights for ``model``'s state dict: each tensor from a generator seeded by its key."""
    norms = _norm_param_names(model)
    state = {}
    for key, ref in model.state_dict().items():
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        u = torch.rand(ref.shape, generator=gen, dtype=torch.float64)
        if key in norms and key.endswith("weight"):
            t = 0.75 + 0.5 * u
        elif key.endswith("bias"):
            t = 0.2 * u - 0.1
        elif key.endswith("gamma"):  # ConvNeXt layer scale: +-[0.3, 0.5] instead of 1e-6
            t = torch.where(u < 0.5, -1.0, 1.0) * (0.3 + 0.4 * torch.abs(u - 0.5))
        else:  # uniform with std 1/sqrt(fan_in)
            fan_in = ref[0].numel()
            t = (2 * u - 1) * (3.0 / fan_in) ** 0.5
            proj = key.rsplit(".", 2)[-2]
            if ".cross_attn_image." in key and proj in ("q_proj", "k_proj", "v_proj"):
                t = t * 3.0  # sharp memory read-out, not a near-uniform average
            elif ".self_attn." in key and proj in ("q_proj", "k_proj"):
                t = t * 2.0
        state[key] = t.float()
    return state


@pytest.fixture(scope="module")
def cfgs():
    yaml = _official_yaml()
    ours, _ = getconfig("sam2.1_hiera_tiny")
    for name in ("memory_attention", "memory_encoder"):
        assert ours[name] == _strip_targets(yaml[name]), f"project config {name} differs from the official yaml"
    return yaml, ours


@pytest.fixture(scope="module")
def attention_pair(cfgs):
    yaml, ours_cfg = cfgs
    official = _instantiate(yaml["memory_attention"]).eval()
    ours = MemoryAttention(**ours_cfg["memory_attention"]).eval()
    weights = _random_weights(official)
    official.load_state_dict(weights, strict=True)
    ours.load_state_dict(weights, strict=True)
    return ours, official


@pytest.fixture(scope="module")
def encoder_pair(cfgs):
    yaml, ours_cfg = cfgs
    official = _instantiate(yaml["memory_encoder"]).eval()
    ours = MemoryEncoder(**ours_cfg["memory_encoder"]).eval()
    weights = _random_weights(official)
    official.load_state_dict(weights, strict=True)
    ours.load_state_dict(weights, strict=True)
    return ours, official


def _memory_inputs(side: int, batch: int, frames: int = 2, seed: int = 0):
    """curr/curr_pos ``N x B x 256``, memory/memory_pos ``(frames*N + 4) x B x 64`` (sequence-first)."""
    gen = torch.Generator().manual_seed(seed)
    n = side * side
    curr = torch.randn(n, batch, 256, generator=gen)
    curr_pos = torch.randn(n, batch, 256, generator=gen)
    memory = torch.randn(frames * n + NUM_PTR_TOKENS, batch, 64, generator=gen)
    memory[-NUM_PTR_TOKENS:] *= 3.0  # prominent pointers, so mishandling them would show
    memory_pos = 0.5 * torch.randn(frames * n + NUM_PTR_TOKENS, batch, 64, generator=gen)
    return curr, memory, curr_pos, memory_pos


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_state_dict_layout_matches_official(attention_pair, encoder_pair):
    for ours, official in (attention_pair, encoder_pair):
        ours_sd, off_sd = ours.state_dict(), official.state_dict()
        assert list(ours_sd) == list(off_sd)
        assert all(ours_sd[k].shape == v.shape for k, v in off_sd.items())


def test_rope_table_is_bit_exact_and_cached():
    from sam2.modeling.position_encoding import compute_axial_cis

    cpu = torch.device("cpu")
    for head_dim, end_x, end_y in ((256, 64, 64), (256, 32, 32), (16, 8, 4)):
        assert torch.equal(
            axial_rope_table(head_dim, end_x, end_y, 10000.0, cpu), compute_axial_cis(head_dim, end_x, end_y)
        )
    # one table per (grid, device), shared by every layer
    a = RoPEAttention(256, 1, feat_sizes=(64, 64))
    b = RoPEAttention(256, 1, kv_in_dim=64, rope_k_repeat=True)
    assert a.rope_table(1024, cpu) is b.rope_table(1024, cpu)
    assert a.rope_table(1024, cpu).shape == (1024, 128) and a.grid_size(256) == (16, 16)
    assert RoPEAttention(64, 2, feat_sizes=(8, 4)).grid_size(32) == (8, 4)  # non-square feat_sizes when they fit


@pytest.mark.parametrize(
    "kwargs, num_q, num_k, exclude",
    [
        (
            {"embedding_dim": 64, "num_heads": 2, "downsample_rate": 2, "kv_in_dim": 32, "rope_k_repeat": True},
            64,
            197,
            5,
        ),
        ({"embedding_dim": 64, "num_heads": 2, "kv_in_dim": 32, "rope_k_repeat": True}, 64, 5, 5),  # pointers only
        ({"embedding_dim": 64, "num_heads": 4}, 64, 64, 0),  # self-attention
        ({"embedding_dim": 64, "num_heads": 1, "feat_sizes": (8, 4)}, 32, 32, 0),  # non-square feat_sizes
    ],
)
def test_rope_attention_matches_official(kwargs, num_q, num_k, exclude):
    from sam2.modeling.sam.transformer import RoPEAttention as OfficialRoPEAttention

    official = OfficialRoPEAttention(**kwargs).eval()
    ours = RoPEAttention(**kwargs).eval()
    ours.load_state_dict(_random_weights(official), strict=True)
    official.load_state_dict(ours.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, num_q, kwargs["embedding_dim"], generator=gen)
    k = torch.randn(2, num_k, kwargs.get("kv_in_dim", kwargs["embedding_dim"]), generator=gen)
    v = torch.randn(k.shape, generator=gen)
    with torch.no_grad():
        diff = _max_diff(ours(q, k, v, num_k_exclude_rope=exclude), official(q, k, v, num_k_exclude_rope=exclude))
    assert diff <= 1e-5, diff


def test_rope_attention_rejects_bad_shapes():
    x = torch.randn(1, 12, 64)
    with pytest.raises(ValueError, match="square token grid"):
        RoPEAttention(64, 1)(x, x, x)
    q, k = torch.randn(1, 16, 64), torch.randn(1, 36, 64)
    with pytest.raises(ValueError, match="rope_k_repeat"):
        RoPEAttention(64, 1)(q, k, k, num_k_exclude_rope=4)
    with pytest.raises(ValueError, match="do not match"):
        RoPEAttention(64, 1, rope_k_repeat=True)(q, k, k, num_k_exclude_rope=3)
    with pytest.raises(ValueError, match="outside"):
        RoPEAttention(64, 1, rope_k_repeat=True)(q, k, k, num_k_exclude_rope=40)


# (grid side, batch, layers): the full 64x64 grid of a 1024 image with the full 4-layer stack; batch 2 on the full grid
# with one layer (a 4-layer batch-2 pass on both sides would take most of the time budget); a 32x32 grid (a 512
# image) with all layers, showing the RoPE tables follow the actual size.
@pytest.mark.parametrize("side, batch, layers", [(64, 1, 4), (64, 2, 1), (32, 2, 4)])
def test_memory_attention_matches_official(attention_pair, side, batch, layers):
    ours, official = attention_pair
    if layers != len(ours.layers):
        ours, official = copy.deepcopy(ours), copy.deepcopy(official)
        ours.layers, official.layers = ours.layers[:layers], official.layers[:layers]
    curr, memory, curr_pos, memory_pos = _memory_inputs(side, batch)
    with torch.inference_mode():
        expected = official([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=NUM_PTR_TOKENS)
        got = ours([curr], memory, [curr_pos], memory_pos, num_obj_ptr_tokens=NUM_PTR_TOKENS)
        got_plain = ours(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=NUM_PTR_TOKENS)
    diff = _max_diff(got, expected)
    print(f"memory attention {side}x{side} B={batch} layers={layers}: max|diff| {diff:.2e}")
    assert diff <= TOL
    assert torch.equal(got, got_plain)  # a one-element list is the same as the tensor


def test_memory_attention_is_sensitive(attention_pair):
    """The comparison would catch real bugs: pointer handling and a 1e-2 weight change both exceed the tolerance."""
    ours, official = attention_pair
    curr, memory, curr_pos, memory_pos = _memory_inputs(16, 2)
    perturbed = copy.deepcopy(ours)
    with torch.no_grad():
        perturbed.layers[2].cross_attn_image.k_proj.weight[7, 3] += 1e-2
    with torch.inference_mode():
        expected = official(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=NUM_PTR_TOKENS)
        assert _max_diff(ours(curr, memory, curr_pos, memory_pos, NUM_PTR_TOKENS), expected) <= TOL
        no_ptrs = official(curr, memory[:-NUM_PTR_TOKENS], curr_pos, memory_pos[:-NUM_PTR_TOKENS])
        diff = _max_diff(perturbed(curr, memory, curr_pos, memory_pos, NUM_PTR_TOKENS), expected)
    ptr_effect = _max_diff(no_ptrs, expected)
    print(f"pointer tokens change the output by {ptr_effect:.2e}; a 1e-2 weight perturbation by {diff:.2e}")
    assert ptr_effect > 100 * TOL
    assert diff > 10 * TOL


def test_memory_attention_gradients_match_official(attention_pair):
    """The in-place rotary encoding is autograd-safe, also with a RoPE table first built in inference mode."""
    ours, official = attention_pair
    axial_rope_table.cache_clear()
    inputs = _memory_inputs(8, 2, frames=3)
    with torch.inference_mode():
        ours(*inputs, num_obj_ptr_tokens=NUM_PTR_TOKENS)
    grads = []
    for model in (ours, official):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        model.zero_grad()
        out = model(*leaves, num_obj_ptr_tokens=NUM_PTR_TOKENS)
        (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
        grads.append([t.grad for t in leaves] + [model.layers[1].cross_attn_image.q_proj.weight.grad])
        model.zero_grad()
    for a, b in zip(*grads):
        assert _max_diff(a, b) <= TOL * max(1.0, b.abs().max().item())


def test_memory_attention_bf16_matches_official(attention_pair):
    """Non-fp32 inputs take the out-of-place rotation (in fp32, rounded back), as the official does."""
    ours, official = (copy.deepcopy(m).to(torch.bfloat16) for m in attention_pair)
    inputs = [t.to(torch.bfloat16) for t in _memory_inputs(8, 1)]
    with torch.inference_mode():
        got = ours(*inputs, num_obj_ptr_tokens=NUM_PTR_TOKENS).float()
        expected = official(*inputs, num_obj_ptr_tokens=NUM_PTR_TOKENS).float()
    assert got.dtype == expected.dtype and _max_diff(got, expected) <= 2e-2


def test_memory_attention_input_checks(attention_pair):
    ours, _ = attention_pair
    curr, memory, curr_pos, memory_pos = _memory_inputs(4, 2)
    with pytest.raises(ValueError, match="batch size"):
        ours(curr, memory[:, :1], curr_pos, memory_pos[:, :1])
    with pytest.raises(ValueError, match="exactly one"):
        ours([curr, curr], memory, [curr_pos, curr_pos], memory_pos)
    with pytest.raises(ValueError, match="batch_first"):
        MemoryAttention(
            256,
            True,
            layer=getconfig("sam2.1_hiera_tiny")[0]["memory_attention"]["layer"],
            num_layers=1,
            batch_first=False,
        )


@pytest.mark.parametrize("skip_mask_sigmoid, batch", [(False, 1), (True, 2)])
def test_memory_encoder_matches_official(encoder_pair, skip_mask_sigmoid, batch):
    ours, official = encoder_pair
    gen = torch.Generator().manual_seed(3)
    pix_feat = torch.randn(batch, 256, 64, 64, generator=gen)
    masks = 4.0 * torch.randn(batch, 1, 1024, 1024, generator=gen)
    if skip_mask_sigmoid:  # what SAM 2 feeds: a scaled, biased sigmoid of the mask logits
        masks = torch.sigmoid(masks) * 20.0 - 10.0
    with torch.inference_mode():
        expected = official(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        got = ours(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert set(got) == {"vision_features", "vision_pos_enc"} and len(got["vision_pos_enc"]) == 1
    feat_diff = _max_diff(got["vision_features"], expected["vision_features"])
    pos_diff = _max_diff(got["vision_pos_enc"][0], expected["vision_pos_enc"][0])
    print(
        f"memory encoder B={batch} skip_mask_sigmoid={skip_mask_sigmoid}: features {feat_diff:.2e}, pos {pos_diff:.2e}"
    )
    assert got["vision_features"].shape == (batch, 64, 64, 64)
    assert feat_diff <= TOL and pos_diff <= TOL


def test_memory_encoder_is_sensitive(encoder_pair):
    ours, official = encoder_pair
    gen = torch.Generator().manual_seed(4)
    pix_feat, masks = torch.randn(1, 256, 16, 16, generator=gen), torch.randn(1, 1, 256, 256, generator=gen)
    perturbed = copy.deepcopy(ours)
    with torch.no_grad():
        perturbed.mask_downsampler.encoder[3].weight[5, 2, 1, 1] += 1e-2
    with torch.inference_mode():
        expected = official(pix_feat, masks)["vision_features"]
        assert _max_diff(ours(pix_feat, masks)["vision_features"], expected) <= TOL
        diff = _max_diff(perturbed(pix_feat, masks)["vision_features"], expected)
    print(f"memory encoder: a 1e-2 weight perturbation changes the output by {diff:.2e}")
    assert diff > 10 * TOL


def test_memory_encoder_module_layout():
    enc = MemoryEncoder(**getconfig("sam2.1_hiera_tiny")[0]["memory_encoder"])
    kinds = [type(m).__name__ for m in enc.mask_downsampler.encoder]
    assert kinds == ["Conv2d", "LayerNorm2d", "GELU"] * 4 + ["Conv2d"]
    assert isinstance(enc.mask_downsampler.encoder[1], LayerNorm2d)
    assert [m.out_channels for m in enc.mask_downsampler.encoder if isinstance(m, nn.Conv2d)] == [4, 16, 64, 256, 256]
    assert isinstance(enc.fuser.proj, nn.Identity) and len(enc.fuser.layers) == 2
    assert enc.out_proj.out_channels == 64
