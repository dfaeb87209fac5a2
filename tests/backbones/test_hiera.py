"""Hiera's chunked inference path and its max pooling, against the plain path and torch's max_pool2d."""

import pytest
import torch
import torch.nn.functional as F

from ssseg.modules.models.backbones import hiera as hiera_module
from ssseg.modules.models.backbones.hiera import (
    Hiera,
    HieraBlock,
    max_pool_channels_last,
    merge_windows,
    partition_windows,
)


def _tiny_hiera(seed: int = 0) -> Hiera:
    """Four stages with windows that need padding (5 on 13x13 maps), q-pooling and one global block."""
    torch.manual_seed(seed)
    model = Hiera(
        embed_dim=16,
        num_heads=1,
        stages=(1, 2, 3, 1),
        window_spec=(4, 4, 5, 3),
        global_att_blocks=(4,),
        window_pos_embed_bkg_spatial_size=(6, 6),
    ).eval()
    with torch.no_grad():
        for p in model.parameters():  # nonzero biases and norms, so padding and bias handling matter
            p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.5))
    return model


@pytest.mark.parametrize("batch, size", [(1, 128), (2, 104)])
def test_chunked_inference_matches_plain_path(batch, size, monkeypatch):
    """Inference runs blocks band by band; with a small chunk every windowed block is cut into several bands,
    including padded windows (104 / 4 = 26 tokens, 13 and 7 at later stages) and pooling transitions."""
    model = _tiny_hiera()
    x = torch.randn(batch, 3, size, size)
    with torch.enable_grad():  # the plain path (what training runs), no chunks
        expected = model(x)
    monkeypatch.setattr(hiera_module, "CHUNK_TOKENS", 64)
    calls = []
    original = HieraBlock._attention_residual
    spy = lambda self, *args, **kwargs: calls.append(1) or original(self, *args, **kwargs)  # noqa: E731
    monkeypatch.setattr(HieraBlock, "_attention_residual", spy)
    with torch.inference_mode():
        got = model(x)
    assert len(calls) > 3 * len(model.blocks), "the chunked path did not cut the blocks into bands"
    for level, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape
        diff = (a - b).abs().max().item()
        assert diff <= 1e-5 * b.abs().max().item(), f"level {level}: max |diff| {diff:.2e}"


def test_chunked_inference_without_bands_is_the_same():
    """A chunk larger than the map takes the unbanded inference path; it agrees with the plain path too."""
    model = _tiny_hiera(1)
    x = torch.randn(1, 3, 64, 64)
    with torch.enable_grad():
        expected = model(x)
    with torch.no_grad():
        got = model(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "dim, dim_out, window, size, q_stride",
    [
        (192, 192, 14, 32, None),
        (192, 384, 14, 32, (2, 2)),
        (384, 384, 7, 16, None),
        (384, 384, 7, 8, None),  # kept queries per window: 49, 7, 7 and 1 (SDPA rounds blocks of 1-3 apart)
        (96, 96, 5, 8, None),
        (192, 192, 14, 66, None),  # +12% padding
        (96, 192, 8, 66, (2, 2)),  # pooled: 16, 4, 4 and 1 kept queries per window
    ],
)
def test_padded_windows_inference_matches_plain_path(dim, dim_out, window, size, q_stride):
    """Inference on maps that windows do not tile projects only the real tokens, pads the projection with the
    bias and computes only the kept queries. The official arithmetic, row by row: the same bits as the plain path
    (SAM 2 widths, where the GEMM path taken depends on the operands' layout and SDPA rounds blocks of 1 to 3
    query rows differently)."""
    torch.manual_seed(0)
    block = HieraBlock(dim, dim_out, num_heads=2, window_size=window, q_stride=q_stride).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, size, size, dim)
    with torch.enable_grad():
        expected = block(x)  # the plain path
    projected, cropped = [], []
    block.attn.qkv.register_forward_hook(lambda module, args, out: projected.append(tuple(args[0].shape)))
    original = block.attn.attend_cropped
    block.attn.attend_cropped = lambda *args: cropped.append(1) or original(*args)
    with torch.inference_mode():
        got = block(x)
    assert cropped, "the cropped-queries path did not run"
    # (the larger maps run in bands of window rows)
    assert sum(shape[1] for shape in projected) == size, "the real tokens were not projected unpadded"
    assert all(shape[2] == size for shape in projected), "the real tokens were not projected unpadded"
    assert torch.equal(got, expected), f"max |diff| {(got - expected).abs().max().item():.2e}"


