"""Property-based tests of the live predictor SAMV2CameraPredictor: any frame for loadfirstframe / track, any
prompt for addnewprompt / addnewmask and any id for removeobject either work (finite ``N x 1 x H x W`` logits) or
raise a clean error naming the argument (KeyError only for an unknown id in removeobject, as documented), and the
stream stays usable: after a rejected call, the next valid calls give exactly (torch.equal) what a fresh stream
given the same valid calls gives."""

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor
from tests.samv2.properties import ALLOWED, DTYPES, Quiet, outcome
from tests.samv2.test_camerapredictor import tiny_model
from tests.samv2.test_properties_video import CLICK, FRAMES, H, W, masks, obj_ids, prompt_kwargs

NEW_ID = 99  # the object of the valid follow-up calls
SCALE = max(3, settings.default.max_examples // 3)  # each example runs the model a few times
OBJECT_ARGS = ALLOWED + (KeyError,)  # removeobject documents KeyError for an unknown id


@pytest.fixture(scope="module")
def camera():
    return SAMV2CameraPredictor(model=tiny_model("sam2.1_hiera_tiny"))


def follow_up(camera):
    """The valid calls after the one under test: a new object clicked on the latest frame, then one tracked frame.
    Only that object's rows are returned (objects are tracked independently of each other)."""
    _, ids, logits = camera.addnewprompt(camera.frame_idx, NEW_ID, **CLICK)
    clicked = logits[list(ids).index(NEW_ID)].clone()
    ids, logits = camera.track(FRAMES[1])
    return clicked, logits[list(ids).index(NEW_ID)].clone()


@pytest.fixture(scope="module")
def fresh(camera):
    camera.loadfirstframe(FRAMES[0])
    return Quiet(follow_up(camera))


def assert_usable(camera, fresh, exact: bool) -> None:
    """``exact``: after a rejected call the stream is as it was, so the results are bit for bit a fresh stream's.
    After an accepted call another object may be batched with the new one: equal within float rounding."""
    for name, got, want in zip(("click", "tracked frame"), follow_up(camera), fresh):
        assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != fresh {tuple(want.shape)}"
        if exact:
            assert torch.equal(got, want), f"{name} after a rejected call differs from a fresh stream's"
        else:
            diff = (got - want).abs().max().item()
            assert diff <= 1e-4, f"{name} after the call differs from a fresh stream's by {diff:.2e}"


def check_result(ids, logits, camera) -> None:
    assert list(ids) == camera.obj_ids, f"returned ids {list(ids)}, stream has {camera.obj_ids}"
    assert logits.shape == (len(ids), 1, H, W), f"logits {tuple(logits.shape)} for {len(ids)} objects"
    assert torch.isfinite(logits).all(), "non-finite logits"


@st.composite
def frames(draw):
    """Frames of any shape, dtype, channel count and size, as arrays, lists, tensors or PIL images."""
    kind = draw(st.sampled_from(["array", "array", "pil", "list", "tensor", "other"]))
    shape = draw(st.sampled_from([(H, W, 3), (H, W), (H, W, 4), (H, W, 1), (1, 1, 3), (0, W, 3), (2 * H, W, 3)]))
    dtype = draw(st.sampled_from(DTYPES + [np.uint8, np.uint8]))
    array = draw(hnp.arrays(dtype, shape))
    if kind == "pil":
        mode = draw(st.sampled_from(["RGB", "L", "RGBA", "I"]))
        size = draw(st.sampled_from([(W, H), (W + 1, H), (1, 1)]))
        return Image.new(mode, size)
    if kind == "list":
        return array.tolist()
    if kind == "tensor":
        return torch.from_numpy(array.astype(np.float32))
    if kind == "other":
        return draw(st.sampled_from([None, "frame.png", 3, [], [FRAMES[0]], (FRAMES[0],)]))
    return array


@settings(max_examples=SCALE)
@given(frame=frames(), method=st.sampled_from(["loadfirstframe", "track"]))
def test_frames_any_input(camera, fresh, frame, method):
    camera.loadfirstframe(FRAMES[0])
    ok, result = outcome(lambda: getattr(camera, method)(frame), ["frame"])
    if ok and method == "track":
        check_result(*result, camera)
    if ok:
        camera.loadfirstframe(FRAMES[0])  # an accepted frame started / moved the stream: start over
    assert_usable(camera, fresh, exact=True)


@settings(max_examples=SCALE)
@given(kwargs=prompt_kwargs())
def test_addnewprompt_any_prompt(camera, fresh, kwargs):
    camera.loadfirstframe(FRAMES[0])
    names = list(kwargs) + ["point", "box", "label"]
    ok, result = outcome(lambda: camera.addnewprompt(**kwargs), names)
    if ok:
        check_result(*result[1:], camera)
    else:
        assert camera.obj_ids == [], f"a rejected call changed the objects: {camera.obj_ids}"
    assert_usable(camera, fresh, exact=not ok)


@settings(max_examples=SCALE)
@given(frame_idx=st.one_of(st.integers(-2, 2), st.sampled_from([0.0, "0", None, True])), obj_id=obj_ids, mask=masks())
def test_addnewmask_any_mask(camera, fresh, frame_idx, obj_id, mask):
    camera.loadfirstframe(FRAMES[0])
    ok, result = outcome(lambda: camera.addnewmask(frame_idx, obj_id, mask), ["mask", "frame", "obj_id"])
    if ok:
        check_result(*result[1:], camera)
    else:
        assert camera.obj_ids == [], f"a rejected call changed the objects: {camera.obj_ids}"
    assert_usable(camera, fresh, exact=not ok)


@settings(max_examples=SCALE)
@given(obj_id=obj_ids)
def test_removeobject_any_id(camera, fresh, obj_id):
    camera.loadfirstframe(FRAMES[0])
    camera.addnewprompt(0, 1, **CLICK)
    ok, result = outcome(lambda: camera.removeobject(obj_id), ["obj_id", "object"], OBJECT_ARGS)
    if ok:
        assert result == camera.obj_ids == [], f"removing {obj_id!r} left {result} / {camera.obj_ids}"
    else:
        assert camera.obj_ids == [1], f"a rejected removal changed the objects: {camera.obj_ids}"
        camera.removeobject(1)  # the follow-up compares against a stream without object 1
    assert_usable(camera, fresh, exact=True)
