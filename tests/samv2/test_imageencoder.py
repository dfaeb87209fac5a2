"""The SAM 2 image encoder (Hiera trunk + FPN neck) against Meta's reference implementation.

The reference package ``sam2`` is a test oracle only. Both encoders are built from the same arguments as the
official yaml configs, get the same deterministic random weights, and must agree to fp32 noise.
"""

import zlib
from typing import Dict, Tuple

import pytest
import torch
from sam2.modeling.backbones.hieradet import Hiera as RefHiera
from sam2.modeling.backbones.image_encoder import FpnNeck as RefFpnNeck
from sam2.modeling.backbones.image_encoder import ImageEncoder as RefImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine as RefPositionEmbeddingSine
from torch import nn

from ssseg.modules.models.backbones.hiera import Hiera
from ssseg.modules.models.segmentors.samv2.fpnneck import FPNNeck, ImageEncoder

# Trunk arguments of the four official yaml configs (identical in SAM 2 and SAM 2.1).
TRUNK_CONFIGS: Dict[str, dict] = {
    "tiny": dict(
        embed_dim=96,
        num_heads=1,
        stages=[1, 2, 7, 2],
        global_att_blocks=[5, 7, 9],
        window_pos_embed_bkg_spatial_size=[7, 7],
    ),
    "small": dict(
        embed_dim=96,
        num_heads=1,
        stages=[1, 2, 11, 2],
        global_att_blocks=[7, 10, 13],
        window_pos_embed_bkg_spatial_size=[7, 7],
    ),
    "base_plus": dict(embed_dim=112, num_heads=2),
    "large": dict(
        embed_dim=144,
        num_heads=2,
        stages=[2, 6, 36, 4],
        global_att_blocks=[23, 33, 43],
        window_pos_embed_bkg_spatial_size=[7, 7],
        window_spec=[8, 4, 16, 8],
    ),
}
POSITION_ENCODING = dict(num_pos_feats=256, normalize=True, scale=None, temperature=10000)
ATOL = 1e-4


