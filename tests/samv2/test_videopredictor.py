"""SAMV2VideoPredictor without the oracle: input sources, bad input, released state, batching, API details.

A SAM 2.1 tiny network at image_size 128 with random weights keeps these fast.
"""

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2 import buildsamv2
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict
from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from ssseg.modules.models.segmentors.samv2.videostate import SpillFile, VideoInferenceState
from tests.conftest import make_test_image
from tests.samv2.test_video import write_video

HEIGHT, WIDTH = 120, 160
CLICK = dict(points=np.array([[60, 50]], np.float32), labels=np.array([1], np.int32))
BOX = [20, 10, 90, 80]


def small_model(**options) -> torch.nn.Module:
    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg.update(image_size=128, **options)
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    return model


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def short_memory_model():
    """Memory attention reads the memory and the pointer of 1 frame back: a 7-frame clip leaves frames behind."""
    return small_model(num_maskmem=2, max_obj_ptrs_in_encoder=2)


def make_frames(num_frames: int, seed: int = 5):
    base = make_test_image(HEIGHT, WIDTH, seed=seed)
    return [np.ascontiguousarray(np.roll(base, 3 * i, axis=1)) for i in range(num_frames)]


def collect(predictor, state, **kwargs):
    return [(f, list(ids), m.clone()) for f, ids, m in predictor.propagateinvideo(state, **kwargs)]


def assert_same(a, b) -> None:
    assert [(f, ids) for f, ids, _ in a] == [(f, ids) for f, ids, _ in b]
    for (f, _, x), (_, _, y) in zip(a, b):
        assert torch.equal(x, y), f"frame {f} differs by {(x - y).abs().max()}"


def session(predictor, source):
    """Two objects (a click, a box on a later frame), tracked forward: every output of the session."""
    state = predictor.initstate(source)
    outs = [predictor.addnewpoints(state, 0, 1, **CLICK)[2].clone()]
    outs.append(predictor.addnewpointsorbox(state, 2, 2, box=BOX)[2].clone())
    return outs, collect(predictor, state)


# ------------------------------------------------------------------------------------------------------ inputs
def test_input_sources_give_identical_results(model, tmp_path):
    """A JPEG folder, the same pixels as a list / one array of frames, and a lossless video file (FFV1 in avi and
    mkv, decoded by OpenCV without writing JPEGs) all give identical results."""
    predictor = SAMV2VideoPredictor(model=model)
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i, frame in enumerate(make_frames(3)):
        Image.fromarray(frame).save(folder / f"{i}.jpg")
    decoded = [np.asarray(Image.open(folder / f"{i}.jpg").convert("RGB")) for i in range(3)]
    sources = {"jpeg folder": str(folder), "list": decoded, "array": np.stack(decoded)}
    for ext in ("avi", "mkv"):  # FFV1 is lossless, so the decoded pixels equal the JPEG-decoded ones
        path = str(tmp_path / f"clip.{ext}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (WIDTH, HEIGHT))
        for frame in decoded:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
        sources[ext] = path
    reference = session(predictor, decoded)
    assert len(reference[1]) == 3
    for name, source in sources.items():
        prompts, tracked = session(predictor, source)
        assert all(torch.equal(a, b) for a, b in zip(prompts, reference[0])), name
        assert_same(tracked, reference[1])


def test_lossy_video_file_matches_its_decoded_frames(model, tmp_path):
    predictor = SAMV2VideoPredictor(model=model)
    path = str(tmp_path / "clip.mp4")
    decoded = write_video(path, make_frames(4), "mp4v")
    state = predictor.initstate(path)
    assert (state.num_frames, state.video_height, state.video_width) == (4, HEIGHT, WIDTH)
    a, b = session(predictor, path), session(predictor, decoded)
    assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))
    assert_same(a[1], b[1])


def test_frames_follow_the_numeric_index(model, tmp_path):
    frames = make_frames(12)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i}.jpg", quality=100)
    state = SAMV2VideoPredictor(model=model).initstate(str(tmp_path))
    decoded = [np.asarray(Image.open(tmp_path / f"{i}.jpg").convert("RGB")) for i in range(12)]
    assert state.num_frames == 12
    assert all(np.array_equal(state.frames.frame_rgb(i), decoded[i]) for i in range(12))


