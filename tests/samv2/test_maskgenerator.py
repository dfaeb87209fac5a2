"""SAMV2AutomaticMaskGenerator against the official SAM2AutomaticMaskGenerator, RLE round trips and bad inputs.

Both sides run SAM 2.1 tiny at image_size 256 with the same deterministic random weights on a small synthetic
image, so that the official generator (which upsamples every mask and encodes RLEs with a per-mask loop) stays
fast enough for CI. The thresholds are chosen so that several masks survive with random weights.
"""

import math
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2 import maskgenerator as mg
from ssseg.modules.models.segmentors.samv2.maskgenerator import (
    SAMV2AutomaticMaskGenerator,
    decode_segmentation,
    encode_masks_as_rle,
)
from tests.conftest import OFFICIAL_YAML, make_test_image

# Random weights give predicted IoUs of ~0.05 .. 0.35, and masks that follow colour regions of the whole image, so
# that their boxes mostly span the image. A high mask threshold and an image of nested regions with small objects
# near the corners give several masks with distinct boxes (NMS on) and masks inside crops.
BASE = dict(
    points_per_side=6, points_per_batch=16, pred_iou_thresh=0.1, stability_score_thresh=0.3, mask_threshold=15.0
)
CASES = {
    "default_grid": {},  # 3 masks
    "box_nms_off": dict(box_nms_thresh=1.0, mask_threshold=0.0),  # ~100 masks
    "crops": dict(crop_n_layers=1, points_per_side=4),  # 5 of 6 masks from the crops
    "m2m": dict(use_m2m=True, box_nms_thresh=1.0, points_per_side=4),  # ~40 masks
    "single_mask": dict(multimask_output=False, stability_score_offset=0.7),
}


def nested_regions_image() -> np.ndarray:
    """180 x 270 RGB: nested rectangles of flat colours and four small objects near the corners."""
    image = np.full((180, 270, 3), 230, np.uint8)
    image[30:150, 40:230] = (20, 40, 160)
    image[60:120, 90:180] = (240, 200, 40)
    image[80:100, 120:150] = 0
    image[10:25, 10:30] = (200, 30, 30)
    image[150:170, 240:262] = (30, 160, 30)
    image[8:22, 235:255] = 0
    image[155:172, 12:35] = (120, 0, 120)
    return image


@pytest.fixture(scope="module")
def image():
    return nested_regions_image()


@pytest.fixture(scope="module")
def official_model(small_model):
    from sam2.build_sam import build_sam2

    from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict

    model = build_sam2(
        OFFICIAL_YAML["sam2.1_hiera_tiny"], None, device="cpu", hydra_overrides_extra=["++model.image_size=256"]
    )
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    ours = small_model.state_dict()
    assert model.state_dict().keys() == ours.keys()
    assert all(torch.equal(value, ours[key]) for key, value in model.state_dict().items())
    return model.eval()


@pytest.fixture(scope="module")
def run_ours(small_model, image):
    """``run_ours(**options)``: our records for ``image``, computed once per set of options in this module."""
    cache = {}

    def run(**options):
        key = repr(sorted(options.items()))
        if key not in cache:
            cache[key] = SAMV2AutomaticMaskGenerator(model=small_model, **options).generate(image)
        return cache[key]

    return run


def official_generator(model, **kwargs):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(model, **kwargs)
    # the official predictor hard-codes the feature sizes of a 1024 model
    side = model.image_size // 16
    generator.predictor._bb_feat_sizes = [(side * 4, side * 4), (side * 2, side * 2), (side, side)]
    return generator