def neck_config(embed_dim: int, **overrides) -> dict:
    """Neck arguments of the official yaml configs for a trunk of width ``embed_dim``."""
    cfg = dict(
        d_model=256,
        backbone_channel_list=[8 * embed_dim, 4 * embed_dim, 2 * embed_dim, embed_dim],
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    cfg.update(overrides)
    return cfg


def build_ours(name: str, scalp: int = 0, **neck_overrides) -> ImageEncoder:
    trunk_cfg = TRUNK_CONFIGS[name]
    neck = FPNNeck(position_encoding=dict(POSITION_ENCODING), **neck_config(trunk_cfg["embed_dim"], **neck_overrides))
    return ImageEncoder(trunk=Hiera(**trunk_cfg), neck=neck, scalp=scalp)


def build_reference(name: str, scalp: int = 0, **neck_overrides) -> nn.Module:
    trunk_cfg = TRUNK_CONFIGS[name]
    neck = RefFpnNeck(
        position_encoding=RefPositionEmbeddingSine(**POSITION_ENCODING),
        **neck_config(trunk_cfg["embed_dim"], **neck_overrides),
    )
    return RefImageEncoder(trunk=RefHiera(**trunk_cfg), neck=neck, scalp=scalp)


def random_weights(state_dict: Dict[str, torch.Tensor], seed: int = 0) -> Dict[str, torch.Tensor]:
    """Deterministic weights that make every parameter matter, keyed on state-dict names.

    Each tensor has its own generator (seeded from the key), is drawn in float64 and cast to float32 once.
    LayerNorms are visibly non-identity, biases non-zero, and the (zero-initialised) position embeddings get
    magnitudes of 0.3..0.5 with random signs, so that a missing or misplaced term shows up in the outputs.
    """
    weights = {}
    for key, ref in state_dict.items():
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        uniform = torch.rand(ref.shape, generator=gen, dtype=torch.float64)
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("pos_embed", "pos_embed_window"):
            sign = torch.where(torch.rand(ref.shape, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
            value = sign * (0.3 + 0.2 * uniform)
        elif "norm" in key and leaf == "weight":
            value = 0.75 + 0.5 * uniform
        elif leaf == "bias":
            value = 0.2 * uniform - 0.1
        else:
            # Linear / conv weights with variance 1 / fan_in, so activations stay O(1) through the blocks.
            fan_in = ref[0].numel()
            value = (2 * uniform - 1) * (3.0 / fan_in) ** 0.5
        weights[key] = value.to(torch.float32)
    return weights


def flat_outputs(out: dict) -> Dict[str, torch.Tensor]:
    flat = {"vision_features": out["vision_features"]}
    for i, (feat, pos) in enumerate(zip(out["backbone_fpn"], out["vision_pos_enc"])):
        flat[f"backbone_fpn.{i}"] = feat
        flat[f"vision_pos_enc.{i}"] = pos
    return flat


def max_diffs(ours: dict, ref: dict) -> Dict[str, Tuple[float, float]]:
    """``name -> (max abs difference, max abs reference value)`` for every output tensor."""
    ours, ref = flat_outputs(ours), flat_outputs(ref)
    assert ours.keys() == ref.keys()
    diffs = {}
    for name in ref:
        assert ours[name].shape == ref[name].shape, f"{name}: {tuple(ours[name].shape)} vs {tuple(ref[name].shape)}"
        diffs[name] = ((ours[name] - ref[name]).abs().max().item(), ref[name].abs().max().item())
    return diffs


def report(diffs: Dict[str, Tuple[float, float]]) -> str:
    return ", ".join(f"{name}: {diff:.2e} (scale {scale:.1f})" for name, (diff, scale) in diffs.items())


def mismatches(diffs: Dict[str, Tuple[float, float]]) -> Dict[str, Tuple[float, float]]:
    # A plain absolute tolerance: with these weights the outputs are O(10) and agree to ~1e-6.
    return {name: d for name, d in diffs.items() if d[0] > ATOL}


@pytest.mark.parametrize("name", list(TRUNK_CONFIGS))
def test_state_dict_matches_official(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference computes its drop-path rates with torch.linspace(...).item(), which meta tensors cannot do;
    # pin that call to the CPU so that both models can be built on the meta device without allocating weights.
    linspace = torch.linspace
    monkeypatch.setattr(torch, "linspace", lambda *args, **kwargs: linspace(*args, **{**kwargs, "device": "cpu"}))
    with torch.device("meta"):
        ours, ref = build_ours(name, scalp=1), build_reference(name, scalp=1)
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours_shapes.keys() == ref_shapes.keys(), (
        f"missing: {sorted(ref_shapes.keys() - ours_shapes.keys())}, "
        f"unexpected: {sorted(ours_shapes.keys() - ref_shapes.keys())}"
    )
    assert ours_shapes == ref_shapes
    assert ours.trunk.channel_list == list(ref.trunk.channel_list)


@pytest.fixture(scope="module")
def tiny_pair() -> Tuple[ImageEncoder, nn.Module, Dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    ours, ref = build_ours("tiny").eval(), build_reference("tiny").eval()
    weights = random_weights(ref.state_dict())
    ref.load_state_dict(weights, strict=True)
    ours.load_state_dict(weights, strict=True)
    return ours, ref, weights


@torch.no_grad()
def test_tiny_parity_1024(tiny_pair) -> None:
    ours, ref, _ = tiny_pair
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    out = ours(image)
    assert [tuple(f.shape[-2:]) for f in out["backbone_fpn"]] == [(256, 256), (128, 128), (64, 64), (32, 32)]
    diffs = max_diffs(out, ref(image))
    assert not mismatches(diffs), report(diffs)


@pytest.mark.parametrize("size, batch", [(1024, 1), (512, 2), (256, 1)])
def test_trunk_is_bit_identical(tiny_pair, size: int, batch: int) -> None:
    """The trunk's inference path (bands of windows, projecting only the real tokens of padded windows, pooling
    by sub-grid maxima) does the official arithmetic row by row, so its features are the same bits. Tracking
    depends on that: the official video predictor stores memories in bfloat16, where a last-bit difference
    upstream can move a memory value by a whole bfloat16 step (see test_videopredictor_oracle.py)."""
    ours, ref, _ = tiny_pair
    image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.inference_mode():
        got, expected = ours.trunk(image), ref.trunk(image)
    for level, (a, b) in enumerate(zip(got, expected)):
        assert torch.equal(a, b), f"stage {level + 1}: max |diff| {(a - b).abs().max().item():.2e}"


@torch.no_grad()
def test_tiny_parity_512_batch2(tiny_pair) -> None:
    ours, ref, _ = tiny_pair
    image = torch.randn(2, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    out = ours(image)
    assert [tuple(f.shape) for f in out["backbone_fpn"]][-1] == (2, 256, 16, 16)
    diffs = max_diffs(out, ref(image))
    assert not mismatches(diffs), report(diffs)


@torch.no_grad()
def test_perturbed_weight_is_detected(tiny_pair) -> None:
    # The comparison must be able to fail: nudge a single trunk weight by 1e-2 and the outputs must differ.
    ours, ref, weights = tiny_pair
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    ref_out = ref(image)
    assert not mismatches(max_diffs(ours(image), ref_out))
    key = "trunk.blocks.0.attn.proj.weight"
    try:
        ours.state_dict()[key][0, 0] += 1e-2
        perturbed = max_diffs(ours(image), ref_out)
    finally:
        ours.load_state_dict(weights, strict=True)
    assert "vision_features" in mismatches(perturbed), f"a perturbed {key} went unnoticed: {report(perturbed)}"


@torch.no_grad()
def test_scalp_drops_lowest_resolution(tiny_pair) -> None:
    ours, ref, _ = tiny_pair
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    ours.scalp = ref.scalp = 1
    try:
        out, ref_out = ours(image), ref(image)
    finally:
        ours.scalp = ref.scalp = 0
    assert len(out["backbone_fpn"]) == len(out["vision_pos_enc"]) == 3
    assert out["vision_features"] is out["backbone_fpn"][-1]
    diffs = max_diffs(out, ref_out)
    assert not mismatches(diffs), report(diffs)


@torch.no_grad()
def test_position_embedding_cache_follows_weights(tiny_pair) -> None:
    # The trunk caches its position embedding per size; loading new weights after a forward must not leave it
    # stale. Flip the sign of the background embedding and compare with the reference loaded the same way.
    ours, ref, weights = tiny_pair
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    before = ours(image)
    changed = dict(weights, **{"trunk.pos_embed": -weights["trunk.pos_embed"]})
    try:
        ours.load_state_dict(changed, strict=True)
        ref.load_state_dict(changed, strict=True)
        after, ref_after = ours(image), ref(image)
    finally:
        ours.load_state_dict(weights, strict=True)
        ref.load_state_dict(weights, strict=True)
    assert (after["vision_features"] - before["vision_features"]).abs().max() > 1e-2
    diffs = max_diffs(after, ref_after)
    assert not mismatches(diffs), f"stale position embedding after load_state_dict: {report(diffs)}"


@torch.no_grad()
@pytest.mark.parametrize("interp, fuse_type, top_down", [("bilinear", "avg", None), ("nearest", "sum", [1, 2, 3])])
def test_neck_variants_match_official(interp: str, fuse_type: str, top_down) -> None:
    kwargs = dict(fpn_interp_model=interp, fuse_type=fuse_type, fpn_top_down_levels=top_down)
    channels = [64, 32, 16, 8]
    ours = FPNNeck(position_encoding=dict(POSITION_ENCODING), d_model=32, backbone_channel_list=channels, **kwargs)
    ref = RefFpnNeck(
        RefPositionEmbeddingSine(**POSITION_ENCODING), d_model=32, backbone_channel_list=channels, **kwargs
    )
    weights = random_weights(ref.state_dict())
    ours.load_state_dict(weights, strict=True)
    ref.load_state_dict(weights, strict=True)
    gen = torch.Generator().manual_seed(5)
    xs = [torch.randn(2, c, 48 // 2**i, 40 // 2**i, generator=gen) for i, c in enumerate(channels[::-1])]
    (feats, pos), (ref_feats, ref_pos) = ours(xs), ref(xs)
    for level, (a, b, pa, pb) in enumerate(zip(feats, ref_feats, pos, ref_pos)):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL, msg=f"level {level} features")
        torch.testing.assert_close(pa, pb, rtol=0, atol=ATOL, msg=f"level {level} position encoding")


def test_odd_token_grid_runs(tiny_pair) -> None:
    # Token grids that are not a multiple of the window sizes (the reference cannot tile its window embedding
    # there): padding and cropping must still give stride-4/8/16/32 maps of the right size.
    trunk = tiny_pair[0].trunk
    with torch.no_grad():
        feats = trunk(torch.randn(1, 3, 200, 136, generator=torch.Generator().manual_seed(6)))
    assert [tuple(f.shape) for f in feats] == [(1, 96, 50, 34), (1, 192, 25, 17), (1, 384, 12, 8), (1, 768, 6, 4)]
    assert all(torch.isfinite(f).all() for f in feats)
