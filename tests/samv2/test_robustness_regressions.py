"""Every failure the property tests (test_properties_*.py) found, as an explicit test: the input, the error it must
raise now (type, and a message naming the argument), and that the object stays usable."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.modules.models.segmentors.samv2.imagepredictor import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2.masks import coco_encode_rle, decode_rle, mask_to_rle, rle_to_mask
from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from ssseg.samv2.prompts import PromptsError, load_prompts
from tests.conftest import make_test_image

H, W = 32, 48
IMAGE = make_test_image(H, W, seed=8)
CLICK = dict(point_coords=np.array([[20.0, 10.0]]), point_labels=np.array([1]))


@pytest.fixture(scope="module")
def predictor(small_model):
    predictor = SAMV2ImagePredictor(model=small_model)
    predictor.setimage(IMAGE)
    return predictor


@pytest.fixture(scope="module")
def expected(predictor):
    return predictor.predict(**CLICK)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # NaN / inf passed every check and gave NaN masks and scores
        (dict(point_coords=[[np.nan, 0.5]], point_labels=[1], normalize_coords=False), ValueError, "point_coords"),
        (dict(box=[0, 0, np.inf, 10]), ValueError, "box must be finite"),
        (dict(box=[np.nan, 0, 10, 10]), ValueError, "box must be finite"),
        (dict(mask_input=np.full((1, 64, 64), np.nan)), ValueError, "mask_input must be finite"),
        (dict(mask_input=np.full((1, 64, 64), 1e300)), ValueError, "mask_input"),
        # huge values overflowed float32 to inf without normalize_coords (no range check there)
        (dict(point_coords=[[1e300, 0.5]], point_labels=[1], normalize_coords=False), ValueError, r"\[0, 1\]"),
        (dict(point_coords=[[2.0, 0.5]], point_labels=[1], normalize_coords=False), ValueError, "outside"),
        # strings and objects failed inside torch.as_tensor
        (dict(point_coords=[["a", "b"]], point_labels=[1]), TypeError, "point_coords"),
        (dict(point_coords=[[1, 2]], point_labels=["1"]), TypeError, "point_labels"),
        (dict(point_coords=np.array([[1, None]], dtype=object), point_labels=[1]), TypeError, "point_coords"),
        (dict(point_coords=[[1, 2], [3]], point_labels=[1, 1]), ValueError, "point_coords .*ragged"),
        # a tensor without data (stands in for a tensor on another device) failed inside numpy
        (dict(point_coords=torch.zeros(1, 2, device="meta"), point_labels=[1]), TypeError, "point_coords .*meta"),
        (dict(box=torch.zeros(4, device="meta")), TypeError, "box .*meta"),
        # a label of 0.5 was truncated to 0 (background) silently, 1e20 wrapped around in the int cast
        (dict(point_coords=[[1, 2]], point_labels=[0.5]), ValueError, "point_labels"),
        (dict(point_coords=[[1, 2]], point_labels=[1e20]), ValueError, "point_labels"),
        # a string flag counted as True
        (dict(**CLICK, multimask_output="False"), TypeError, "multimask_output"),
        (dict(**CLICK, normalize_coords="no"), TypeError, "normalize_coords"),
    ],
)
def test_predict_refuses(predictor, expected, kwargs, error, message):
    with pytest.raises(error, match=message):
        predictor.predict(**kwargs)
    got = predictor.predict(**CLICK)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected)), "the predictor changed after the error"


def test_tensors_on_the_cpu_and_lists_are_prompts_like_arrays(predictor, expected):
    for coords in (torch.tensor([[20.0, 10.0]]), torch.tensor([[20, 10]]), [[20, 10]], np.array([[20, 10]], np.int8)):
        got = predictor.predict(point_coords=coords, point_labels=torch.tensor([1]))
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), f"{type(coords).__name__} prompt differs"


def test_point_count_mismatch_names_the_arguments(predictor):
    with pytest.raises(ValueError, match="point_coords .* box"):
        predictor.predict(point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)), box=[[0, 0, 5, 5]] * 2)


def test_predictbatch_entry_that_is_not_a_list(predictor):
    predictor.setimagebatch([IMAGE, IMAGE])
    with pytest.raises(TypeError, match="point_coords_batch"):
        predictor.predictbatch(point_coords_batch=5, point_labels_batch=[[1], [1]])
    predictor.setimage(IMAGE)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_pil_images_are_refused_not_clipped(predictor, expected, mode):
    """PIL's RGB conversion clipped 16-bit values at 255: a silently white image."""
    image = Image.fromarray(np.full((4, 5), 1000, np.uint16)).convert(mode)
    with pytest.raises(ValueError, match="image is a .*8 bits"):
        predictor.setimage(image)
    with pytest.raises(ValueError, match=r"image_list\[1\]"):
        predictor.setimagebatch([IMAGE, image])
    predictor.setimage(IMAGE)
    assert all(np.array_equal(a, b) for a, b in zip(predictor.predict(**CLICK), expected))


