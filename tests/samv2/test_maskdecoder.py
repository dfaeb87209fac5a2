"""Prompt encoder, two-way transformer and mask decoder against the official sam2 oracle.

Both sides are built with the SAM 2.1 tiny settings and load the same deterministic random weights
(``randomweights.random_state_dict``: per-key seeded float64 draws cast to float32, LayerNorm gains in [0.75, 1.25],
biases in [-0.1, 0.1], hypernetwork / IoU-head last layers x3, upscaling taps pulled to their 2x2 mean, object-score
bias +4), so masks, IoUs and object scores are all far from degenerate. Run with ``-s`` to see the measured diffs.
"""

from typing import Dict, Tuple

import pytest
import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder as RefMaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder as RefPromptEncoder
from sam2.modeling.sam.transformer import TwoWayTransformer as RefTwoWayTransformer

from ssseg.modules.models.segmentors.samv2.maskdecoder import MaskDecoder
from ssseg.modules.models.segmentors.samv2.promptencoder import PromptEncoder
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict
from ssseg.modules.models.segmentors.samv2.twowaytransformer import TwoWayTransformer

TOL = 1e-4
EMBED_DIM = 256
GRID = (64, 64)
IMAGE_SIZE = (1024, 1024)
PROMPT_ENCODER_KWARGS = dict(
    embed_dim=EMBED_DIM, image_embedding_size=GRID, input_image_size=IMAGE_SIZE, mask_in_chans=16
)
TRANSFORMER_KWARGS = dict(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8)
SAM21_TINY = dict(
    transformer_dim=EMBED_DIM,
    use_high_res_features=True,
    iou_prediction_use_sigmoid=True,
    pred_obj_scores=True,
    pred_obj_scores_mlp=True,
    use_multimask_token_for_obj_ptr=True,
)
VARIANTS = {
    "sam2.1_tiny": SAM21_TINY,
    "dynamic_stability": dict(SAM21_TINY, dynamic_multimask_via_stability=True),
    # SAM 1 style heads: no object score, no high-res features, raw IoUs, the single-mask token as SAM token.
    "plain": dict(
        transformer_dim=EMBED_DIM,
        use_high_res_features=False,
        iou_prediction_use_sigmoid=False,
        pred_obj_scores=False,
        use_multimask_token_for_obj_ptr=False,
    ),
}
OUTPUT_NAMES = ("masks", "iou_pred", "sam_tokens", "object_score_logits")


def max_abs_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return (ours.double() - ref.double()).abs().max().item() if ref.numel() else 0.0


def assert_close(name: str, ours: torch.Tensor, ref: torch.Tensor, tol: float = TOL) -> float:
    """Shape equality and max |ours - ref| <= tol; prints and returns the measured diff."""
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} != reference {tuple(ref.shape)}"
    diff = max_abs_diff(ours, ref)
    print(f"{name}: max abs diff {diff:.3g} (reference max |x| {ref.abs().max().item() if ref.numel() else 0:.3g})")
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > tol {tol:g}"
    return diff


def assert_outputs_close(label: str, ours: Tuple[torch.Tensor, ...], ref: Tuple[torch.Tensor, ...]) -> None:
    for name, o, r in zip(OUTPUT_NAMES, ours, ref):
        assert_close(f"{label} {name}", o, r)


def build_pair(variant: str) -> Tuple[MaskDecoder, RefMaskDecoder]:
    kwargs = VARIANTS[variant]
    ref = RefMaskDecoder(transformer=RefTwoWayTransformer(**TRANSFORMER_KWARGS), **kwargs).eval()
    ours = MaskDecoder(transformer=TwoWayTransformer(**TRANSFORMER_KWARGS), **kwargs).eval()
    state = random_state_dict(ref.state_dict())
    ref.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return ours, ref