def test_unreadable_inputs_name_the_path(model, tmp_path):
    predictor = SAMV2VideoPredictor(model=model)
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        predictor.initstate(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        predictor.initstate(str(empty))
    fake = tmp_path / "notavideo.mp4"
    fake.write_text("not a video")
    with pytest.raises(ValueError, match="notavideo.mp4"):
        predictor.initstate(str(fake))
    with pytest.raises(ValueError):
        predictor.initstate([])
    # a frame that cannot be decoded fails when it is reached, naming the file
    broken = tmp_path / "broken"
    broken.mkdir()
    for i, frame in enumerate(make_frames(4)):
        Image.fromarray(frame).save(broken / f"{i}.jpg")
    (broken / "2.jpg").write_bytes(b"garbage")
    state = predictor.initstate(str(broken))
    predictor.addnewpoints(state, 0, 1, **CLICK)
    with pytest.raises(RuntimeError, match="2.jpg"):
        collect(predictor, state)


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_prompts_raise_clear_errors_and_leave_the_state_usable(model):
    predictor = SAMV2VideoPredictor(model=model)
    frames = make_frames(4)
    state = predictor.initstate(frames)
    points, labels = CLICK["points"], CLICK["labels"]
    bad_calls = [
        (IndexError, "out of range", lambda: predictor.addnewpoints(state, 4, 1, points, labels)),
        (IndexError, "out of range", lambda: predictor.addnewpoints(state, -1, 1, points, labels)),
        (TypeError, "frame_idx", lambda: predictor.addnewpoints(state, 1.5, 1, points, labels)),
        (ValueError, "labels is missing", lambda: predictor.addnewpoints(state, 0, 1, points=points)),
        (ValueError, "points is missing", lambda: predictor.addnewpoints(state, 0, 1, labels=labels)),
        (ValueError, "one label per point", lambda: predictor.addnewpoints(state, 0, 1, [[1, 2], [3, 4]], [1])),
        (ValueError, "N x 2", lambda: predictor.addnewpoints(state, 0, 1, [[1, 2, 3]], [1])),
        (ValueError, "at least one", lambda: predictor.addnewpointsorbox(state, 0, 1)),
        (ValueError, "1 .foreground", lambda: predictor.addnewpoints(state, 0, 1, points, [5])),
        (ValueError, "finite", lambda: predictor.addnewpoints(state, 0, 1, [[np.nan, 3]], [1])),
        (ValueError, "outside", lambda: predictor.addnewpoints(state, 0, 1, [[WIDTH + 5, 3]], [1])),
        (ValueError, "x1 >= x0", lambda: predictor.addnewpointsorbox(state, 0, 1, box=[50, 10, 20, 40])),
        (ValueError, "x1 >= x0", lambda: predictor.addnewpointsorbox(state, 0, 1, box=[10, 50, 20, 40])),
        (ValueError, "4 values", lambda: predictor.addnewpointsorbox(state, 0, 1, box=[10, 50, 20])),
        (ValueError, "clear_old_points", lambda: predictor.addnewpointsorbox(state, 0, 1, None, None, False, box=BOX)),
        (ValueError, "120 x 160", lambda: predictor.addnewmask(state, 0, 1, np.ones((120, 120), bool))),
        (ValueError, "2-D", lambda: predictor.addnewmask(state, 0, 1, np.ones((2, 120, 160), bool))),
        (IndexError, "out of range", lambda: predictor.addnewmask(state, 7, 1, np.ones((120, 160), bool))),
        (TypeError, "hashable", lambda: predictor.addnewpoints(state, 0, [1], points, labels)),
        (KeyError, "does not exist", lambda: predictor.removeobject(state, 1)),
        (KeyError, "does not exist", lambda: predictor.clearallpromptsinframe(state, 0, 1)),
        (RuntimeError, "no input", lambda: predictor.propagateinvideo(state)),
        (TypeError, "initstate", lambda: predictor.addnewpoints({"images": None}, 0, 1, points, labels)),
    ]  # fmt: skip
    for error, message, call in bad_calls:
        with pytest.raises(error, match=message):
            call()
        assert state.obj_ids == [], f"a failed call ({message}) left an object behind"

    def valid(st):
        return predictor.addnewpoints(st, 0, 1, points, labels)[2].clone(), collect(predictor, st)

    fresh = valid(predictor.initstate(frames))
    after_errors = valid(state)
    assert torch.equal(after_errors[0], fresh[0])
    assert_same(after_errors[1], fresh[1])
    more_bad_calls = [
        (IndexError, "start_frame_idx", lambda: predictor.propagateinvideo(state, start_frame_idx=4)),
        (ValueError, ">= 0", lambda: predictor.propagateinvideo(state, max_frame_num_to_track=-1)),
        (KeyError, "does not exist", lambda: predictor.removeobject(state, 2)),
        (ValueError, "together", lambda: predictor.addnewpoints(state, 3, 2, points=points)),
    ]  # fmt: skip
    for error, message, call in more_bad_calls:
        with pytest.raises(error, match=message):
            call()
    assert state.obj_ids == [1]
    assert_same(collect(predictor, state), fresh[1])
    assert predictor.removeobject(state, 2, strict=False) == ([1], [])


def test_mask_prompt_resolutions(model):
    """A mask at the video resolution, at another resolution with the same aspect ratio (resized), or at the model's
    input size is accepted; the resized one matches the original up to boundary pixels."""
    predictor = SAMV2VideoPredictor(model=model)
    state = predictor.initstate(make_frames(3))
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[30:90, 40:120] = True
    at_video_res = predictor.addnewmask(state, 0, 1, mask)[2]
    doubled = np.kron(mask, np.ones((2, 2), bool))
    at_double_res = predictor.addnewmask(state, 0, 1, doubled)[2]
    iou = ((at_video_res > 0) & (at_double_res > 0)).sum() / ((at_video_res > 0) | (at_double_res > 0)).sum()
    assert iou > 0.97
    square = torch.zeros(128, 128, dtype=torch.bool)
    square[32:96, 32:96] = True
    assert predictor.addnewmask(state, 1, 1, square)[2].shape == (1, 1, HEIGHT, WIDTH)


# ------------------------------------------------------------------------------------------------------ memory
def test_released_state_gives_identical_results(short_memory_model):
    """Outputs beyond the reach of memory attention go to the spill file and come back exactly: a whole session
    (objects added after tracking, a correction on an old frame, propagation starting in the middle, reverse
    tracking, clearing and removing) is identical with and without the release, and resident state stays bounded."""
    frames = make_frames(7)
    results = {}
    for release in (True, False):
        predictor = SAMV2VideoPredictor(model=short_memory_model, release_old_state=release)
        state = predictor.initstate(frames)
        out = [predictor.addnewpoints(state, 0, 1, **CLICK)[2]]
        out += [m for _, _, m in collect(predictor, state)]
        if release:
            radius = state.release_radius
            assert radius == 3  # the memory and pointer of the previous frame (2 frames), plus the next frame
            assert state.objects[1].non_cond_outputs.num_resident <= radius + 1
            assert state.spilled_bytes() > 0
        out.append(predictor.addnewpointsorbox(state, 5, 2, box=BOX)[2])
        # a correction on frame 2, gone from memory: its logits and its neighbour's memory come back from the file
        out.append(predictor.addnewpoints(state, 2, 1, [[60, 50], [30, 100]], [1, 0])[2])
        out += [m for _, _, m in collect(predictor, state)]
        # starting in the middle reads the memories of the frames before the start from the file
        out += [m for _, _, m in collect(predictor, state, start_frame_idx=3, max_frame_num_to_track=1)]
        out += [m for _, _, m in collect(predictor, state, start_frame_idx=4, max_frame_num_to_track=1, reverse=True)]
        out.append(predictor.clearallpromptsinframe(state, 2, 1)[2])
        out += [m for _, m in predictor.removeobject(state, 1)[1]]
        out += [m for _, _, m in collect(predictor, state, start_frame_idx=5, max_frame_num_to_track=1)]
        results[release] = out
        if release:
            obj = state.objects[2]
            assert obj.non_cond_outputs.num_resident <= 2 * state.release_radius + 1
            assert len(obj.non_cond_outputs) > obj.non_cond_outputs.num_resident
    assert len(results[True]) == len(results[False])
    for a, b in zip(results[True], results[False]):
        assert torch.equal(a, b)


def test_batched_objects_equal_one_by_one(short_memory_model):
    """Objects with the same memory layout are tracked as one batch; results equal one-by-one tracking up to
    reduction-order noise (float32 memories, so that no bfloat16 rounding amplifies it)."""
    frames = make_frames(4)
    results = []
    for batch in (True, False):
        predictor = SAMV2VideoPredictor(model=short_memory_model, batch_objects=batch, maskmem_dtype=torch.float32)
        state = predictor.initstate(frames)
        predictor.addnewpoints(state, 0, 1, **CLICK)
        predictor.addnewpoints(state, 0, 2, [[120, 30]], [1])
        predictor.addnewpointsorbox(state, 0, 3, box=[10, 60, 70, 110])
        predictor.addnewpoints(state, 2, 4, [[30, 30]], [1])  # another layout: tracked before its prompt
        results.append(collect(predictor, state))
    assert [(f, ids) for f, ids, _ in results[0]] == [(f, ids) for f, ids, _ in results[1]]
    for (_, _, a), (_, _, b) in zip(*results):
        assert (a - b).abs().max() <= 1e-3


def test_spill_file_round_trip(tmp_path):
    spill = SpillFile(str(tmp_path))
    tensors = [torch.randn(2, 3, 5).to(torch.bfloat16), torch.randn(7), torch.arange(6, dtype=torch.int32)]
    slots = [spill.write(t) for t in tensors]
    assert spill.bytes_in_use == sum(t.numel() * t.element_size() for t in tensors)
    for t, slot in zip(tensors, slots):
        back = spill.read(slot)
        assert back.dtype == t.dtype and torch.equal(back, t)
    spill.free(slots[1])
    reused = spill.write(torch.ones(7))
    assert reused.offset == slots[1].offset and torch.equal(spill.read(reused), torch.ones(7))
    assert spill.file_size == sum(s.nbytes for s in slots)
    spill.close()
    assert os.listdir(tmp_path) == []  # an anonymous file: nothing left behind


# ------------------------------------------------------------------------------------------------------ api
def test_tutorial_calls_and_tracking_directions(model):
    """The tutorial's names, resetstate, reverse tracking, max_frame_num_to_track and the official aliases."""
    predictor = SAMV2VideoPredictor(model=model)
    state = predictor.initstate(make_frames(5))
    assert isinstance(state, VideoInferenceState)
    predictor.resetstate(state)
    _, ids, logits = predictor.addnewpoints(inference_state=state, frame_idx=2, obj_id=1, **CLICK)
    assert ids == [1] and logits.shape == (1, 1, HEIGHT, WIDTH)
    assert [f for f, _, _ in collect(predictor, state)] == [2, 3, 4]
    assert [f for f, _, _ in collect(predictor, state, reverse=True)] == [2, 1, 0]
    assert [f for f, _, _ in collect(predictor, state, start_frame_idx=4, max_frame_num_to_track=1, reverse=True)] == [
        4,
        3,
    ]
    assert [f for f, _, _ in collect(predictor, state, start_frame_idx=0, max_frame_num_to_track=0)] == [0]
    assert collect(predictor, state, start_frame_idx=0, reverse=True) == []
    predictor.resetstate(state)
    assert state.obj_ids == [] and state.spilled_bytes() == 0
    for official, ours in [
        ("init_state", "initstate"),
        ("reset_state", "resetstate"),
        ("add_new_points_or_box", "addnewpointsorbox"),
        ("add_new_points", "addnewpoints"),
        ("add_new_mask", "addnewmask"),
        ("propagate_in_video", "propagateinvideo"),
        ("remove_object", "removeobject"),
        ("clear_all_prompts_in_frame", "clearallpromptsinframe"),
    ]:
        assert getattr(SAMV2VideoPredictor, official) is getattr(SAMV2VideoPredictor, ours)


def test_object_tracked_before_its_first_prompt(model):
    """SAM 2.1 reads no object pointer on frames before an object's first prompt; its bfloat16 memories must still
    reach memory attention as float32 (the official predictor fails here on CPU)."""
    predictor = SAMV2VideoPredictor(model=model)
    state = predictor.initstate(make_frames(4))
    predictor.addnewpoints(state, 0, 1, **CLICK)
    collect(predictor, state, max_frame_num_to_track=1)
    predictor.addnewpoints(state, 2, 2, [[120, 30]], [1])
    tracked = collect(predictor, state)
    assert [f for f, _, _ in tracked] == [0, 1, 2, 3]
    assert all(ids == [1, 2] and m.shape == (2, 1, HEIGHT, WIDTH) for _, ids, m in tracked)


def test_offloading_gives_identical_results(model):
    frames = make_frames(3)
    predictor = SAMV2VideoPredictor(model=model)
    results = []
    for offload in (False, True):
        state = predictor.initstate(frames, offload_video_to_cpu=offload, offload_state_to_cpu=offload)
        predictor.addnewpoints(state, 0, 1, **CLICK)
        results.append(collect(predictor, state))
    assert_same(results[0], results[1])
