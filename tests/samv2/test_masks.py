"""Mask / RLE / box / grid / crop utilities of samv2/masks.py, against the official sam2/utils/amg.py."""

import sys

import numpy as np
import pytest
import torch

from ssseg.modules.models.segmentors.samv2 import masks as M

amg = pytest.importorskip("sam2.utils.amg")

try:
    from pycocotools import mask as coco_mask
except ImportError:
    coco_mask = None

SHAPES = [(1, 1), (1, 7), (6, 1), (5, 8), (13, 11), (32, 45)]
DENSITIES = [0.0, 0.02, 0.5, 0.9, 1.0]


def random_masks(batch, height, width, density, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, height, width, generator=generator) < density


def mask_batches():
    for i, (height, width) in enumerate(SHAPES):
        for j, density in enumerate(DENSITIES):
            yield random_masks(4, height, width, density, seed=10 * i + j)


# ---------------------------------------------------------------------------------------------------------------
# RLE
# ---------------------------------------------------------------------------------------------------------------


def test_mask_to_rle_matches_official_and_round_trips():
    for masks in mask_batches():
        rles = M.mask_to_rle(masks)
        assert rles == amg.mask_to_rle_pytorch(masks)
        for mask, rle in zip(masks, rles):
            assert all(type(c) is int for c in rle["counts"])
            decoded = M.rle_to_mask(rle)
            assert decoded.dtype == bool and decoded.flags.c_contiguous
            np.testing.assert_array_equal(decoded, mask.numpy())
            np.testing.assert_array_equal(decoded, amg.rle_to_mask(rle))
            assert M.area_from_rle(rle) == amg.area_from_rle(rle) == int(mask.sum())


def test_mask_to_rle_known_values():
    mask = torch.tensor([[[1, 0, 0], [1, 1, 0]]], dtype=torch.bool)  # column-major: 1 1 0 1 0 0
    assert M.mask_to_rle(mask) == [{"size": [2, 3], "counts": [0, 2, 1, 1, 2]}]
    assert M.mask_to_rle(torch.zeros(1, 2, 3, dtype=torch.bool))[0]["counts"] == [6]
    assert M.mask_to_rle(torch.ones(1, 2, 3, dtype=torch.uint8))[0]["counts"] == [0, 6]
    assert M.mask_to_rle(torch.zeros(0, 4, 4, dtype=torch.bool)) == []


