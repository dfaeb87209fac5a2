"""Input handling of SAMV2ImagePredictor: accepted formats, shapes, and a clear error for each bad input."""

import numpy as np
import pytest
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor


@pytest.fixture()
def predictor(small_model):
    return SAMV2ImagePredictor(model=small_model)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(60, 90, 3), dtype=np.uint8)


def test_shapes_of_every_prompt_kind(predictor, image):
    predictor.setimage(image)
    assert predictor.getimageembedding().shape == (1, 256, 16, 16)
    masks, scores, low = predictor.predict(point_coords=np.array([[10, 20]]), point_labels=np.array([1]))
    assert (
        masks.shape == (3, 60, 90) and masks.dtype == np.float32 and scores.shape == (3,) and low.shape == (3, 64, 64)
    )
    masks, scores, low = predictor.predict(box=np.array([5, 5, 40, 50]), multimask_output=False)
    assert masks.shape == (1, 60, 90) and scores.shape == (1,)
    masks, scores, low = predictor.predict(box=np.array([[5, 5, 40, 50], [0, 0, 89, 59]]), multimask_output=False)
    assert masks.shape == (2, 1, 60, 90) and scores.shape == (2, 1) and low.shape == (2, 1, 64, 64)
    logits, _, _ = predictor.predict(mask_input=low[0], multimask_output=False, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (1, 60, 90)
    masks, _, _ = predictor.predict()  # no prompt at all is allowed, as in the official predictor
    assert masks.shape == (3, 60, 90)


def test_gray_rgba_and_pil_images_are_converted(predictor, image):
    predictor.setimage(image)
    reference = predictor.getimageembedding().clone()
    predictor.setimage(np.concatenate([image, np.full((60, 90, 1), 255, np.uint8)], axis=2))
    assert (predictor.getimageembedding() - reference).abs().max() == 0
    predictor.setimage(Image.fromarray(image))
    assert (predictor.getimageembedding() - reference).abs().max() == 0
    predictor.setimage(image[:, :, 0])
    assert predictor.getimageembedding().shape == reference.shape
    assert predictor.orig_hw == [(60, 90)]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((60, 90, 3), np.float32), "dtype uint8"),
        (np.zeros((60, 90, 2), np.uint8), r"H x W x 3 .*got shape \(60, 90, 2\)"),
        (np.zeros((0, 90, 3), np.uint8), "empty"),
        ("image.jpg", "numpy array .* or a PIL image"),
    ],
)
def test_bad_images(predictor, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        predictor.setimage(bad)


def test_predict_before_setimage(predictor):
    predictor.resetpredictor()
    with pytest.raises(RuntimeError, match=r"call setimage\(image\) before predict"):
        predictor.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="setimage"):
        predictor.getimageembedding()
    with pytest.raises(RuntimeError, match="setimagebatch"):
        predictor.predictbatch(box_batch=[np.array([0, 0, 5, 5])])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(point_coords=np.array([[10, 20]])), "without point_labels"),
        (dict(point_labels=np.array([1])), "without point_coords"),
        (dict(point_coords=np.array([[10, 20], [5, 5]]), point_labels=np.array([1])), "one label per point"),
        (dict(point_coords=np.array([10, 20, 30]), point_labels=np.array([1])), r"N x 2 or B x N x 2"),
        (dict(point_coords=np.array([[10, 20]]), point_labels=np.array([7])), "must be 1 .*0 .*-1"),
        (dict(point_coords=np.array([[500, 20]]), point_labels=np.array([1])), "outside the 90 x 60"),
        (dict(box=np.array([40, 5, 10, 50])), "x1 >= x0"),
        (dict(box=np.array([1, 2, 3])), r"4 values .*got shape \(3,\)"),
        (dict(box=np.array([200, 200, 300, 300])), "entirely outside"),
        (dict(mask_input=np.zeros((1, 32, 32))), r"mask_input must be 1 x 64 x 64"),
        (
            dict(point_coords=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1)), box=np.array([[0, 0, 5, 5]] * 2)),
            "3 point sets and 2 boxes",
        ),
    ],
)
def test_bad_prompts(predictor, image, kwargs, message):
    predictor.setimage(image)
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)
    # the predictor stays usable after the error
    assert predictor.predict(box=np.array([5, 5, 40, 50]))[0].shape == (3, 60, 90)


def test_batch_api(predictor, image):
    predictor.setimagebatch([image, image[:40, :50]])
    masks, scores, low = predictor.predictbatch(
        None, None, box_batch=[np.array([1, 1, 30, 30])] * 2, multimask_output=False
    )
    assert [m.shape for m in masks] == [(1, 60, 90), (1, 40, 50)]
    with pytest.raises(ValueError, match="box_batch has 1 entries but 2 images"):
        predictor.predictbatch(box_batch=[np.array([1, 1, 30, 30])])
    with pytest.raises(ValueError, match="non-empty list"):
        predictor.setimagebatch([])


def test_official_aliases(predictor, image):
    predictor.set_image(image)
    assert predictor.get_image_embedding() is predictor.getimageembedding()
    predictor.reset_predictor()
    assert not predictor.is_image_set
    assert SAMV2ImagePredictor.predict_batch is SAMV2ImagePredictor.predictbatch
    assert SAMV2ImagePredictor.set_image_batch is SAMV2ImagePredictor.setimagebatch