def test_video_prompts_refuse_meta_tensors_and_strings(small_model):
    video = SAMV2VideoPredictor(model=small_model)
    state = video.initstate([IMAGE, IMAGE])
    calls = [
        (TypeError, "points .*meta", lambda: video.addnewpoints(state, 0, 1, torch.zeros(1, 2, device="meta"), [1])),
        (TypeError, "labels", lambda: video.addnewpoints(state, 0, 1, [[1, 2]], ["x"])),
        (TypeError, "box .*meta", lambda: video.addnewpointsorbox(state, 0, 1, box=torch.zeros(4, device="meta"))),
        (TypeError, "mask .*meta", lambda: video.addnewmask(state, 0, 1, torch.zeros(H, W, device="meta"))),
        (ValueError, "points .*ragged", lambda: video.addnewpoints(state, 0, 1, [[1, 2], [3]], [1, 1])),
    ]
    for error, message, call in calls:
        with pytest.raises(error, match=message):
            call()
        assert state.obj_ids == [], f"a failed call ({message}) left an object behind"


@pytest.mark.parametrize(
    "rle, message",
    [
        ({"size": None, "counts": []}, "'size'"),  # was TypeError: object of type 'NoneType' has no len()
        ({"size": [2, "3"], "counts": [6]}, "'size'"),
        ({"size": [2, 3], "counts": ""}, "'counts'|RLE"),  # an empty COCO string
        ({"size": [1, 1], "counts": [1.5]}, "'counts'"),
        ({"size": [1, 1], "counts": [10**30]}, "'counts'"),  # was OverflowError inside numpy
        ({"size": [1, 1], "counts": [[1]]}, "'counts'"),
        ({"size": [1, 1], "counts": None}, "'counts'"),
        ({"size": [1, 1], "counts": b"\xff"}, "'counts' must be ASCII"),  # was UnicodeDecodeError
    ],
)
def test_rle_decoding_refuses(rle, message):
    with pytest.raises(ValueError, match=message):
        decode_rle(rle)


def test_rle_decoding_still_takes_lists_arrays_and_coco_strings():
    mask = torch.tensor([[[0, 1, 1], [1, 0, 1]]], dtype=torch.bool)
    (uncompressed,) = mask_to_rle(mask)
    expected = mask[0].numpy()
    assert np.array_equal(rle_to_mask(uncompressed), expected)
    counts = np.array(uncompressed["counts"], np.uint32)
    assert np.array_equal(decode_rle({"size": (2, 3), "counts": counts}), expected)
    assert np.array_equal(decode_rle({"size": [2.0, 3.0], "counts": uncompressed["counts"]}), expected)
    assert np.array_equal(decode_rle(coco_encode_rle(uncompressed)), expected)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80{}", "not a UTF-8 text file"),  # was UnicodeDecodeError from the codec
        ('{"objects": [{"id": 1, "frame": 0, "mask": "a\\u0000b"}]}', "cannot read mask image"),  # ValueError: NUL
        ('{"objects": [{"id": 1, "frame": 0, "box": [0, 0, 1, 1' + "0" * 400 + "]}]}", r"\.box"),  # OverflowError
        ("[" * 100000 + "]" * 100000, "nested too deeply|not valid JSON"),  # RecursionError
    ],
)
def test_prompts_file_refuses(tmp_path, content, message):
    path = tmp_path / "prompts.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PromptsError, match=message):
        load_prompts(str(path))


def test_prompts_file_round_trip_still_loads(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"objects": [{"id": 1, "frame": 0, "points": [[1, 2]], "labels": [1]}]}))
    (prompt,) = load_prompts(str(path))
    assert prompt.points.tolist() == [[1, 2]] and prompt.labels.tolist() == [1]


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(points_per_side=10**9), ValueError, "points_per_side"),  # was a runaway allocation of the grid
        (dict(points_per_side=2, crop_n_layers=10**6), ValueError, "crop_n_layers"),  # a million crop layers
        (dict(points_per_side=None, point_grids=[[["a", "b"]]]), TypeError, r"point_grids\[0\]"),  # inside numpy
        (dict(points_per_side=None, point_grids=[torch.zeros(4, 2, device="meta")]), TypeError, r"point_grids\[0\]"),
        (dict(points_per_side=2, use_m2m="no"), TypeError, "use_m2m"),  # a string counted as True
        (dict(points_per_side=2, multimask_output="False"), TypeError, "multimask_output"),
    ],
)
def test_generator_options_refused(small_model, options, error, message):
    from ssseg.modules.models.segmentors.samv2.maskgenerator import SAMV2AutomaticMaskGenerator

    with pytest.raises(error, match=message):
        SAMV2AutomaticMaskGenerator(model=small_model, **options)


def test_unhashable_object_ids_name_obj_id(small_model):
    """removeobject / clearallpromptsinframe looked an unhashable id up in a dict: 'unhashable type: list'."""
    video = SAMV2VideoPredictor(model=small_model)
    state = video.initstate([IMAGE, IMAGE])
    video.addnewpoints(state, 0, 1, points=[[20, 10]], labels=[1])
    with pytest.raises(TypeError, match="obj_id must be hashable"):
        video.removeobject(state, [1])
    with pytest.raises(TypeError, match="obj_id must be hashable"):
        video.clearallpromptsinframe(state, 0, [1])
    assert state.obj_ids == [1] and video.removeobject(state, None, strict=False) == ([1], [])