def assert_same_records(ours, theirs, what, low_res_side=64):
    """Same count; every official mask matched one to one with IoU >= 0.999, area within 0.5%, bbox within 2 px,
    predicted IoU within 1e-4 and stability score within 1e-3.

    The logits of the two implementations agree to ~2e-4 (float32 rounding in a different order), so a low-res
    logit that lies that close to a threshold may land on either side, flipping one upsampled cell of
    ``ceil(H / low_res_side) x ceil(W / low_res_side)`` pixels. At 1024 (256 x 256 low-res logits) that is far below
    the tolerances above; at the image_size 256 used here it can reach 1e-3 of a mask covering a quarter of the
    image, so a difference of up to one such cell is accepted too.
    """
    assert len(theirs) >= 2, f"{what}: only {len(theirs)} official masks, the comparison would be weak"
    assert len(ours) == len(theirs), f"{what}: {len(ours)} masks vs {len(theirs)} official"
    height, width = decode_segmentation(theirs[0]["segmentation"]).shape
    cell = math.ceil(height / low_res_side) * math.ceil(width / low_res_side)
    mine = np.stack([decode_segmentation(r["segmentation"]).reshape(-1) for r in ours]).astype(np.float32)
    ref = np.stack([decode_segmentation(r["segmentation"]).reshape(-1) for r in theirs]).astype(np.float32)
    inter = ref @ mine.T
    union = ref.sum(1)[:, None] + mine.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    taken = set()
    for i, record in enumerate(theirs):
        j = int(np.argmax(iou[i]))
        area = max(record["area"], 1)
        near = f"{what}: official mask {i} (area {area})"
        assert iou[i, j] >= 1 - max(1e-3, cell / area) and j not in taken, f"{near} unmatched (best IoU {iou[i, j]})"
        taken.add(j)
        mask = ours[j]
        assert abs(mask["area"] - record["area"]) <= max(0.005 * record["area"], cell), near
        assert np.abs(np.subtract(mask["bbox"], record["bbox"])).max() <= 2, near
        assert abs(mask["predicted_iou"] - record["predicted_iou"]) <= 1e-4, near
        assert abs(mask["stability_score"] - record["stability_score"]) <= max(1e-3, cell / area), near
        assert np.allclose(mask["point_coords"], record["point_coords"], atol=1e-3), near
        assert mask["crop_box"] == record["crop_box"], near
        assert type(mask["area"]) is int and all(type(v) is float for v in mask["bbox"] + mask["crop_box"])


@pytest.mark.parametrize("case", list(CASES))
def test_matches_official(case, run_ours, official_model, image):
    options = {**BASE, **CASES[case]}
    theirs = official_generator(official_model, **options).generate(image)
    ours = run_ours(**options)
    assert_same_records(ours, theirs, case)
    if case == "crops":
        assert sum(r["crop_box"] != [0.0, 0.0, 270.0, 180.0] for r in theirs) >= 2, "too few masks from the crops"
    assert all(r["segmentation"].shape == image.shape[:2] and r["segmentation"].dtype == bool for r in ours)


def cpu_connected_components(mask):
    """An obvious CPU stand-in for the official CUDA op: 8-connected labels and component areas."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    counts = np.zeros(mask.shape, dtype=np.int32)
    for i, binary in enumerate(mask[:, 0].to(torch.uint8).numpy()):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        labels[i, 0] = lab
        counts[i, 0] = np.where(lab > 0, stats[lab, cv2.CC_STAT_AREA], 0)
    return torch.from_numpy(labels), torch.from_numpy(counts)


def test_small_region_removal_matches_official_with_working_op(monkeypatch, run_ours, official_model, image):
    import sam2.utils.misc

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", cpu_connected_components)
    plain = {**BASE, **CASES["box_nms_off"]}
    options = {**plain, "min_mask_region_area": 60}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = official_generator(official_model, **options).generate(image)
    assert not [w for w in caught if "Skipping the post-processing" in str(w.message)], "the patched op failed"
    ours = run_ours(**options)
    assert_same_records(ours, theirs, "min_mask_region_area")
    # not vacuous: the clean-up changed masks compared with the same run without it
    changed = [
        (a["point_coords"], a["area"], b["area"]) for a, b in zip(run_ours(**plain), ours) if a["area"] != b["area"]
    ]
    assert len(run_ours(**plain)) != len(ours) or changed


def test_tutorial_more_masks_options(small_model, image):
    """Every option of the tutorial's "more masks" example; only the grid is smaller, for CPU time."""
    options = dict(
        points_per_side=64,
        points_per_batch=128,
        pred_iou_thresh=0.7,
        stability_score_thresh=0.92,
        stability_score_offset=0.7,
        crop_n_layers=1,
        box_nms_thresh=0.7,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=25.0,
        use_m2m=True,
    )
    generator = SAMV2AutomaticMaskGenerator(model=small_model, **options)
    assert [len(g) for g in generator.point_grids] == [64 * 64, 32 * 32]
    generator = SAMV2AutomaticMaskGenerator(model=small_model, **{**options, "points_per_side": 2})
    generator.pred_iou_thresh = generator.stability_score_thresh = 0.0  # random weights: keep what there is
    records = generator.generate(image)
    assert len(records) > 0
    assert set(records[0]) == {
        "segmentation",
        "area",
        "bbox",
        "predicted_iou",
        "point_coords",
        "stability_score",
        "crop_box",
    }
    assert {tuple(r["crop_box"]) for r in records} <= {
        (0.0, 0.0, 270.0, 180.0),
        *[
            tuple(float(v) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1]))
            for b in mg.generate_crop_boxes((180, 270), 1, 512 / 1500)[0]
        ],
    }


