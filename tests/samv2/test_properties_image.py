"""Property-based tests of the image predictor: any input to setimage / setimagebatch / predict / predictbatch works
(finite outputs of the documented shapes) or raises a clean error naming the argument, and the predictor stays
usable: the next valid call gives exactly what a fresh predictor gives."""

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given
from PIL import Image

from ssseg.modules.models.segmentors.samv2.imagepredictor import SAMV2ImagePredictor
from tests.conftest import make_test_image
from tests.samv2.properties import Quiet, anything, as_container, assert_finite, near_valid, numeric_arrays, outcome

H, W = 32, 48
IMAGE = make_test_image(H, W, seed=3)
VALID = dict(point_coords=np.array([[20.0, 10.0]]), point_labels=np.array([1]))
FLAGS = st.one_of(st.booleans(), st.sampled_from([0, 1, 2, "False", None, np.bool_(True)]))


@pytest.fixture(scope="module")
def fresh(small_model):
    """What a fresh predictor gives for the valid call, on the image and on a batch of two."""
    predictor = SAMV2ImagePredictor(model=small_model)
    predictor.setimage(IMAGE)
    single = predictor.predict(**VALID)
    predictor.setimagebatch([IMAGE, IMAGE[::-1].copy()])
    batch = predictor.predictbatch([VALID["point_coords"]] * 2, [VALID["point_labels"]] * 2)
    return Quiet((single, batch))


@pytest.fixture(scope="module")
def predictor(small_model):
    predictor = SAMV2ImagePredictor(model=small_model)
    predictor.setimage(IMAGE)
    return predictor


def assert_same(got, expected, what: str) -> None:
    for i, (a, b) in enumerate(zip(got, expected)):
        if isinstance(a, list):
            assert_same(a, b, f"{what}[{i}]")
            continue
        assert a.shape == b.shape and np.array_equal(a, b), f"{what}: output {i} differs from a fresh predictor's"


def check_prediction(result, kwargs, height: int, width: int, low_res: int) -> None:
    masks, scores, logits = result
    multimask = kwargs.get("multimask_output", True)
    channels = 3 if multimask else 1
    assert masks.shape[-2:] == (height, width), f"masks {masks.shape} for a {height} x {width} image"
    assert masks.ndim in (3, 4) and masks.shape[-3] == channels, f"masks {masks.shape}, expected C={channels}"
    assert scores.shape == masks.shape[:-2], f"scores {scores.shape} vs masks {masks.shape}"
    assert logits.shape == (*masks.shape[:-2], low_res, low_res), f"logits {logits.shape} vs masks {masks.shape}"
    assert masks.dtype == np.float32, f"masks dtype {masks.dtype}, expected float32 (as officially)"
    if not kwargs.get("return_logits", False):
        assert np.isin(masks, (0.0, 1.0)).all(), "masks without return_logits must be 0 / 1"
    assert_finite(masks, scores, logits)


def prompt_kwargs():
    """Every argument of predict, each absent, valid-ish or anything at all."""
    coords = anything(near_valid((1, 2), -5, 60) | near_valid((2, 1, 2), -5, 60) | near_valid((3, 2), 0, 1))
    labels = anything(near_valid((1,), 0, 1, integers=True) | near_valid((2, 1), 0, 1, integers=True))
    box = anything(near_valid((4,), -5, 60) | near_valid((2, 4), 0, 40))
    mask = anything(near_valid((1, 64, 64), -40, 40) | near_valid((2, 1, 64, 64), -40, 40))
    optional = lambda s: st.one_of(st.none(), s)  # noqa: E731
    return st.fixed_dictionaries(
        {},
        optional={
            "point_coords": optional(coords),
            "point_labels": optional(labels),
            "box": optional(box),
            "mask_input": optional(mask),
            "multimask_output": FLAGS,
            "return_logits": FLAGS,
            "normalize_coords": FLAGS,
        },
    )


