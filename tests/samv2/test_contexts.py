"""Predictors in the contexts people really use them in (issue 12): built and used inside torch.inference_mode(),
inside torch.no_grad() and outside both, built in one and used in another; under bfloat16 autocast; a model whose
weights were converted after building; one model shared by several predictors in several threads; and weights
changed by load_state_dict after a first run (no cache may serve the old weights' values)."""

import contextlib
import copy
import threading

import numpy as np
import pytest
import torch

from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor, buildsamv2
from ssseg.modules.models.segmentors.samv2.imagepredictor import SAMV2ImagePredictor
from ssseg.modules.models.segmentors.samv2.maskgenerator import SAMV2AutomaticMaskGenerator
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict
from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from tests.conftest import make_test_image

H, W = 32, 48
IMAGE = make_test_image(H, W, seed=7)
FRAMES = [np.ascontiguousarray(np.roll(IMAGE, 3 * i, axis=1)) for i in range(3)]
CLICK = np.array([[20.0, 12.0]])
MODES = {
    "plain": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


def run_all(model):
    """Image logits, automatic-mask areas, tracked video logits and live-stream logits of ``model`` (the four
    predictors)."""
    image = SAMV2ImagePredictor(model=model)
    image.setimage(IMAGE)
    masks, scores, logits = image.predict(point_coords=CLICK, point_labels=np.array([1]))
    amg = SAMV2AutomaticMaskGenerator(model=model, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    areas = [record["area"] for record in amg.generate(IMAGE)]
    video = SAMV2VideoPredictor(model=model)
    state = video.initstate(FRAMES)
    _, _, first = video.addnewpoints(state, 0, 1, points=CLICK, labels=[1])
    tracked = [first.clone()] + [m.clone() for _, _, m in video.propagateinvideo(state)]
    live = SAMV2CameraPredictor(model=model)
    live.loadfirstframe(FRAMES[0])
    streamed = [live.addnewprompt(0, 1, points=CLICK, labels=[1])[2].clone()]
    streamed += [live.track(frame)[1].clone() for frame in FRAMES[1:]]
    return {"image": (masks, scores, logits), "amg": areas, "video": tracked, "live": streamed}


def assert_results_equal(got, expected, what: str, atol: float = 0.0) -> None:
    for a, b, name in zip(got["image"], expected["image"], ("masks", "scores", "logits")):
        diff = np.abs(a - b).max()
        assert a.dtype == b.dtype and diff <= atol, f"{what}: image {name} differ by {diff:.2e} ({a.dtype}, {b.dtype})"
    assert got["amg"] == expected["amg"], f"{what}: automatic-mask areas {got['amg']} vs {expected['amg']}"
    for i, (a, b) in enumerate(zip(got["video"], expected["video"])):
        diff = (a - b).abs().max().item()
        assert a.dtype == b.dtype and diff <= atol, f"{what}: video output {i} differs by {diff:.2e}"
    for i, (a, b) in enumerate(zip(got["live"], expected["live"])):
        diff = (a - b).abs().max().item()
        assert a.dtype == b.dtype and diff <= atol, f"{what}: live-stream output {i} differs by {diff:.2e}"


def build_in(mode: str, state_dict):
    """The small model built and loaded inside ``mode`` (inside inference mode its parameters are inference
    tensors, which have no version counter)."""
    with MODES[mode]():
        model = buildsamv2(small_config_dict(), loadweights=False)
        model.load_state_dict(state_dict, strict=True)
    return model


def small_config_dict():
    from ssseg.configs.samv2 import getconfig

    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg["image_size"] = 256
    return cfg


@pytest.fixture(scope="module")
def reference(small_model):
    with torch.no_grad():
        return run_all(small_model)


@pytest.fixture(scope="module")
def new_weights(small_model):
    """Other random weights, and what a model with them gives."""
    state_dict = random_state_dict(small_model.state_dict(), seed=1)
    model = copy.deepcopy(small_model)
    model.load_state_dict(state_dict)
    return state_dict, run_all(model)


@pytest.mark.parametrize("built", list(MODES))
def test_built_and_used_in_every_mode(small_model, reference, built):
    model = build_in(built, small_model.state_dict())
    assert model.image_encoder.trunk.pos_embed.is_inference() == (built == "inference_mode")
    for used in MODES:
        with MODES[used]():
            got = run_all(model)
        assert_results_equal(got, reference, f"built in {built}, used in {used}")


def test_bfloat16_autocast_gives_float32_logits_and_the_same_objects(small_model, reference):
    """The official notebooks' pattern, on the CPU: outputs stay float32, masks are non-empty where fp32's are."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run_all(small_model)
    masks, scores, logits = got["image"]
    assert masks.dtype == scores.dtype == logits.dtype == np.float32, "image outputs are not float32 under autocast"
    for i, (a, b) in enumerate(zip(masks, reference["image"][0])):
        assert (a.sum() > 0) == (b.sum() > 0), f"image mask {i}: empty under one precision only"
        iou = (a * b).sum() / max(1.0, ((a + b) > 0).sum())
        assert b.sum() == 0 or iou > 0.8, f"image mask {i}: IoU {iou:.2f} with the fp32 mask"
    assert len(got["amg"]) > 0 and len(reference["amg"]) > 0, "no automatic masks under autocast"
    for i, (a, b) in enumerate(zip(got["video"], reference["video"])):
        assert a.dtype == torch.float32, f"video output {i} is {a.dtype} under autocast"
        assert (a > 0).any() == (b > 0).any(), f"video output {i}: empty under one precision only"
    for i, (a, b) in enumerate(zip(got["live"], reference["live"])):
        assert a.dtype == torch.float32, f"live-stream output {i} is {a.dtype} under autocast"
        assert (a > 0).any() == (b > 0).any(), f"live-stream output {i}: empty under one precision only"


def test_weights_converted_after_building(small_model):
    """``.to(dtype)`` and back (``.float()``) after a first run: the results are those of the converted weights."""
    model = copy.deepcopy(small_model)
    with torch.no_grad():
        run_all(model)  # fills every cache
    model.to(torch.bfloat16).float()
    rounded = build_in("plain", model.state_dict())
    with torch.no_grad():
        assert_results_equal(run_all(model), run_all(rounded), "after .to(bfloat16).float()")


def test_one_model_shared_by_predictors_in_threads(small_model, reference):
    """Three threads run the three predictors at once on one model, twice each: every result equals serial use."""
    results, errors = [], []

    def work():
        try:
            with torch.inference_mode():
                results.append(run_all(small_model))
        except Exception as error:  # noqa: BLE001 - reported below with its type
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, f"a thread failed: {errors!r}"
    for i, got in enumerate(results):
        assert_results_equal(got, reference, f"thread {i}", atol=1e-4)


@pytest.mark.parametrize(
    "built, used", [("plain", "no_grad"), ("plain", "inference_mode"), ("inference_mode", "inference_mode")]
)
def test_load_state_dict_after_a_first_run(small_model, new_weights, built, used):
    """No cache (position embeddings, RoPE tables, a video session's frame features) keeps the old weights' values;
    a model whose parameters are inference tensors loads in place inside inference mode."""
    state_dict, expected = new_weights
    model = build_in(built, small_model.state_dict())
    video = SAMV2VideoPredictor(model=model)
    with MODES[used]():
        run_all(model)
        state = video.initstate(FRAMES)  # caches frame 0's features under the old weights
        model.load_state_dict(state_dict)
        got = run_all(model)
        video.resetstate(state)  # a session started before the change, reset: it must not use the old features
        _, _, first = video.addnewpoints(state, 0, 1, points=CLICK, labels=[1])
    assert_results_equal(got, expected, f"new weights, built in {built}, used in {used}")
    diff = (first - expected["video"][0]).abs().max().item()
    assert diff == 0, f"a reset session after load_state_dict differs from the new weights by {diff:.2e}"
