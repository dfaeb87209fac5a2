"""Property-based tests of the automatic mask generator (options and generate), the CLI's prompts-file validator and
RLE decoding: any input works or raises a clean error naming the argument; the generator stays usable."""

import json
import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from ssseg.modules.models.segmentors.samv2.maskgenerator import SAMV2AutomaticMaskGenerator, decode_segmentation
from ssseg.modules.models.segmentors.samv2.masks import coco_encode_rle, decode_rle, rle_to_mask
from ssseg.samv2.prompts import PromptsError, load_prompts
from tests.conftest import make_test_image
from tests.samv2.properties import Quiet, anything, numeric_arrays, odd_scalars, outcome

H, W = 32, 48
IMAGE = make_test_image(H, W, seed=6)
CHEAP = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
SCALE = max(5, settings.default.max_examples // 2)  # the costlier entry points: half the profile's examples


def records_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.keys() != y.keys() or not np.array_equal(x["segmentation"], y["segmentation"]):
            return False
        if any(x[k] != y[k] for k in x if k != "segmentation"):
            return False
    return True


@pytest.fixture(scope="module")
def generator(small_model):
    return SAMV2AutomaticMaskGenerator(model=small_model, **CHEAP)


@pytest.fixture(scope="module")
def fresh(generator):
    return Quiet([generator.generate(IMAGE)])


number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 5),
    st.sampled_from([0.5, 1, 0, 10**30, True, "0.5", None, [0.5]]),
)
OPTIONS = {
    "points_per_side": st.one_of(st.integers(-1, 3), st.sampled_from([None, 2.0, "4", 10**9])),
    "points_per_batch": st.one_of(st.integers(-1, 5), st.sampled_from([1.5, None, 10**12])),
    "pred_iou_thresh": number,
    "stability_score_thresh": number,
    "stability_score_offset": number,
    "mask_threshold": number,
    "box_nms_thresh": number,
    "crop_n_layers": st.one_of(st.integers(-1, 2), st.sampled_from([1.0, None, 10**6])),
    "crop_nms_thresh": number,
    "crop_overlap_ratio": number,
    "crop_n_points_downscale_factor": st.one_of(st.integers(-1, 3), st.sampled_from([1.5, None])),
    "point_grids": st.one_of(st.none(), anything(st.lists(numeric_arrays(st.just((3, 2))), max_size=3))),
    "min_mask_region_area": number,
    "output_mode": st.sampled_from(["binary_mask", "uncompressed_rle", "coco_rle", "polygon", None, 3]),
    "use_m2m": st.one_of(st.booleans(), st.sampled_from(["yes", None, 2])),
    "multimask_output": st.one_of(st.booleans(), st.sampled_from(["no", None])),
}


def is_cheap(generator) -> bool:
    """Whether generate() with these options runs in well under a second on the tiny image."""
    points = sum(len(g) for g in generator.point_grids)
    return points <= 64 and generator.crop_n_layers <= 1 and generator.points_per_batch >= 4


@settings(max_examples=SCALE * 2)
@given(options=st.fixed_dictionaries({}, optional=OPTIONS))
def test_generator_any_options(small_model, fresh, generator, options):
    ok, made = outcome(lambda: SAMV2AutomaticMaskGenerator(model=small_model, **options), list(options) + ["model"])
    if ok and is_cheap(made):
        records = made.generate(IMAGE)
        for record in records:
            mask = decode_segmentation(record["segmentation"])
            assert mask.shape == (H, W) and mask.sum() == record["area"], "segmentation and area disagree"
            numbers = [record["predicted_iou"], record["stability_score"], *record["bbox"]]
            assert all(math.isfinite(v) for v in numbers), f"non-finite record values {numbers}"
    assert records_equal(generator.generate(IMAGE), fresh[0]), "the generator's output changed"