def test_rle_bad_input():
    with pytest.raises(ValueError, match="B x H x W"):
        M.mask_to_rle(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool or uint8"):
        M.mask_to_rle(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="add up to 5"):
        M.rle_to_mask({"size": [2, 3], "counts": [2, 3]})
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        M.rle_to_mask({"counts": [6]})


# Masks and their COCO strings, as produced by pycocotools.mask.encode, so the pure-Python decoder is tested even
# where pycocotools is not installed.
COCO_FIXTURES = [
    ([[0, 1, 1, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0]], "31111OO02"),
    ([[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], "0170K010201"),
    ([[1]], "01"),
    ([[0] * 6] * 6, "T1"),
]


def structured_mask():
    mask = np.zeros((50, 40), dtype=bool)
    mask[3:45, 30:33] = True
    mask[0, 0:2] = True
    mask[49, 39] = True
    mask[20:22, 5:7] = True
    return mask


STRUCTURED_COCO = "01a10Z51eJ0]S1X1[kN000j:gN"  # multi-character and negative (delta) counts


def test_decode_coco_fixtures():
    for rows, counts in COCO_FIXTURES:
        mask = np.array(rows, dtype=bool)
        size = list(mask.shape)
        np.testing.assert_array_equal(M.decode_rle({"size": size, "counts": counts}), mask)
        np.testing.assert_array_equal(M.decode_rle({"size": size, "counts": counts.encode()}), mask)
    mask = structured_mask()
    np.testing.assert_array_equal(M.decode_rle({"size": [50, 40], "counts": STRUCTURED_COCO}), mask)
    # uncompressed RLEs go through decode_rle as well
    rle = M.mask_to_rle(torch.from_numpy(mask)[None])[0]
    np.testing.assert_array_equal(M.decode_rle(rle), mask)


def test_decode_coco_bad_strings():
    with pytest.raises(ValueError, match="truncated"):
        M.decode_rle({"size": [3, 5], "counts": "3111h"})
    with pytest.raises(ValueError, match="invalid character"):
        M.decode_rle({"size": [3, 5], "counts": "31 11"})


@pytest.mark.skipif(coco_mask is None, reason="needs pycocotools")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2 copy keyword
def test_coco_encode_and_decode_match_pycocotools():
    for masks in mask_batches():
        for mask, rle in zip(masks, M.mask_to_rle(masks)):
            encoded = M.coco_encode_rle(rle)
            assert encoded == amg.coco_encode_rle(rle)
            assert isinstance(encoded["counts"], str)
            from_pycoco = coco_mask.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
            np.testing.assert_array_equal(M.decode_rle(encoded), from_pycoco.astype(bool))
            np.testing.assert_array_equal(M.decode_rle(encoded), mask.numpy())
    mask = structured_mask()
    assert coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode() == STRUCTURED_COCO


def test_coco_encode_needs_no_pycocotools(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # makes `import pycocotools` raise ImportError
    # pycocotools' strings (see STRUCTURED_COCO above) and a round trip through the independent decoder
    assert M.coco_encode_rle(M.mask_to_rle(torch.from_numpy(structured_mask())[None])[0])["counts"] == STRUCTURED_COCO
    assert M.coco_encode_rle({"size": [2, 3], "counts": [1, 2, 1, 2]}) == {
        "size": [2, 3],
        "counts": "1210",
    }  # 4th: 2 - 2
    for masks in mask_batches():
        for mask, rle in zip(masks, M.mask_to_rle(masks)):
            np.testing.assert_array_equal(M.decode_rle(M.coco_encode_rle(rle)), mask.numpy())


# ---------------------------------------------------------------------------------------------------------------
# boxes and scores
# ---------------------------------------------------------------------------------------------------------------


def test_batched_mask_to_box_matches_official():
    # One call per shape (the official function is slow on CPU): all densities stacked, incl. empty masks.
    for i, (height, width) in enumerate(SHAPES):
        masks = torch.cat([random_masks(4, height, width, density, seed=i) for density in DENSITIES])
        shaped = [masks, masks[7], masks.reshape(4, 5, height, width)] if i % 2 else [masks]
        for m in shaped:
            ours = M.batched_mask_to_box(m)
            assert ours.dtype == torch.int64
            assert torch.equal(ours, amg.batched_mask_to_box(m))
    empty = M.batched_mask_to_box(torch.zeros(0, 5, 5, dtype=torch.bool))
    assert empty.shape == (0, 4) and empty.dtype == torch.int64


def test_batched_mask_to_box_known_value():
    mask = torch.zeros(6, 9, dtype=torch.bool)
    mask[2:5, 3] = True
    mask[4, 7] = True
    assert M.batched_mask_to_box(mask).tolist() == [3, 2, 7, 4]


def test_box_xyxy_to_xywh():
    box = torch.tensor([3.0, 4.0, 10.0, 6.0])
    assert torch.equal(M.box_xyxy_to_xywh(box), amg.box_xyxy_to_xywh(box))
    boxes = torch.tensor([[3, 4, 10, 6], [0, 0, 1, 1]])
    assert M.box_xyxy_to_xywh(boxes).tolist() == [[3, 4, 7, 2], [0, 0, 1, 1]]
    assert boxes.tolist() == [[3, 4, 10, 6], [0, 0, 1, 1]]


def test_stability_score_matches_official():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 40, 57, generator=generator) * 3
    logits[0, 0] = -5.0  # both masks empty -> NaN, as in the official code
    for threshold, offset in [(0.0, 1.0), (0.5, 0.25), (-1.0, 2.0)]:
        ours = M.calculate_stability_score(logits, threshold, offset)
        expected = amg.calculate_stability_score(logits, threshold, offset)
        assert ours.dtype == expected.dtype and ours.shape == (3, 4)
        torch.testing.assert_close(ours, expected, equal_nan=True, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# grids and crops
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_per_side", [1, 2, 7, 32, 64])
def test_point_grid_matches_official(n_per_side):
    np.testing.assert_array_equal(M.build_point_grid(n_per_side), amg.build_point_grid(n_per_side))


def test_all_layer_point_grids_match_official():
    for n_per_side, n_layers, scale in [(32, 0, 1), (32, 1, 2), (64, 3, 2), (20, 2, 3)]:
        ours = M.build_all_layer_point_grids(n_per_side, n_layers, scale)
        expected = amg.build_all_layer_point_grids(n_per_side, n_layers, scale)
        assert len(ours) == len(expected) == n_layers + 1
        for a, b in zip(ours, expected):
            np.testing.assert_array_equal(a, b)


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="n_per_side"):
        M.build_point_grid(0)
    with pytest.raises(ValueError, match="n_layers"):
        M.build_all_layer_point_grids(32, -1, 2)


@pytest.mark.parametrize("im_size", [(1200, 1800), (37, 53), (1024, 1024), (481, 1)])
@pytest.mark.parametrize("n_layers", [0, 1, 3])
@pytest.mark.parametrize("overlap_ratio", [0.0, 512 / 1500, 0.5])
def test_crop_boxes_match_official(im_size, n_layers, overlap_ratio):
    assert M.generate_crop_boxes(im_size, n_layers, overlap_ratio) == amg.generate_crop_boxes(
        im_size, n_layers, overlap_ratio
    )


def test_uncrop_matches_official():
    generator = torch.Generator().manual_seed(1)
    crop_box, orig_box = [100, 40, 400, 300], [0, 0, 500, 320]
    boxes = torch.randint(0, 300, (6, 4), generator=generator)
    float_boxes = boxes.float()
    for b in (boxes, float_boxes, float_boxes[None]):
        ours, expected = M.uncrop_boxes_xyxy(b, crop_box), amg.uncrop_boxes_xyxy(b, crop_box)
        assert ours.dtype == expected.dtype and torch.equal(ours, expected)
    points = torch.rand(5, 3, 2, generator=generator) * 300
    for p in (points, points[:, 0]):
        assert torch.equal(M.uncrop_points(p, crop_box), amg.uncrop_points(p, crop_box))
    masks = torch.rand(3, 260, 300, generator=generator) > 0.5
    assert torch.equal(M.uncrop_masks(masks, crop_box, 320, 500), amg.uncrop_masks(masks, crop_box, 320, 500))
    assert M.uncrop_masks(masks, [0, 0, 300, 260], 260, 300) is masks
    edge_boxes = torch.tensor([[0, 0, 50, 50], [5, 100, 150, 290], [250, 250, 300, 260], [100, 100, 120, 120]])
    for crop in (crop_box, [0, 0, 300, 260]):
        assert torch.equal(
            M.is_box_near_crop_edge(edge_boxes, crop, orig_box), amg.is_box_near_crop_edge(edge_boxes, crop, orig_box)
        )


# ---------------------------------------------------------------------------------------------------------------
# small regions
# ---------------------------------------------------------------------------------------------------------------


def blobby_mask(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 1, height // 6 + 1, width // 6 + 1, generator=generator)
    coarse = torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)
    return (coarse + 0.8 * torch.randn(1, 1, height, width, generator=generator))[0, 0].numpy() > 0.3


@pytest.mark.parametrize("mode", ["holes", "islands"])
@pytest.mark.parametrize("area_thresh", [0, 1, 2, 10, 100, 10_000])
def test_remove_small_regions_matches_official(mode, area_thresh):
    masks = [blobby_mask(47, 61, seed) for seed in range(4)]
    masks += [np.zeros((9, 9), dtype=bool), np.ones((9, 9), dtype=bool)]
    for mask in masks:
        ours, changed = M.remove_small_regions(mask, area_thresh, mode)
        expected, expected_changed = amg.remove_small_regions(mask, area_thresh, mode)
        assert changed == expected_changed
        assert ours.dtype == bool
        np.testing.assert_array_equal(ours, expected)
        if not changed:
            assert ours is mask


def test_remove_small_regions_keeps_largest_island():
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0] = True
    mask[5:7, 5:7] = True
    out, changed = M.remove_small_regions(mask, 100, "islands")
    assert changed and out.sum() == 4 and out[5:7, 5:7].all()


def test_remove_small_regions_bad_mode():
    with pytest.raises(ValueError, match="'holes' or 'islands'"):
        M.remove_small_regions(np.zeros((4, 4), dtype=bool), 10, "sprinkles")