def test_partition_pads_with_fill_and_always_copies():
    x = torch.randn(1, 5, 9, 3)
    fill = torch.tensor([1.0, 2.0, 3.0])
    windows, padded_hw = partition_windows(x, 7, fill=fill)
    assert padded_hw == (7, 14) and windows.shape == (2, 7, 7, 3)
    assert windows.is_contiguous()  # one row of windows: reshape alone would give a strided view
    assert torch.equal(windows[0, 5:], fill.expand(2, 7, 3)) and torch.equal(windows[1, :5, 2:], fill.expand(5, 5, 3))
    assert torch.equal(merge_windows(windows, 7, padded_hw, (5, 9)), x)
    zeros, _ = partition_windows(x, 7)
    assert zeros.is_contiguous() and torch.equal(zeros[1, :5, 2:], torch.zeros(5, 5, 3))


def test_plain_path_is_used_when_training_or_with_gradients():
    model = _tiny_hiera()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = model(x)
    out[-1].sum().backward()  # the in-place inference path would break autograd
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("shape, stride", [((2, 8, 8, 5), (2, 2)), ((1, 7, 9, 3), (2, 2)), ((1, 9, 12, 4), (3, 2))])
def test_max_pool_matches_max_pool2d(shape, stride):
    x = torch.randn(shape)
    expected = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)
    assert torch.equal(max_pool_channels_last(x, stride), expected)
    # a strided view (the queries inside a q/k/v projection) pools the same
    wide = torch.randn(*shape[:-1], 3 * shape[-1])
    view = wide[..., shape[-1] : 2 * shape[-1]]
    expected = F.max_pool2d(view.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)
    assert torch.equal(max_pool_channels_last(view, stride), expected)


def _first_level_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def test_model_built_in_inference_mode_runs_and_matches():
    """Parameters created inside ``torch.inference_mode()`` are inference tensors without a version counter; the
    position-embedding cache must not read one (issue 12: 'Inference tensors do not track version counter')."""
    reference = _tiny_hiera(3)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        model = _tiny_hiera(3)
        assert model.pos_embed.is_inference(), "the test needs inference-tensor parameters"
        got = model(x)
    with torch.no_grad():
        expected = reference(x)
        got_outside = model(x)  # built in inference mode, used outside it
    assert _first_level_diff(got, expected) == 0.0, "inference-mode model differs from the normal one"
    assert _first_level_diff(got_outside, expected) == 0.0, "inference-mode model differs when used under no_grad"


@pytest.mark.parametrize(
    "build_in, run_in",
    [
        (torch.no_grad, torch.no_grad),
        (torch.no_grad, torch.inference_mode),
        (torch.inference_mode, torch.inference_mode),
    ],
)
def test_position_embedding_cache_follows_new_weights(build_in, run_in):
    """``load_state_dict`` after a first run gives the new weights' results, also when the parameters are inference
    tensors loaded in place inside inference mode (no version counter moves there)."""
    new = _tiny_hiera(5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = new(x)
    with build_in():
        model = _tiny_hiera(4)
    with run_in():
        first = model(x)  # fills the cache with the old embedding
        model.load_state_dict(new.state_dict())
        got = model(x)
    assert _first_level_diff(first, expected) > 0, "the two weight sets give the same output: the test proves nothing"
    assert _first_level_diff(got, expected) == 0.0, "stale position embedding after load_state_dict"