@pytest.fixture(scope="module")
def decoders() -> Dict[str, Tuple[MaskDecoder, RefMaskDecoder]]:
    return {variant: build_pair(variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def prompt_encoders() -> Tuple[PromptEncoder, RefPromptEncoder]:
    ref = RefPromptEncoder(**PROMPT_ENCODER_KWARGS).eval()
    ours = PromptEncoder(**PROMPT_ENCODER_KWARGS).eval()
    state = random_state_dict(ref.state_dict())
    ref.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return ours, ref


@pytest.fixture(scope="module")
def features(decoders) -> Dict[str, torch.Tensor]:
    """Random image embeddings and high-resolution features, projected by each decoder's conv_s0 / conv_s1."""
    gen = torch.Generator().manual_seed(1234)
    ours, ref = decoders["sam2.1_tiny"]
    feat_s0 = torch.randn(1, EMBED_DIM, 4 * GRID[0], 4 * GRID[1], generator=gen)
    feat_s1 = torch.randn(1, EMBED_DIM, 2 * GRID[0], 2 * GRID[1], generator=gen)
    with torch.no_grad():
        out = {
            "image": torch.randn(1, EMBED_DIM, *GRID, generator=gen),
            "images2": torch.randn(2, EMBED_DIM, *GRID, generator=gen),
            "s0": ours.conv_s0(feat_s0),
            "s1": ours.conv_s1(feat_s1),
            "s0_ref": ref.conv_s0(feat_s0),
            "s1_ref": ref.conv_s1(feat_s1),
        }
    out["s0_2"] = torch.randn(2, *out["s0"].shape[1:], generator=gen)
    out["s1_2"] = torch.randn(2, *out["s1"].shape[1:], generator=gen)
    return out


def make_prompts(kind: str, gen: torch.Generator):
    """``(points, boxes, masks)`` for one prompt kind."""
    if kind == "points_padded":
        # Batched clicks of different counts padded with -1, plus box corners given as labelled points (2, 3).
        coords = torch.rand(2, 4, 2, generator=gen) * 1023
        labels = torch.tensor([[1, 0, -1, -1], [2, 3, 1, -1]], dtype=torch.int32)
        return (coords, labels), None, None
    if kind == "boxes":
        xy0 = torch.rand(2, 2, generator=gen) * 500
        return None, torch.cat([xy0, xy0 + 50 + torch.rand(2, 2, generator=gen) * 400], dim=1), None
    if kind == "points_boxes":
        coords = torch.rand(2, 2, 2, generator=gen) * 1023
        labels = torch.tensor([[1, 0], [0, -1]])
        xy0 = torch.rand(2, 2, generator=gen) * 500
        return (coords, labels), torch.cat([xy0, xy0 + 300], dim=1), None
    if kind == "points_mask":
        coords = torch.rand(2, 1, 2, generator=gen) * 1023
        masks = 4 * torch.randn(2, 1, 4 * GRID[0], 4 * GRID[1], generator=gen)
        return (coords, torch.ones(2, 1, dtype=torch.int64)), None, masks
    if kind == "mask_only":
        return None, None, 4 * torch.randn(1, 1, 4 * GRID[0], 4 * GRID[1], generator=gen)
    if kind == "none":
        return None, None, None
    if kind == "many_points":
        # The automatic mask generator: one positive click per prompt, all on the same image.
        coords = torch.rand(4, 1, 2, generator=gen) * 1023
        return (coords, torch.ones(4, 1, dtype=torch.int64)), None, None
    raise ValueError(kind)


@torch.no_grad()
def encode_both(prompt_encoders, kind: str, seed: int = 0):
    ours, ref = prompt_encoders
    points, boxes, masks = make_prompts(kind, torch.Generator().manual_seed(seed))
    sparse, dense = ours(points, boxes, masks)
    sparse_ref, dense_ref = ref(points, boxes, masks)
    return (sparse, dense), (sparse_ref, dense_ref)


# ----------------------------------------------------------------------------------------------------------------------
# Structure
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decoder_state_dict_matches_official(decoders, variant):
    ours, ref = decoders[variant]
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert sorted(ours_shapes) == sorted(ref_shapes), set(ours_shapes) ^ set(ref_shapes)
    assert ours_shapes == ref_shapes


def test_prompt_encoder_state_dict_matches_official(prompt_encoders):
    ours, ref = prompt_encoders
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert "mask_downscaling.6.weight" in ours.state_dict()


# ----------------------------------------------------------------------------------------------------------------------
# Prompt encoder
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind", ["points_padded", "boxes", "points_boxes", "points_mask", "mask_only", "none", "many_points"]
)
def test_prompt_encoder_matches_official(prompt_encoders, kind):
    (sparse, dense), (sparse_ref, dense_ref) = encode_both(prompt_encoders, kind)
    assert_close(f"{kind} sparse", sparse, sparse_ref, tol=1e-5)
    assert_close(f"{kind} dense", dense, dense_ref, tol=1e-5)


@torch.no_grad()
def test_prompt_encoder_label_semantics(prompt_encoders):
    """Every label value, float labels, unknown labels (bare PE) and the dense PE."""
    ours, ref = prompt_encoders
    coords = torch.rand(2, 7, 2, generator=torch.Generator().manual_seed(5)) * 1023
    labels = torch.tensor([[-1, 0, 1, 2, 3, 4, -1], [3, 2, 1, 0, -1, 7, 1]])
    for lab in (labels, labels.float()):
        for boxes in (None, torch.tensor([[10.0, 20.0, 300.0, 400.0], [0.0, 0.0, 1023.0, 1023.0]])):
            sparse, _ = ours((coords, lab), boxes, None)
            sparse_ref, _ = ref((coords, lab), boxes, None)
            assert_close(f"labels {lab.dtype} boxes={boxes is not None}", sparse, sparse_ref, tol=1e-5)
    # A padding token carries exactly the learned "not a point" vector, independent of its coordinates.
    sparse, _ = ours((coords, labels), None, None)
    torch.testing.assert_close(sparse[0, 0], ours.not_a_point_embed.weight[0], rtol=0, atol=0)
    torch.testing.assert_close(sparse[:, -1], ours.not_a_point_embed.weight.expand(2, -1), rtol=0, atol=0)
    assert_close("dense pe", ours.get_dense_pe(), ref.get_dense_pe(), tol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Two-way transformer
# ----------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def test_transformer_shared_image_equals_repeated_image():
    """A batch-1 image against B token sets (first-layer image work shared) equals the repeated image."""
    ours = TwoWayTransformer(**TRANSFORMER_KWARGS).eval()
    ours.load_state_dict(random_state_dict(ours.state_dict(), seed=3))
    gen = torch.Generator().manual_seed(7)
    image = torch.randn(1, EMBED_DIM, 16, 16, generator=gen)
    pe = torch.randn(1, EMBED_DIM, 16, 16, generator=gen)
    tokens = torch.randn(4, 9, EMBED_DIM, generator=gen)
    shared = ours(image, pe, tokens)
    repeated = ours(image.repeat(4, 1, 1, 1), pe.repeat(4, 1, 1, 1), tokens)
    for name, a, b in zip(("queries", "keys"), shared, repeated):
        assert_close(f"shared vs repeated {name}", a, b, tol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Mask decoder, end to end from prompts
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(decoders, prompt_encoders, features):
    """Decoders, prompt encoders, features and the dense PE (the same on both sides, see the prompt encoder tests)."""
    return dict(
        decoders=decoders, prompt_encoders=prompt_encoders, features=features, pe=prompt_encoders[1].get_dense_pe()
    )


def run_both(setup, variant, prompts, prompts_ref, multimask, repeat_image, images="one"):
    """Run our decoder and the reference on the same inputs.

    ``images``: "one" (a 1 x C x h x w embedding, with ``repeat_image``), "two" (two different images with their
    own high-res features) or "expanded" (one image expanded to the prompt batch, as the video predictor does for
    several objects; high-res features expanded alike).
    """
    ours, ref = setup["decoders"][variant]
    feats = setup["features"]
    batch = prompts[0].shape[0]
    high_res, high_res_ref = [feats["s0"], feats["s1"]], [feats["s0_ref"], feats["s1_ref"]]
    if images == "one":
        image = feats["image"]
    elif images == "two":
        image = feats["images2"]
        high_res = high_res_ref = [feats["s0_2"], feats["s1_2"]]
    else:
        image = feats["image"].expand(batch, -1, -1, -1)
        high_res = [f.expand(batch, -1, -1, -1) for f in high_res]
        high_res_ref = [f.expand(batch, -1, -1, -1) for f in high_res_ref]
    if not ours.use_high_res_features:
        high_res = high_res_ref = None
    with torch.no_grad():
        out = ours(image, setup["pe"], *prompts, multimask, repeat_image, high_res)
        out_ref = ref(image, setup["pe"], *prompts_ref, multimask, repeat_image, high_res_ref)
    return out, out_ref


# (prompt kind, repeat_image, images, multimask_output). Both output modes for the main cases; one each for the rest
# to keep the file fast (the selection code does not depend on the prompt kind).
CASES = [
    ("points_padded", False, "two", True),
    ("points_padded", False, "two", False),
    ("many_points", True, "one", True),
    ("many_points", True, "one", False),
    ("none", True, "one", True),
    ("none", True, "one", False),
    ("boxes", True, "one", False),
    ("points_boxes", False, "expanded", True),
    ("points_mask", True, "one", False),
    ("mask_only", False, "expanded", True),
]


@pytest.mark.parametrize(
    "kind,repeat_image,images,multimask", CASES, ids=[f"{c[0]}-{'multi' if c[3] else 'single'}" for c in CASES]
)
def test_decoder_matches_official(setup, kind, repeat_image, images, multimask):
    prompts, prompts_ref = encode_both(setup["prompt_encoders"], kind)
    # Record the batch the first layer's image-side key projection runs at: 1 whenever the image and the dense
    # prompt are shared by all prompt sets (the work is then done once, not once per prompt).
    k_proj = setup["decoders"]["sam2.1_tiny"][0].transformer.layers[0].cross_attn_token_to_image.k_proj
    seen = []
    handle = k_proj.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[0]))
    try:
        out, out_ref = run_both(setup, "sam2.1_tiny", prompts, prompts_ref, multimask, repeat_image, images)
    finally:
        handle.remove()
    batch, num_masks = prompts[0].shape[0], 3 if multimask else 1
    shared = kind not in ("points_mask", "mask_only") and images != "two"
    assert seen == [1 if shared else batch], f"first-layer key projection ran at batch {seen}"
    assert out[0].shape == (batch, num_masks, 4 * GRID[0], 4 * GRID[1])
    assert out[2].shape == (batch, num_masks, EMBED_DIM)  # use_multimask_token_for_obj_ptr
    assert_outputs_close(f"{kind} multimask={multimask}", out, out_ref)


def test_decoder_dynamic_multimask_via_stability(setup):
    """Eval-mode single-mask output falls back to the best multimask output where mask 0 is unstable."""
    ours, ref = setup["decoders"]["dynamic_stability"]
    feats = setup["features"]
    prompts, prompts_ref = encode_both(setup["prompt_encoders"], "many_points", seed=1)
    prompts, prompts_ref = [x[:3] for x in prompts], [x[:3] for x in prompts_ref]
    high_res, high_res_ref = [feats["s0"], feats["s1"]], [feats["s0_ref"], feats["s1_ref"]]
    with torch.no_grad():
        all_masks, all_iou, all_tokens, obj = ref.predict_masks(
            feats["image"], setup["pe"], *prompts_ref, True, high_res_ref
        )
    stability = ref._get_stability_scores(all_masks[:, :1]).flatten()
    # A threshold inside the spread of the scores, so that some prompts keep mask 0 and the others fall back.
    thresh = stability.sort().values[len(stability) // 2].item()
    fell_back = stability < thresh
    assert 0 < int(fell_back.sum()) < len(stability), f"stability {stability.tolist()} vs thresh {thresh}"
    try:
        ours.dynamic_multimask_stability_thresh = ref.dynamic_multimask_stability_thresh = thresh
        # The reference's forward is predict_masks + this selection; reusing the masks above saves a second run.
        ref_masks, ref_iou = ref._dynamic_multimask_via_stability(all_masks, all_iou)
        assert not torch.equal(ref_masks[fell_back], all_masks[fell_back][:, :1])
        with torch.no_grad():
            out = ours(feats["image"], setup["pe"], *prompts, False, True, high_res)
        assert_outputs_close("dynamic eval", out, (ref_masks, ref_iou, all_tokens[:, :1], obj))
        # In training mode the fallback is off: plain single-mask output.
        ours.train()
        with torch.no_grad():
            out = ours(feats["image"], setup["pe"], *prompts, False, True, high_res)
        assert_outputs_close("dynamic train", out, (all_masks[:, :1], all_iou[:, :1], all_tokens[:, :1], obj))
    finally:
        ours.eval()


@pytest.mark.parametrize("kind,multimask", [("points_padded", True), ("none", False)])
def test_decoder_without_obj_scores_or_high_res(setup, kind, multimask):
    prompts, prompts_ref = encode_both(setup["prompt_encoders"], kind)
    repeat_image = kind == "none"
    images = "one" if repeat_image else "two"
    out, out_ref = run_both(setup, "plain", prompts, prompts_ref, multimask, repeat_image, images)
    assert_outputs_close(f"plain {kind} multimask={multimask}", out, out_ref)
    assert torch.equal(out[3], torch.full_like(out[3], 10.0))
    assert out[2].shape[1] == 1  # the single-mask token whatever multimask_output says


def test_high_res_projection_matches_official(setup):
    feats = setup["features"]
    assert_close("conv_s0", feats["s0"], feats["s0_ref"], tol=1e-5)
    assert_close("conv_s1", feats["s1"], feats["s1_ref"], tol=1e-5)


@pytest.fixture(scope="module")
def perturbation_case(setup):
    prompts, prompts_ref = encode_both(setup["prompt_encoders"], "points_boxes")
    prompts, prompts_ref = [x[:1] for x in prompts], [x[:1] for x in prompts_ref]
    return prompts, run_both(setup, "sam2.1_tiny", prompts, prompts_ref, True, True)[1]


@pytest.mark.parametrize(
    "key",
    ["transformer.layers.0.mlp.layers.0.weight", "output_upscaling.0.weight", "iou_prediction_head.layers.2.bias"],
)
def test_perturbed_weight_is_detected(setup, perturbation_case, key):
    """Changing a single decoder weight by 1e-2 must break the comparison: the tolerance is meaningful."""
    ours, _ = setup["decoders"]["sam2.1_tiny"]
    prompts, out_ref = perturbation_case
    feats = setup["features"]
    param = ours.state_dict()[key]
    original = param.clone()
    try:
        with torch.no_grad():
            param.view(-1)[-1] += 1e-2
            out = ours(feats["image"], setup["pe"], *prompts, True, True, [feats["s0"], feats["s1"]])
        diffs = {name: f"{max_abs_diff(o, r):.3g}" for name, o, r in zip(OUTPUT_NAMES, out, out_ref)}
        print(f"perturbed {key}: max abs diffs {diffs}")
        with pytest.raises(AssertionError):
            assert_outputs_close(f"perturbed {key}", out, out_ref)
    finally:
        with torch.no_grad():
            param.copy_(original)
