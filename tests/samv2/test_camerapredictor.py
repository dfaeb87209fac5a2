"""SAMV2CameraPredictor: a live stream equals the video predictor driven the same way offline, bit for bit, and
its state stays bounded; bad input leaves the stream as it was.

SAM 2 tiny and SAM 2.1 tiny at image_size 128 with the deterministic random weights, on frames made in code. The
offline driver propagates up to each prompt's frame (``max_frame_num_to_track``), adds the prompts there and goes
on from the next frame, as the stream does. The recordings have 16 frames: SAM 2 normalises the temporal position
of object pointers by ``min(num_frames, max_obj_ptrs_in_encoder = 16) - 1``, and an endless stream uses 16.
Comparisons use ``torch.equal`` (fp32 on CPU, identical kernels and batches on both sides).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor, SAMV2VideoPredictor, buildsamv2
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict
from tests.conftest import make_test_image

HEIGHT, WIDTH = 72, 96
NUM_FRAMES = 16
VARIANTS = ("sam2_hiera_tiny", "sam2.1_hiera_tiny")


def tiny_model(variant: str):
    cfg, _ = getconfig(variant)
    cfg["image_size"] = 128
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    return model


@pytest.fixture(scope="module", params=VARIANTS)
def model(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def model21():
    return tiny_model("sam2.1_hiera_tiny")


def make_frames(num_frames: int = NUM_FRAMES, seed: int = 3):
    base = make_test_image(HEIGHT, WIDTH, seed=seed)
    return [np.ascontiguousarray(np.roll(base, 2 * i, axis=1)) for i in range(num_frames)]


FRAMES = make_frames()


def disk(cy: int, cx: int, r: int) -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r


# ------------------------------------------------------------------------------------------------------ drivers
# an event: ("prompt", obj_id, kwargs of addnewprompt), ("mask", obj_id, mask) or ("remove", obj_id)
def run_stream(predictor, frames, schedule):
    """Feed the frames one by one; returns ``{frame: (ids, logits)}`` of track and the prompt results in order."""
    tracked, prompted = {}, []
    predictor.loadfirstframe(frames[0])
    for f, frame in enumerate(frames):
        if f > 0:
            ids, logits = predictor.track(frame)
            tracked[f] = (list(ids), logits.clone())
        for event in schedule.get(f, []):
            prompted.append((f, *apply_stream(predictor, f, event)))
    return tracked, prompted


def apply_stream(predictor, f, event):
    kind, obj_id, arg = (*event, None)[:3]
    if kind == "prompt":
        _, ids, logits = predictor.addnewprompt(f, obj_id, **arg)
    elif kind == "mask":
        _, ids, logits = predictor.addnewmask(f, obj_id, arg)
    else:
        return predictor.removeobject(obj_id), None
    return list(ids), logits.clone()


def run_offline(predictor, frames, schedule, num_streamed):
    """The video predictor on the whole recording, driven as the stream: propagate up to each event frame, apply
    the events there, go on from the next frame."""
    state = predictor.initstate(frames)
    tracked, prompted = {}, []
    last = -1  # the last frame processed
    for e in sorted(schedule) + [num_streamed]:
        end = min(e, num_streamed - 1)
        if state.num_objects and end > last:
            for f, ids, logits in predictor.propagateinvideo(
                state, start_frame_idx=last + 1, max_frame_num_to_track=end - last - 1
            ):
                tracked[f] = (list(ids), logits.clone())
        if e == num_streamed:
            break
        for kind, obj_id, *arg in schedule[e]:
            if kind == "prompt":
                _, ids, logits = predictor.addnewpointsorbox(state, e, obj_id, **arg[0])
            elif kind == "mask":
                _, ids, logits = predictor.addnewmask(state, e, obj_id, arg[0])
            else:
                ids, logits = predictor.removeobject(state, obj_id, need_output=False)[0], None
            prompted.append((e, list(ids), None if logits is None else logits.clone()))
        last = e
    state.close()
    return tracked, prompted


def assert_stream_equals_offline(stream, offline, num_streamed):
    (s_tracked, s_prompted), (o_tracked, o_prompted) = stream, offline
    assert len(s_prompted) == len(o_prompted), "different number of prompt results"
    for (f, s_ids, s_logits), (g, o_ids, o_logits) in zip(s_prompted, o_prompted):
        assert (f, s_ids) == (g, o_ids), f"prompt result on frame {f}: stream ids {s_ids}, offline {g} {o_ids}"
        if s_logits is not None:
            assert torch.equal(s_logits, o_logits), (
                f"prompt on frame {f}: differs by {(s_logits - o_logits).abs().max()}"
            )
    compared = 0
    for f in range(1, num_streamed):
        s_ids, s_logits = s_tracked[f]
        o_ids, o_logits = o_tracked.get(f, ([], None))
        assert s_ids == o_ids, f"frame {f}: stream tracks {s_ids}, offline {o_ids}"
        if not s_ids:
            assert s_logits.shape == (0, 1, HEIGHT, WIDTH), f"frame {f}: no objects but logits {s_logits.shape}"
            continue
        assert s_logits.shape == (len(s_ids), 1, HEIGHT, WIDTH), f"frame {f}: logits of shape {s_logits.shape}"
        for k, obj_id in enumerate(s_ids):
            a, b = s_logits[k], o_logits[k]
            assert torch.equal(a, b), f"frame {f}, object {obj_id}: stream differs by {(a - b).abs().max():.3g}"
            compared += 1
    return compared


def compare(model, schedule, frames=FRAMES, **options):
    predictor = SAMV2CameraPredictor(model=model, **options)
    stream = run_stream(predictor, frames, schedule)
    offline = run_offline(SAMV2VideoPredictor(model=model), frames, schedule, len(frames))
    return stream, assert_stream_equals_offline(stream, offline, len(frames))


CLICK = {"points": [[30, 36]], "labels": [1]}
SCHEDULES = {
    "one object": {0: [("prompt", 1, CLICK)]},
    "second object mid-stream": {
        0: [("prompt", 1, CLICK)],
        6: [("prompt", 2, {"points": [[70, 20], [75, 25]], "labels": [1, 1]})],
    },
    "correction click mid-stream": {
        0: [("prompt", 1, CLICK), ("prompt", 2, {"points": [[70, 50]], "labels": [1]})],
        5: [("prompt", 1, {"points": [[30, 36], [40, 20]], "labels": [1, 0]})],
        9: [
            (
                "prompt",
                1,
                {"points": [[55, 40]], "labels": [1]},
            ),
            ("prompt", 1, {"points": [[20, 30]], "labels": [0], "clear_old_points": False}),
        ],
    },
    "box": {
        0: [("prompt", 1, {"box": [10, 15, 50, 60]})],
        4: [("prompt", 2, {"box": [55, 5, 90, 40], "points": [[70, 20]], "labels": [1]})],
    },
    "mask": {0: [("mask", 1, disk(36, 30, 14))], 7: [("mask", 2, disk(20, 75, 10))]},
    "remove mid-stream": {
        0: [("prompt", 1, CLICK), ("prompt", 2, {"box": [55, 5, 90, 40]})],
        5: [("remove", 1)],
        8: [("remove", 2)],  # no object left: the stream goes on
        11: [("prompt", 3, CLICK)],
    },
}


# ------------------------------------------------------------------------------------------------------ equality
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_stream_equals_offline(model, name):
    (tracked, _), compared = compare(model, SCHEDULES[name])
    assert compared >= NUM_FRAMES - 6, f"only {compared} (frame, object) pairs were compared"
    # not a degenerate comparison: the masks are non-empty and change over time
    first = next(f for f in sorted(tracked) if tracked[f][0])
    areas = {float((tracked[f][1][0] > 0).float().mean()) for f in sorted(tracked) if tracked[f][0]}
    assert 0 < min(areas) and max(areas) < 1 and len(areas) > 3, f"degenerate masks from frame {first}: {areas}"


def test_max_cond_frames_in_attn_equals_offline_and_drops_old_prompts(model):
    """Prompts on 4 frames with 2 objects and max_cond_frames_in_attn=2: equal to offline with the same model option
    over 24 frames, and the prompted frames that can no longer be read leave the state."""
    frames = make_frames(24, seed=4)
    schedule = {
        0: [("prompt", 1, CLICK)],
        1: [("prompt", 2, {"points": [[70, 50]], "labels": [1]})],
        3: [("prompt", 1, {"points": [[32, 36]], "labels": [1]}), ("prompt", 2, {"box": [50, 30, 90, 70]})],
        6: [("prompt", 1, {"points": [[34, 36]], "labels": [1]}), ("prompt", 2, {"points": [[72, 50]], "labels": [1]})],
        9: [("prompt", 1, {"points": [[36, 36]], "labels": [1]})],
    }
    saved = model.max_cond_frames_in_attn
    model.max_cond_frames_in_attn = 2  # the offline side reads the option from the model
    try:
        predictor = SAMV2CameraPredictor(model=model, max_cond_frames_in_attn=2)
        stream = run_stream(predictor, frames, schedule)
        offline = run_offline(SAMV2VideoPredictor(model=model), frames, schedule, len(frames))
    finally:
        model.max_cond_frames_in_attn = saved
    assert model.max_cond_frames_in_attn == saved
    assert_stream_equals_offline(stream, offline, len(frames))
    state = predictor.state
    held = {obj_id: sorted(obj.cond_outputs) for obj_id, obj in state.objects.items()}
    assert held == {1: [6, 9], 2: [3, 6]}, f"prompted frames held after frame 23: {held}"
    # with all prompted frames in attention (the model's default), the results differ: the option is exercised
    other = run_stream(SAMV2CameraPredictor(model=model), frames, schedule)[0]
    assert not torch.equal(other[23][1], stream[0][23][1]), "max_cond_frames_in_attn=2 changed nothing"


def test_comparison_is_exact_and_sensitive(model21):
    """A 12-frame stream equals offline on the 16-frame recording stopped after 12 frames. The harness sees the
    smallest differences: offline on a 12-frame video (pointer positions normalised by 11 instead of 15) and a stream
    with float32 instead of bfloat16 memories both differ."""
    schedule = {0: [("prompt", 1, CLICK)], 5: [("prompt", 2, {"box": [55, 5, 90, 40]})]}
    frames = FRAMES[:12]
    stream = run_stream(SAMV2CameraPredictor(model=model21), frames, schedule)
    offline = run_offline(SAMV2VideoPredictor(model=model21), FRAMES, schedule, 12)
    assert assert_stream_equals_offline(stream, offline, 12) == 11 + 6
    short = run_offline(SAMV2VideoPredictor(model=model21), frames, schedule, 12)
    with pytest.raises(AssertionError, match="differs by"):
        assert_stream_equals_offline(stream, short, 12)
    stream32 = run_stream(SAMV2CameraPredictor(model=model21, maskmem_dtype=torch.float32), frames, schedule)
    with pytest.raises(AssertionError, match="differs by"):
        assert_stream_equals_offline(stream32, offline, 12)


# ------------------------------------------------------------------------------------------------------ memory
def state_size(predictor):
    """Counts of what the stream holds: per object memories, pointers, masks, prompts; frames; features."""
    state = predictor.state
    counts = {"frames": len(predictor._reader._frames), "cached_frames": state.frames.cache_info()["size"]}
    counts["features"] = 0 if state.cached_features is None else 1
    for obj_id, obj in state.objects.items():
        outs = [obj.non_cond_outputs.get(t) for t in obj.non_cond_outputs] + list(obj.cond_outputs.values())
        counts[obj_id] = {
            "pointers": sum(o.obj_ptr is not None for o in outs),
            "memories": sum(o.maskmem_features is not None for o in outs),
            "masks": sum(o.pred_masks.numel() > 0 for o in outs),
            "cond": len(obj.cond_outputs),
            "inputs": len(obj.point_inputs) + len(obj.mask_inputs),
            "tracked": len(obj.frames_tracked),
            "bytes": sum(
                t.numel() * t.element_size()
                for o in outs
                for t in (o.pred_masks, o.obj_ptr, o.maskmem_features)
                if t is not None
            ),
        }
    return counts


def test_state_stays_bounded(model21):
    """After N frames the held memories, pointers, masks, frames and bytes do not depend on N."""
    predictor = SAMV2CameraPredictor(model=model21, max_cond_frames_in_attn=2)
    frames = make_frames(8, seed=6)
    predictor.loadfirstframe(frames[0])
    predictor.addnewprompt(0, 1, **CLICK)
    sizes = {}
    for f in range(1, 61):
        predictor.track(frames[f % len(frames)])
        if f % 10 == 5:  # a correction for object 1 and a new prompt for object 2 every 10 frames
            predictor.addnewprompt(f, 1, points=[[30 + f % 7, 36]], labels=[1])
            predictor.addnewprompt(f, 2, box=[50, 10, 90, 50])
        if f in (40, 60):
            sizes[f] = state_size(predictor)
    assert sizes[40] == sizes[60], f"state grows: {sizes[40]} after 40 frames, {sizes[60]} after 60"
    model = model21
    for obj_id in (1, 2):
        held = sizes[60][obj_id]
        assert held["memories"] <= model.num_maskmem + 2, f"object {obj_id} holds {held['memories']} memories"
        assert held["pointers"] <= model.max_obj_ptrs_in_encoder + 2, f"object {obj_id} holds {held} pointers"
        assert held["masks"] <= 1 and held["cond"] <= 2 and held["inputs"] <= 1, f"object {obj_id}: {held}"
    assert sizes[60]["frames"] <= 2 and sizes[60]["cached_frames"] <= 1 and sizes[60]["features"] == 1
    assert predictor.state.spill is None, "the stream must drop, not spill"


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_input_leaves_the_stream_as_it_was(model21):
    """Every bad call raises a clear error; the stream then gives exactly the results of a stream without them."""
    frames = make_frames(6, seed=7)
    clean = SAMV2CameraPredictor(model=model21)
    expected = run_stream(clean, frames, {0: [("prompt", 1, CLICK)], 3: [("prompt", 2, {"box": [50, 10, 90, 50]})]})

    predictor = SAMV2CameraPredictor(model=model21)
    assert predictor.frame_idx is None
    for call in (lambda: predictor.track(frames[0]), lambda: predictor.addnewprompt(0, 1, **CLICK)):
        with pytest.raises(RuntimeError, match="loadfirstframe"):
            call()
    with pytest.raises(RuntimeError, match="loadfirstframe"):
        predictor.removeobject(1)
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor.loadfirstframe(frames[0][..., 0])
    predictor.loadfirstframe(frames[0])
    assert predictor.frame_idx == 0

    def bad_frames():
        yield ValueError, "same size", frames[1][:-8]
        yield TypeError, "uint8", frames[1].astype(np.float32)
        yield ValueError, "H x W x 3", frames[1][..., :2]
        yield ValueError, "H x W x 3", np.dstack([frames[1], frames[1][..., :1]])
        yield ValueError, "RGB", Image.fromarray(frames[1]).convert("L")
        yield TypeError, "numpy array or PIL", frames[1].tolist()

    def bad_prompts(f):
        yield ValueError, f"latest frame of the stream, frame {f}", dict(frame_idx=f - 1, obj_id=1, **CLICK)
        yield ValueError, f"frame {f}", dict(frame_idx=f + 1, obj_id=1, **CLICK)
        yield ValueError, "at least one of points", dict(frame_idx=f, obj_id=5)
        yield ValueError, "together", dict(frame_idx=f, obj_id=5, points=[[1, 2]])
        yield TypeError, "obj_id", dict(frame_idx=f, obj_id=None, **CLICK)
        yield ValueError, "outside", dict(frame_idx=f, obj_id=5, points=[[500, 2]], labels=[1])
        yield ValueError, "box=", dict(frame_idx=f, obj_id=5, box=[1, 2, 3, 4], bbox=[1, 2, 3, 4])

    def misuse(f):
        for error, match, kwargs in bad_prompts(f):
            with pytest.raises(error, match=match):
                predictor.addnewprompt(**kwargs)
        with pytest.raises(ValueError, match="mask has shape"):
            predictor.addnewmask(f, 6, np.ones((10, 50), bool))
        with pytest.raises(KeyError, match="does not exist"):
            predictor.removeobject(99)
        assert 5 not in predictor.obj_ids and 6 not in predictor.obj_ids, "a failed prompt left an object behind"

    got_prompted = []
    for f, frame in enumerate(frames):
        if f > 0:
            for error, match, bad in bad_frames():
                with pytest.raises(error, match=match):
                    predictor.track(bad)
            assert predictor.frame_idx == f - 1, "a bad frame advanced the stream"
            ids, logits = predictor.track(frame)
            e_ids, e_logits = expected[0][f]
            assert ids == e_ids and torch.equal(logits, e_logits), f"frame {f} differs after bad calls"
        misuse(f)
        if f == 0:
            got_prompted.append(predictor.addnewprompt(0, 1, **CLICK)[2])
        if f == 3:
            got_prompted.append(predictor.add_new_prompt(3, 2, bbox=[[50, 10], [90, 50]])[2])  # the fork's style
    for (_, _, want), got in zip(expected[1], got_prompted):
        assert torch.equal(want, got), "a prompt result differs after bad calls"


@pytest.mark.parametrize("value", [0, 1, -2, 2.5, "2", True], ids=["zero", "one", "minus-two", "float", "str", "bool"])
def test_bad_max_cond_frames_in_attn(model21, value):
    with pytest.raises(ValueError, match="max_cond_frames_in_attn must be -1"):
        SAMV2CameraPredictor(model=model21, max_cond_frames_in_attn=value)


# ------------------------------------------------------------------------------------------------------ api
def test_fork_api_pil_frames_reset_and_restart(model21):
    """The real-time fork's calls run unchanged; PIL frames equal arrays; resetstate keeps the stream going and
    loadfirstframe starts a new one."""
    frames = make_frames(4, seed=8)
    reference = SAMV2CameraPredictor(model=model21)
    reference.loadfirstframe(frames[0])
    want = [reference.addnewprompt(0, 1, **CLICK)[2]] + [reference.track(f)[1] for f in frames[1:]]

    predictor = SAMV2CameraPredictor(model=model21)
    predictor.load_first_frame(Image.fromarray(frames[0]))
    _, ids, logits = predictor.add_new_points(0, 1, [[30, 36]], [1])
    got = [logits] + [predictor.track(Image.fromarray(f))[1] for f in frames[1:]]
    assert ids == [1] and all(torch.equal(a, b) for a, b in zip(want, got)), "PIL frames / aliases differ"
    assert predictor.frame_idx == 3

    predictor.add_new_mask(3, 2, disk(20, 75, 10))
    assert predictor.remove_object(1) == [2]
    predictor.reset_state()
    assert predictor.obj_ids == [] and predictor.frame_idx == 3
    ids, logits = predictor.track(frames[0])
    assert ids == [] and logits.shape == (0, 1, HEIGHT, WIDTH) and predictor.frame_idx == 4
    predictor.add_new_prompt(frame_idx=4, obj_id=7, points=[[30, 36]], labels=[1])
    ids, logits = predictor.track(frames[1])
    assert ids == [7] and logits.shape == (1, 1, HEIGHT, WIDTH)

    predictor.loadfirstframe(frames[0][:40])  # a new stream may have another size
    assert predictor.frame_idx == 0 and predictor.obj_ids == []
    _, ids, logits = predictor.addnewprompt(0, 1, **CLICK)
    assert logits.shape == (1, 1, 40, WIDTH)