@given(kwargs=prompt_kwargs())
def test_predict_any_prompt(predictor, fresh, kwargs):
    predictor.setimage(IMAGE)
    names = list(kwargs) + ["point", "box", "mask"]
    ok, result = outcome(lambda: predictor.predict(**kwargs), names)
    if ok:
        check_prediction(result, kwargs, H, W, 64)
    assert_same(predictor.predict(**VALID), fresh[0], "predict after the call")


@given(kwargs=prompt_kwargs(), count=st.integers(0, 3))
def test_predictbatch_any_prompt(predictor, fresh, kwargs, count):
    """Each prompt argument becomes a per-image list (of a wrong length sometimes)."""
    predictor.setimagebatch([IMAGE, IMAGE[::-1].copy()])
    batch_kwargs = {}
    for name, value in kwargs.items():
        if name in ("multimask_output", "return_logits", "normalize_coords"):
            batch_kwargs[name] = value
        else:
            batch_kwargs[f"{name}_batch" if name != "box" else "box_batch"] = [value] * count
    names = list(batch_kwargs) + ["point", "box", "mask", "entries"]
    ok, result = outcome(lambda: predictor.predictbatch(**batch_kwargs), names)
    if ok:
        assert all(len(part) == 2 for part in result), "predictbatch must return one entry per image"
        for i in range(2):
            check_prediction([part[i] for part in result], kwargs, H, W, 64)
    got = predictor.predictbatch([VALID["point_coords"]] * 2, [VALID["point_labels"]] * 2)
    assert_same(got, fresh[1], "predictbatch after the call")
    predictor.setimage(IMAGE)


# ------------------------------------------------------------------------------------------------------ images
image_shapes = st.sampled_from([(1, 1, 3), (1, 7, 3), (9, 1), (5, 6, 4), (5, 6, 1), (2, 5, 6, 3), (0, 4, 3), (4,), ()])


@st.composite
def images(draw):
    kind = draw(st.sampled_from(["uint8", "numeric", "pil", "pil16", "other"]))
    if kind == "uint8":
        return draw(hnp.arrays(np.uint8, draw(image_shapes)))
    if kind == "numeric":
        return draw(numeric_arrays(image_shapes))
    if kind == "pil":
        height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        mode = draw(st.sampled_from(["RGB", "RGBA", "L", "1", "P", "LA", "CMYK"]))
        return Image.new(mode, (width, height))
    if kind == "pil16":
        return Image.fromarray(draw(hnp.arrays(np.uint16, (3, 4))))
    return draw(st.one_of(st.sampled_from(["photo.jpg", None, 3, [[1, 2]]]), numeric_arrays().flatmap(as_container)))


@given(image=images())
def test_setimage_any_image(predictor, fresh, image):
    ok, _ = outcome(lambda: predictor.setimage(image), ["image"])
    if ok:
        embedding = predictor.getimageembedding()
        assert embedding.shape == (1, 256, 16, 16), f"embedding {tuple(embedding.shape)}"
        assert_finite(embedding)
        height, width = predictor.orig_hw[0]
        check_prediction(predictor.predict(box=np.array([0, 0, width, height])), {}, height, width, 64)
    predictor.setimage(IMAGE)
    assert_same(predictor.predict(**VALID), fresh[0], "predict after setimage")


@given(image_list=st.one_of(st.lists(images(), min_size=0, max_size=3), images()))
def test_setimagebatch_any_list(predictor, fresh, image_list):
    ok, _ = outcome(lambda: predictor.setimagebatch(image_list), ["image_list"])
    if ok:
        embedding = predictor.getimageembedding()
        assert embedding.shape == (len(image_list), 256, 16, 16), f"embedding {tuple(embedding.shape)}"
        assert_finite(embedding)
    predictor.setimagebatch([IMAGE, IMAGE[::-1].copy()])
    got = predictor.predictbatch([VALID["point_coords"]] * 2, [VALID["point_labels"]] * 2)
    assert_same(got, fresh[1], "predictbatch after setimagebatch")
    predictor.setimage(IMAGE)
