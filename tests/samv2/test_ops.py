"""Connected components and the hole / sprinkle clean-ups of samv2/ops.py."""

from collections import deque

import numpy as np
import pytest
import torch

from ssseg.modules.models.segmentors.samv2 import ops

SIZES = [(1, 1), (1, 9), (8, 1), (2, 2), (5, 6), (16, 16), (33, 17), (40, 63)]
DENSITIES = [0.0, 0.05, 0.3, 0.5, 0.6, 0.8, 0.97, 1.0]


def reference_components(mask: np.ndarray):
    """Slow but obvious 8-connected labelling of one H x W mask by breadth-first flood fill.

    Labels follow the documented convention: 1 + the smallest top-left corner index of the 2 x 2 cells that the
    component touches. Returns (labels, counts) as int64 H x W arrays.
    """
    height, width = mask.shape
    labels = np.zeros((height, width), dtype=np.int64)
    counts = np.zeros((height, width), dtype=np.int64)
    seen = np.zeros((height, width), dtype=bool)
    for r0 in range(height):
        for c0 in range(width):
            if not mask[r0, c0] or seen[r0, c0]:
                continue
            component, queue = [], deque([(r0, c0)])
            seen[r0, c0] = True
            while queue:
                r, c = queue.popleft()
                component.append((r, c))
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < height and 0 <= cc < width and mask[rr, cc] and not seen[rr, cc]:
                            seen[rr, cc] = True
                            queue.append((rr, cc))
            label = 1 + min((r - r % 2) * width + (c - c % 2) for r, c in component)
            for r, c in component:
                labels[r, c] = label
                counts[r, c] = len(component)
    return labels, counts


def reference_batch(mask: torch.Tensor):
    out = [reference_components(m[0].numpy() != 0) for m in mask]
    labels = np.stack([lab for lab, _ in out])[:, None]
    counts = np.stack([cnt for _, cnt in out])[:, None]
    return labels, counts


def random_masks(batch, height, width, density, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, height, width, generator=generator) < density


@pytest.mark.parametrize("size", SIZES)
def test_components_match_flood_fill(size):
    height, width = size
    for i, density in enumerate(DENSITIES):
        mask = random_masks(3, height, width, density, seed=100 * height + 10 * width + i)
        labels, counts = ops.get_connected_components(mask)
        assert labels.dtype == counts.dtype == torch.int32
        assert labels.shape == counts.shape == mask.shape
        ref_labels, ref_counts = reference_batch(mask)
        np.testing.assert_array_equal(labels.numpy(), ref_labels)
        np.testing.assert_array_equal(counts.numpy(), ref_counts)


def test_components_structured_cases():
    # Diagonal touching (8- but not 4-connected), a ring with an inner hole, and an empty / full mask.
    diagonal = torch.eye(6, dtype=torch.bool)
    ring = torch.ones(6, 6, dtype=torch.bool)
    ring[2:4, 2:4] = False
    mask = torch.stack([diagonal, ring, torch.zeros(6, 6, dtype=torch.bool), torch.ones(6, 6, dtype=torch.bool)])
    labels, counts = ops.get_connected_components(mask[:, None])
    assert torch.all(counts[0, 0][diagonal] == 6) and torch.all(labels[0, 0][diagonal] == 1)
    assert torch.all(counts[1, 0][ring] == 32) and torch.all(counts[1, 0][~ring] == 0)
    assert labels[2].abs().sum() == 0 and counts[2].abs().sum() == 0
    assert torch.all(labels[3] == 1) and torch.all(counts[3] == 36)


def test_components_uint8_and_bool_agree():
    mask = random_masks(2, 12, 10, 0.5, seed=3)
    as_uint8 = mask.to(torch.uint8) * 255  # any nonzero value is foreground
    for got, expected in zip(ops.get_connected_components(as_uint8), ops.get_connected_components(mask)):
        assert torch.equal(got, expected)


def test_components_empty_batch():
    labels, counts = ops.get_connected_components(torch.zeros(0, 1, 4, 4, dtype=torch.bool))
    assert labels.shape == counts.shape == (0, 1, 4, 4)


@pytest.mark.parametrize(
    "bad, error",
    [
        (torch.zeros(4, 4, dtype=torch.bool), ValueError),
        (torch.zeros(1, 2, 4, 4, dtype=torch.bool), ValueError),
        (torch.zeros(1, 1, 4, 4), TypeError),
        (np.zeros((1, 1, 4, 4), dtype=bool), TypeError),
    ],
)
def test_components_bad_input(bad, error):
    with pytest.raises(error, match="mask must"):
        ops.get_connected_components(bad)


@pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.has_compiled_extension()), reason="needs CUDA and the compiled extension"
)
def test_cuda_extension_matches_fallback():
    for height, width in [(1, 1), (7, 5), (64, 64), (255, 256), (513, 130)]:
        for density in DENSITIES:
            mask = random_masks(4, height, width, density, seed=height + width)
            cuda_labels, cuda_counts = ops.get_connected_components(mask.cuda())
            cpu_labels, cpu_counts = ops.get_connected_components(mask)
            assert torch.equal(cuda_labels.cpu(), cpu_labels) and torch.equal(cuda_counts.cpu(), cpu_counts)


def official_cuda_op():
    try:
        from sam2 import _C
    except ImportError:
        return None
    return _C if torch.cuda.is_available() else None


@pytest.mark.skipif(official_cuda_op() is None, reason="needs CUDA and the official sam2._C op")
def test_labels_match_official_cuda_op():
    for height, width in [(2, 2), (64, 64), (256, 256), (130, 66)]:  # the official op needs even sizes
        for density in DENSITIES:
            mask = random_masks(3, height, width, density, seed=7).cuda()
            official = official_cuda_op().get_connected_componnets(mask.to(torch.uint8).contiguous())
            ours = ops.get_connected_components(mask)
            assert torch.equal(ours[0], official[0]) and torch.equal(ours[1], official[1])


# ---------------------------------------------------------------------------------------------------------------
# fill_holes / remove_sprinkles
# ---------------------------------------------------------------------------------------------------------------


def reference_small_regions(binary: np.ndarray, max_area: float) -> np.ndarray:
    _, counts = reference_components(binary)
    return (counts > 0) & (counts <= max_area)


def random_logits(batch, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    # Coarse blobs plus noise give holes and sprinkles of many sizes.
    coarse = torch.randn(batch, 1, height // 4 + 1, width // 4 + 1, generator=generator)
    coarse = torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)
    return coarse + 0.7 * torch.randn(batch, 1, height, width, generator=generator)


@pytest.mark.parametrize("max_area", [1, 3, 8, 40])
@pytest.mark.parametrize("threshold", [0.0, 0.4])
def test_fill_holes_and_remove_sprinkles_match_reference(max_area, threshold):
    logits = random_logits(3, 24, 31, seed=max_area)
    filled = ops.fill_holes(logits, max_area, threshold=threshold)
    cleaned = ops.remove_sprinkles(logits, max_area, threshold=threshold)
    for i in range(logits.shape[0]):
        scores = logits[i, 0].numpy()
        holes = reference_small_regions(scores <= threshold, max_area)
        sprinkles = reference_small_regions(scores > threshold, max_area)
        np.testing.assert_array_equal(filled[i, 0].numpy(), np.where(holes, np.float32(threshold + 10.0), scores))
        np.testing.assert_array_equal(cleaned[i, 0].numpy(), np.where(sprinkles, np.float32(threshold - 10.0), scores))
    assert filled.dtype == cleaned.dtype == logits.dtype


def test_fill_holes_area_zero_is_identity_and_input_untouched():
    logits = random_logits(2, 16, 16, seed=0)
    before = logits.clone()
    assert ops.fill_holes(logits, 0) is logits and ops.remove_sprinkles(logits, 0) is logits
    ops.fill_holes(logits, 10)
    ops.remove_sprinkles(logits, 10)
    assert torch.equal(logits, before)


def test_fill_holes_never_skips():
    # A single-pixel hole must be filled on every machine (the official code silently skips without its op).
    logits = torch.ones(1, 1, 5, 5)
    logits[0, 0, 2, 2] = -1.0
    filled = ops.fill_holes(logits, 1)
    assert filled[0, 0, 2, 2] == 10.0 and torch.equal(filled[0, 0, :2], logits[0, 0, :2])


def test_fill_holes_in_mask_scores_matches_official(monkeypatch):
    misc = pytest.importorskip("sam2.utils.misc")

    def reference_op(mask):  # the official function with its CUDA op replaced by the flood-fill reference
        labels, counts = reference_batch(mask.cpu())
        return torch.from_numpy(labels), torch.from_numpy(counts)

    monkeypatch.setattr(misc, "get_connected_components", reference_op)
    logits = random_logits(2, 20, 27, seed=5)
    for max_area in [1, 4, 30]:
        expected = misc.fill_holes_in_mask_scores(logits, max_area)
        assert torch.equal(ops.fill_holes_in_mask_scores(logits, max_area), expected)
    assert not torch.equal(expected, logits)  # the comparison did exercise hole filling


@pytest.mark.parametrize("bad_area", [-1, "8", None, True])
def test_bad_areas_are_rejected(bad_area):
    logits = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="max_"):
        ops.fill_holes(logits, bad_area)
    with pytest.raises(ValueError, match="max_"):
        ops.remove_sprinkles(logits, bad_area)


def test_bad_logits_are_rejected():
    with pytest.raises(TypeError, match="floating point"):
        ops.fill_holes(torch.zeros(1, 1, 4, 4, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="max_area must be a number > 0"):
        ops.fill_holes_in_mask_scores(torch.zeros(1, 1, 4, 4), 0)