def test_chunked_upsampling_gives_the_same_masks(monkeypatch, run_ours, small_model, image):
    monkeypatch.setattr(mg, "CPU_CHUNK_BYTES", 7 * 4 * 180 * 270)  # 7 masks at a time, instead of all at once
    records = SAMV2AutomaticMaskGenerator(model=small_model, **BASE).generate(image)
    expected = run_ours(**BASE)
    assert len(records) == len(expected)
    for a, b in zip(records, expected):
        assert np.array_equal(a.pop("segmentation"), b["segmentation"])
        assert a == {k: v for k, v in b.items() if k != "segmentation"}


# ----------------------------------------------------------------------------------------------------------- RLE
def reference_rle(mask):
    """Column-major run lengths starting with background, written the obvious way."""
    flat = mask.T.reshape(-1)
    counts, value, run = [], False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return counts


@pytest.mark.parametrize(
    "crop_box", [(0, 0, 23, 17), (5, 0, 23, 17), (0, 4, 23, 17), (3, 2, 20, 15), (0, 0, 12, 9), (11, 8, 23, 17)]
)
def test_rle_round_trip(crop_box):
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = crop_box
    masks = rng.random((6, y1 - y0, x1 - x0)) < 0.5
    masks[0] = True
    masks[1] = False
    masks[2, 0, 0], masks[2, -1, -1] = True, True
    rles = encode_masks_as_rle(torch.from_numpy(masks), crop_box, (17, 23))
    for mask, rle in zip(masks, rles):
        full = np.zeros((17, 23), dtype=bool)
        full[y0:y1, x0:x1] = mask
        assert rle["size"] == [17, 23] and rle["counts"].tolist() == reference_rle(full)
        assert np.array_equal(decode_segmentation(rle), full)
        assert np.array_equal(decode_segmentation({"size": [17, 23], "counts": rle["counts"].tolist()}), full)


