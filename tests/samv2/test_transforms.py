"""SAMV2Transforms against the official sam2 SAM2Transforms."""

from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.modules.models.segmentors.samv2.transforms import SAMV2Transforms

official_transforms = pytest.importorskip("sam2.utils.transforms")
official_misc = pytest.importorskip("sam2.utils.misc")

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def random_image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def official():
    return official_transforms.SAM2Transforms(resolution=1024, mask_threshold=0.0)


@pytest.fixture(scope="module")
def ours():
    return SAMV2Transforms(resolution=1024)


@pytest.mark.parametrize("hw", [(1200, 1800), (37, 53)])
def test_image_is_pixel_identical(official, ours, hw):
    image = random_image(*hw, seed=hw[0])
    expected = official(image)
    for inp in (image, Image.fromarray(image)):
        got = ours(inp)
        assert got.shape == (3, 1024, 1024) and got.dtype == torch.float32
        assert torch.equal(got, expected)


def test_forward_batch_is_pixel_identical(official, ours):
    images = [random_image(37, 53, 0), random_image(64, 31, 1)]
    assert torch.equal(ours.forward_batch(images), official.forward_batch(images))


def test_other_resolution():
    image = random_image(90, 70, 2)
    expected = official_transforms.SAM2Transforms(resolution=512, mask_threshold=0.0)(image)
    assert torch.equal(SAMV2Transforms(512)(image), expected)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((8, 8), dtype=np.uint8), ValueError, "H x W x 3"),
        (np.zeros((8, 8, 4), dtype=np.uint8), ValueError, "H x W x 3"),
        (np.zeros((8, 8, 3), dtype=np.float32), TypeError, "uint8"),
        (Image.new("L", (8, 8)), ValueError, "RGB"),
        (torch.zeros(3, 8, 8), TypeError, "numpy array or a PIL image"),
    ],
)
def test_bad_images(ours, bad, error, match):
    with pytest.raises(error, match=match):
        ours(bad)


def test_coords_and_boxes_match_official(official, ours):
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(4, 3, 2, generator=generator) * torch.tensor([1800.0, 1200.0])
    boxes = torch.rand(5, 4, generator=generator) * torch.tensor([1800.0, 1200.0, 1800.0, 1200.0])
    for normalize, orig_hw in [(True, (1200, 1800)), (False, None)]:
        inputs = coords if normalize else coords / 2000
        before = inputs.clone()
        got = ours.transform_coords(inputs, normalize=normalize, orig_hw=orig_hw)
        assert torch.equal(got, official.transform_coords(inputs, normalize=normalize, orig_hw=orig_hw))
        assert torch.equal(inputs, before)
        box_inputs = boxes if normalize else boxes / 2000
        got = ours.transform_boxes(box_inputs, normalize=normalize, orig_hw=orig_hw)
        assert got.shape == (5, 2, 2)
        assert torch.equal(got, official.transform_boxes(box_inputs, normalize=normalize, orig_hw=orig_hw))


def test_integer_coords_are_not_truncated(ours):
    got = ours.transform_coords(torch.tensor([[900, 600]]), normalize=True, orig_hw=(1200, 1800))
    assert torch.equal(got, torch.tensor([[512.0, 512.0]]))