@settings(max_examples=SCALE)
@given(
    image=st.one_of(
        hnp.arrays(np.uint8, st.sampled_from([(1, 1, 3), (1, 9, 3), (9, 1, 3), (5, 7, 4), (5, 7), (2, 5, 7, 3)])),
        numeric_arrays(st.sampled_from([(5, 7, 3), (0, 7, 3), (3,)])),
        odd_scalars,
    )
)
def test_generate_any_image(generator, fresh, image):
    ok, records = outcome(lambda: generator.generate(image), ["image"])
    if ok:
        for record in records:
            assert decode_segmentation(record["segmentation"]).shape == image.shape[:2]
    assert records_equal(generator.generate(IMAGE), fresh[0]), "the generator's output changed after the call"


# ------------------------------------------------------------------------------------------------ prompts file
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**400), 10**400), st.floats(), st.text(max_size=5)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
entry_values = {
    "id": st.one_of(st.integers(-1, 300), json_values),
    "frame": st.one_of(st.integers(-1, 5), json_values),
    "points": st.one_of(st.lists(st.lists(st.floats(-10, 100), min_size=2, max_size=2), max_size=3), json_values),
    "labels": st.one_of(st.lists(st.integers(-1, 2), max_size=3), json_values),
    "box": st.one_of(st.lists(st.floats(-10, 100), min_size=4, max_size=4), json_values),
    "mask": st.one_of(st.sampled_from(["m.png", "missing.png", "", ".", "bad.png", "a\x00b"]), json_values),
    "extra": json_values,
}
prompt_files = st.one_of(
    st.fixed_dictionaries({"objects": st.lists(st.fixed_dictionaries({}, optional=entry_values), max_size=3)}),
    json_values,
)


@settings(max_examples=SCALE * 4)
@given(data=prompt_files, raw=st.one_of(st.none(), st.binary(max_size=20)))
def test_prompts_file_any_content(tmp_path_factory, data, raw):
    from PIL import Image

    folder = tmp_path_factory.mktemp("prompts")
    Image.fromarray(np.full((4, 6), 255, np.uint8)).save(folder / "m.png")
    (folder / "bad.png").write_bytes(b"not a png")
    path = folder / "prompts.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(data))
    ok, prompts = outcome(lambda: load_prompts(str(path), num_frames=4), ["prompts.json"], (PromptsError,))
    if ok:
        for prompt in prompts:
            assert 1 <= prompt.obj_id <= 255 and 0 <= prompt.frame < 4
            assert prompt.points is not None or prompt.box is not None or prompt.mask is not None
            for array in (prompt.points, prompt.box):
                assert array is None or np.isfinite(array).all()


# ------------------------------------------------------------------------------------------------ RLE decoding
rles = st.one_of(
    st.fixed_dictionaries(
        {
            "size": st.one_of(
                st.lists(st.integers(0, 6), min_size=2, max_size=2),
                st.sampled_from([[2], [2, 3, 1], [-1, 2], [1.5, 2], ["2", "3"], None, 5, [10**30, 1]]),
            ),
            "counts": st.one_of(
                st.lists(st.integers(-2, 12), max_size=6),
                st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=6),
                st.binary(max_size=6),
                numeric_arrays(),
                st.sampled_from([None, 3, [1.5, 2.5], [[1, 2]], [10**30], {}]),
            ),
        }
    ),
    st.sampled_from([None, [], "abc", {"size": [2, 2]}, {"counts": [4]}]),
)


@settings(max_examples=SCALE * 8)
@given(rle=rles)
def test_rle_decoding_any_input(rle):
    for decode in (decode_rle, rle_to_mask, decode_segmentation):
        ok, mask = outcome(lambda decode=decode: decode(rle), ["RLE", "rle", "size", "counts", "mask"])
        if ok:
            height, width = int(rle["size"][0]), int(rle["size"][1])
            assert mask.shape == (height, width) and mask.dtype == bool, f"{decode.__name__}: {mask.shape}"
            if not isinstance(rle["counts"], (str, bytes)):
                assert np.array_equal(decode_rle(coco_encode_rle(rle)), mask), "COCO round trip differs"