def test_output_modes_agree(monkeypatch, run_ours, small_model, image):
    """Every output mode encodes the same masks (one model run, whose records are re-encoded per mode)."""
    options = {**BASE, **CASES["box_nms_off"]}
    binary = run_ours(**options)
    generator = SAMV2AutomaticMaskGenerator(model=small_model, **options, output_mode="uncompressed_rle")
    records = generator._generate_masks(image, False)
    monkeypatch.setattr(generator, "_generate_masks", lambda *args: records)
    rle = generator.generate(image)
    assert len(binary) == len(rle) > 10
    for a, b in zip(binary, rle):
        assert isinstance(b["segmentation"]["counts"], list) and b["segmentation"]["size"] == list(image.shape[:2])
        assert sum(b["segmentation"]["counts"][1::2]) == b["area"] == int(a["segmentation"].sum())
        assert np.array_equal(decode_segmentation(b["segmentation"]), a["segmentation"])
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(a["segmentation"])
        assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils

    generator.output_mode = "coco_rle"
    coco = generator.generate(image)
    for a, c in zip(binary, coco):
        assert isinstance(c["segmentation"]["counts"], str)
        encoded = {"size": c["segmentation"]["size"], "counts": c["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(encoded).astype(bool), a["segmentation"])
        assert int(mask_utils.area(encoded)) == c["area"]
        assert np.array_equal(decode_segmentation(c["segmentation"]), a["segmentation"])


def test_coco_rle_needs_no_pycocotools(monkeypatch, small_model):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    generator = SAMV2AutomaticMaskGenerator(
        model=small_model, output_mode="coco_rle", points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0
    )
    records = generator.generate(make_test_image(48, 64))
    assert records and all(isinstance(r["segmentation"]["counts"], str) for r in records)
    assert all(decode_segmentation(r["segmentation"]).sum() == r["area"] for r in records)
    # decoding needs no pycocotools (a pycocotools-made string of [[0, 1, 1], [1, 1, 0]])
    assert decode_segmentation({"size": [2, 3], "counts": "141"}).tolist() == [[0, 1, 1], [1, 1, 0]]


# ---------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points_per_side=8, point_grids=[np.full((4, 2), 0.5)]), "exactly one of points_per_side"),
        (dict(points_per_side=None), "exactly one of points_per_side"),
        (dict(output_mode="polygon"), "unknown output_mode"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
        (dict(pred_iou_thresh=-0.1), "pred_iou_thresh"),
        (dict(stability_score_thresh=1.01), "stability_score_thresh"),
        (dict(stability_score_thresh=-1), "stability_score_thresh"),
        (dict(box_nms_thresh=2.0), "box_nms_thresh"),
        (dict(crop_nms_thresh=-0.5), "crop_nms_thresh"),
        (dict(crop_overlap_ratio=1.5), "crop_overlap_ratio"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(points_per_side=0), "points_per_side"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "leaves no point"),
        (dict(min_mask_region_area=-1), "min_mask_region_area"),
        (dict(points_per_side=None, point_grids=[np.full((4, 2), 1.5)]), r"point_grids\[0\]"),
        (dict(points_per_side=None, point_grids=[np.full((4, 2), 0.5)], crop_n_layers=1), "one per layer"),
    ],
)
def test_bad_options_raise(kwargs, match, small_model):
    with pytest.raises(ValueError, match=match):
        SAMV2AutomaticMaskGenerator(model=small_model, **kwargs)


@pytest.mark.parametrize(
    "shape, dtype",
    [
        ((20, 30), np.uint8),
        ((20, 30, 4), np.uint8),
        ((20, 30, 1), np.uint8),
        ((2, 20, 30, 3), np.uint8),
        ((20, 30, 3), np.float32),
        ((0, 30, 3), np.uint8),
    ],
)
def test_bad_images_raise(shape, dtype, small_model):
    generator = SAMV2AutomaticMaskGenerator(model=small_model, points_per_side=2)
    with pytest.raises(ValueError):
        generator.generate(np.zeros(shape, dtype=dtype))


def test_explicit_point_grids_equal_points_per_side(capsys, run_ours, small_model, image):
    grids = mg.build_all_layer_point_grids(BASE["points_per_side"], 0, 1)
    options = {k: v for k, v in BASE.items() if k != "points_per_side"}
    generator = SAMV2AutomaticMaskGenerator(model=small_model, points_per_side=None, point_grids=grids, **options)
    records = generator.generate(image)
    assert capsys.readouterr().err == ""  # no progress bar by default
    expected = run_ours(**BASE)
    assert len(records) == len(expected)
    assert all(np.array_equal(a["segmentation"], b["segmentation"]) for a, b in zip(records, expected))


def test_shares_the_model_of_a_predictor_with_progress_bar(capsys, small_model, image):
    predictor = SAMV2ImagePredictor(model=small_model)
    predictor.setimage(image)
    embedding = predictor.getimageembedding().clone()
    generator = SAMV2AutomaticMaskGenerator(model=predictor, points_per_side=4, progress=True)
    assert generator.model is predictor.model is small_model
    generator.generate(image[:100, :150])
    assert "point batches" in capsys.readouterr().err
    assert torch.equal(predictor.getimageembedding(), embedding)  # the caller's predictor is left alone


def test_postprocess_small_regions_fills_holes_drops_islands_and_reruns_nms():
    base = np.zeros((40, 60), dtype=bool)
    base[5:30, 5:40] = True
    holed = base.copy()
    holed[10:12, 10:12] = False  # a 4-pixel hole
    holed[35:37, 50:52] = True  # a 4-pixel island
    other = np.zeros((40, 60), dtype=bool)
    other[20:38, 45:58] = True

    def record(mask):
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]
        return {"segmentation": mask, "area": int(mask.sum()), "bbox": bbox, "predicted_iou": 0.9}

    anns = [record(holed), record(base), record(other)]
    anns[0]["segmentation"] = encode_masks_as_rle(torch.from_numpy(holed)[None])[0]  # any output mode goes in
    out = SAMV2AutomaticMaskGenerator.postprocess_small_regions(anns, min_area=10, nms_thresh=0.7)
    # the cleaned mask equals `base` and loses the NMS against the unchanged one; `other` survives
    assert len(out) == 2
    assert np.array_equal(out[0]["segmentation"], base) and out[0]["bbox"] == record(base)["bbox"]
    assert np.array_equal(out[1]["segmentation"], other) and out[1]["area"] == int(other.sum())
    assert SAMV2AutomaticMaskGenerator.postprocess_small_regions([], 10, 0.7) == []