def test_bad_coords(ours):
    with pytest.raises(ValueError, match="orig_hw"):
        ours.transform_coords(torch.zeros(3, 2), normalize=True)
    with pytest.raises(ValueError, match=r"\.\.\. x 2"):
        ours.transform_coords(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\.\.\. x 4"):
        ours.transform_boxes(torch.zeros(3, 2))


def random_low_res_logits(batch, channels, size, seed):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch * channels, 1, size // 4, size // 4, generator=generator)
    coarse = torch.nn.functional.interpolate(coarse, (size, size), mode="bilinear", align_corners=False)
    noisy = 4 * coarse + 3 * torch.randn(batch * channels, 1, size, size, generator=generator)
    return noisy.reshape(batch, channels, size, size)


def test_postprocess_without_cleanup_matches_official(official, ours):
    logits = random_low_res_logits(2, 3, 256, seed=0)
    for orig_hw in [(1200, 1800), (37, 53)]:
        assert torch.equal(ours.postprocess_masks(logits, orig_hw), official.postprocess_masks(logits, orig_hw))


def flood_fill_components(mask: torch.Tensor):
    """Slow but obvious stand-in for the official CUDA op: N x 1 x H x W -> (labels, counts), 8-connectivity.

    The official post-processing only uses `labels > 0` and the counts, so labels here are just 1, 2, 3, ...
    """
    binary = mask[:, 0].cpu().numpy() != 0
    labels = np.zeros(binary.shape, dtype=np.int32)
    counts = np.zeros(binary.shape, dtype=np.int32)
    _, height, width = binary.shape
    for n, r0, c0 in zip(*np.nonzero(binary)):
        if labels[n, r0, c0]:
            continue
        label = labels[n].max() + 1
        component, queue = [], deque([(r0, c0)])
        labels[n, r0, c0] = label
        while queue:
            r, c = queue.popleft()
            component.append((r, c))
            for rr in range(max(r - 1, 0), min(r + 2, height)):
                for cc in range(max(c - 1, 0), min(c + 2, width)):
                    if binary[n, rr, cc] and not labels[n, rr, cc]:
                        labels[n, rr, cc] = label
                        queue.append((rr, cc))
        rows, cols = zip(*component)
        counts[n, list(rows), list(cols)] = len(component)
    return torch.from_numpy(labels[:, None]), torch.from_numpy(counts[:, None])


@pytest.mark.parametrize(
    "threshold, hole_area, sprinkle_area", [(0.0, 8.0, 0.0), (0.0, 0.0, 8.0), (0.0, 5.0, 12.0), (1.5, 30.0, 3.0)]
)
def test_postprocess_with_cleanup_matches_official_logic(monkeypatch, threshold, hole_area, sprinkle_area):
    # The official post-processing needs its CUDA op; give it an obvious flood-fill instead.
    monkeypatch.setattr(official_misc, "get_connected_components", flood_fill_components)
    official = official_transforms.SAM2Transforms(1024, threshold, hole_area, sprinkle_area)
    ours = SAMV2Transforms(1024, threshold, hole_area, sprinkle_area)
    logits = random_low_res_logits(2, 2, 40, seed=3)
    expected = official.postprocess_masks(logits, (75, 101))
    assert torch.equal(ours.postprocess_masks(logits, (75, 101)), expected)
    plain = SAMV2Transforms(1024, threshold).postprocess_masks(logits, (75, 101))
    assert not torch.equal(plain, expected)  # the clean-up did change something


def test_postprocess_finds_holes_and_sprinkles_on_the_input_logits():
    # A 1-pixel ring (sprinkle, area 8) around a 1-pixel hole: both are found on the incoming logits, so the
    # ring is removed and the hole is filled, even though filling first would have merged them into area 9.
    logits = -torch.ones(1, 1, 7, 7)
    logits[0, 0, 2:5, 2:5] = 1.0
    logits[0, 0, 3, 3] = -1.0
    out = SAMV2Transforms(1024, 0.0, max_hole_area=1, max_sprinkle_area=8).postprocess_masks(logits, (7, 7))
    expected = -torch.ones(1, 1, 7, 7)
    expected[0, 0, 2:5, 2:5] = -10.0
    expected[0, 0, 3, 3] = 10.0
    assert torch.equal(out, expected)


def test_bad_postprocess_arguments(ours):
    with pytest.raises(ValueError, match="B x C x h x w"):
        ours.postprocess_masks(torch.zeros(3, 8, 8), (16, 16))
    with pytest.raises(ValueError, match="orig_hw"):
        ours.postprocess_masks(torch.zeros(1, 1, 8, 8), (16,))
    with pytest.raises(ValueError, match="resolution"):
        SAMV2Transforms(0)
    with pytest.raises(ValueError, match="max_hole_area"):
        SAMV2Transforms(1024, max_hole_area=-1)
