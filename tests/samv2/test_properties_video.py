"""Property-based tests of the video predictor: any source for initstate, any prompt for addnewpoints /
addnewpointsorbox / addnewmask, any arguments of propagateinvideo / removeobject / clearallpromptsinframe either
work (finite logits of the documented shapes) or raise a clean error naming the argument (IndexError for a frame
index out of range and KeyError for an unknown object, as documented), and the session stays usable: the next
valid calls give exactly what a fresh session gives."""

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from tests.conftest import make_test_image
from tests.samv2.properties import ALLOWED, Quiet, anything, as_container, near_valid, numeric_arrays, outcome

H, W, T = 32, 48, 2
FRAMES = [np.ascontiguousarray(np.roll(make_test_image(H, W, seed=4), 3 * i, axis=1)) for i in range(T)]
CLICK = dict(points=np.array([[20.0, 10.0]]), labels=np.array([1]))
NEW_ID = 99  # the object of the valid follow-up call
SCALE = max(5, settings.default.max_examples // 2)  # the costlier entry points: half the profile's examples
FRAME_ARGS = ALLOWED + (IndexError,)  # a frame index out of range is an IndexError (documented)
OBJECT_ARGS = ALLOWED + (KeyError,)  # an unknown object id is a KeyError (documented)
frame_indices = st.one_of(st.integers(-4, T + 2), st.sampled_from([1.0, 1.5, "0", None, True, np.int64(1), 10**20]))
obj_ids = st.one_of(st.integers(0, 3), st.sampled_from(["a", (1, 2), None, [1], 1.0, -1]))


@pytest.fixture(scope="module")
def predictor(small_model):
    return SAMV2VideoPredictor(model=small_model)


@pytest.fixture(scope="module")
def fresh(predictor):
    """A fresh session's outputs for the valid follow-up: a click on frame 0, then tracking."""
    state = predictor.initstate(FRAMES)
    return Quiet(follow_up(predictor, state))


def follow_up(predictor, state):
    """The valid calls after the one under test: a new object clicked on frame 0, then tracking. Only that object's
    rows are returned (objects are tracked independently of each other)."""
    _, ids, logits = predictor.addnewpoints(state, 0, NEW_ID, **CLICK)
    row = ids.index(NEW_ID)
    tracked = [(f, m[row].clone()) for f, ids, m in predictor.propagateinvideo(state)]
    return logits[row].clone(), tracked


def assert_usable(predictor, state, fresh) -> None:
    got = follow_up(predictor, state)
    assert torch.equal(got[0], fresh[0]), "the click after the call differs from a fresh session's"
    assert [f for f, _ in got[1]] == [f for f, _ in fresh[1]], "tracked frames differ from a fresh session's"
    for (f, a), (_, b) in zip(got[1], fresh[1]):
        diff = (a - b).abs().max().item()
        assert diff <= 1e-4, f"frame {f}: tracking after the call differs from a fresh session's by {diff:.2e}"


def check_result(result, state, frame_idx=None) -> None:
    frame, ids, logits = result
    assert ids == state.obj_ids, f"returned ids {ids}, state has {state.obj_ids}"
    assert logits.shape == (len(ids), 1, H, W), f"logits {tuple(logits.shape)} for {len(ids)} objects"
    assert torch.isfinite(logits).all(), "non-finite logits"
    if frame_idx is not None:
        assert frame == frame_idx


def prompt_kwargs():
    optional = lambda s: st.one_of(st.none(), s)  # noqa: E731
    return st.fixed_dictionaries(
        {
            "frame_idx": frame_indices,
            "obj_id": obj_ids,
        },
        optional={
            "points": optional(anything(near_valid((1, 2), -5, 60) | near_valid((1, 1, 2), 0, 1))),
            "labels": optional(anything(near_valid((1,), 0, 1, integers=True))),
            "box": optional(anything(near_valid((4,), -5, 60))),
            "clear_old_points": st.booleans(),
            "normalize_coords": st.booleans(),
        },
    )


@given(kwargs=prompt_kwargs())
def test_addnewpointsorbox_any_prompt(predictor, fresh, kwargs):
    state = predictor.initstate(FRAMES)
    before = list(state.obj_ids)
    names = list(kwargs) + ["point", "box", "label"]
    ok, result = outcome(lambda: predictor.addnewpointsorbox(state, **kwargs), names, FRAME_ARGS)
    if ok:
        check_result(result, state, kwargs["frame_idx"])
    else:
        assert state.obj_ids == before, f"a failed call changed the objects: {state.obj_ids}"
    assert_usable(predictor, state, fresh)


@st.composite
def masks(draw):
    kind = draw(st.sampled_from(["bool", "numeric", "tensor", "other"]))
    shape = draw(st.sampled_from([(H, W), (1, H, W), (2 * H, 2 * W), (256, 256), (H, H), (0, W), (H,), (1, 1)]))
    if kind == "bool":
        return draw(as_container(draw(hnp.arrays(np.bool_, shape))))
    if kind == "numeric":
        return draw(numeric_arrays(st.just(shape)).flatmap(as_container))
    if kind == "tensor":
        return torch.from_numpy(draw(hnp.arrays(np.float32, shape)))
    return draw(anything(st.none()))


@given(frame_idx=frame_indices, obj_id=obj_ids, mask=masks())
def test_addnewmask_any_mask(predictor, fresh, frame_idx, obj_id, mask):
    state = predictor.initstate(FRAMES)
    ok, result = outcome(
        lambda: predictor.addnewmask(state, frame_idx, obj_id, mask), ["mask", "frame", "obj_id"], FRAME_ARGS
    )
    if ok:
        check_result(result, state, frame_idx)
    else:
        assert state.obj_ids == [], f"a failed call changed the objects: {state.obj_ids}"
    assert_usable(predictor, state, fresh)


@settings(max_examples=SCALE)
@given(
    start=st.one_of(st.none(), frame_indices),
    count=st.one_of(st.none(), st.integers(-2, 5), st.sampled_from([1.5, "2", True, 10**20])),
    reverse=st.one_of(st.booleans(), st.sampled_from([0, 1, "yes", None])),
    action=st.sampled_from(["propagate", "remove", "clear"]),
    obj_id=obj_ids,
    flag=st.booleans(),
)
def test_session_calls_any_arguments(predictor, fresh, start, count, reverse, action, obj_id, flag):
    """propagateinvideo's range arguments, removeobject and clearallpromptsinframe, on a session with object 1."""
    state = predictor.initstate(FRAMES)
    predictor.addnewpoints(state, 1, 1, **CLICK)
    if action == "propagate":
        names = ["start_frame_idx", "max_frame_num_to_track", "reverse"]
        call = lambda: list(predictor.propagateinvideo(state, start, count, reverse))  # noqa: E731
        ok, results = outcome(call, names, FRAME_ARGS)
        for result in results if ok else []:
            check_result(result, state)
    elif action == "remove":
        ok, result = outcome(lambda: predictor.removeobject(state, obj_id, strict=flag), ["obj_id"], OBJECT_ARGS)
        if ok:
            assert result[0] == state.obj_ids
    else:
        call = lambda: predictor.clearallpromptsinframe(state, start, obj_id)  # noqa: E731
        ok, result = outcome(call, ["frame_idx", "obj_id"], FRAME_ARGS + (KeyError,))
        if ok:
            check_result(result, state, start)
            # object 1 may be left without any prompt, which tracking refuses (as officially): prompt it again
            predictor.addnewpoints(state, 1, 1, **CLICK)
    assert_usable(predictor, state, fresh)


sources = st.one_of(
    st.sampled_from(["", "/nonexistent/video.mp4", "/", None, 3, [], [None]]),
    st.lists(
        hnp.arrays(np.uint8, st.sampled_from([(H, W, 3), (1, 1, 3), (H, W), (H, W, 4), (2, H, W, 3)])), max_size=3
    ),
    numeric_arrays(st.sampled_from([(2, H, W, 3), (2, H, W), (0, H, W, 3), (2, 1, 1, 3)])),
)


@settings(max_examples=SCALE)
@given(source=sources)
def test_initstate_any_source(predictor, fresh, source):
    ok, state = outcome(lambda: predictor.initstate(source), ["video", "frame", "source"])
    if ok:
        assert state.num_frames >= 1
        _, ids, logits = predictor.addnewpointsorbox(state, 0, 1, box=[0, 0, state.video_width, state.video_height])
        assert logits.shape == (1, 1, state.video_height, state.video_width) and torch.isfinite(logits).all()
        state.close()
    assert_usable(predictor, predictor.initstate(FRAMES), fresh)
