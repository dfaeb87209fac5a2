"""SAMV2VideoPredictor against the official SAM2VideoPredictor (sam2 1.1.0) on the same random weights and clip.

Both run at image_size 256: at 1024 one propagated frame costs 5-30 s on 2 CPU cores (memory attention over
7 x 4096 memory tokens), far too slow for CI; ``SSSEG_SLOW_TESTS=1`` adds a check at 1024.

Why the calls are compared step by step. Tracking is chaotic with random weights: the official predictor stores
memories in bfloat16 (ours too, by default), so reduction-order noise of 1e-5 upstream moves memory values by one
bfloat16 step, and a correction click's memory is encoded from its *binarised* mask, which turns logit noise into
flipped pixels. Measured on the official predictor against itself, with a relative perturbation of 1e-6 of its
backbone features: SAM 2.1 tiny tracked logits move by up to 0.04 (35% of pixels beyond 1e-3) within 5 frames and
by up to 0.4 after a correction; SAM 2 tiny by up to 25 after the correction, even with float32 memories. No
implementation with another reduction order can stay within 1e-3 of it over a whole session. So:

* ``Lockstep`` runs every call on both predictors and, after each call and each tracked frame, checks that our
  state has the same structure (objects, prompts, conditioning / tracked frames, tracking directions) and values
  as the official one, then copies the official values into ours. Every output of the tutorial sequence, prompted
  or tracked, must then match within 1e-3 (IoU >= 0.999): each step is checked from the same starting point;
* the free-running comparison (each predictor on its own) covers the first propagation: 1e-3 on the prompted and
  first tracked frame, then the official code's own noise floor (1 thread against 2), measured in the test;
* a 1e-2 change of one memory-path weight moves tracked logits by far more than 1e-3 (the check has teeth).
"""

import os
import types
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2.samv2 import FrameOutput
from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from tests.conftest import build_official, make_test_image

IMAGE_SIZE = 256
NUM_FRAMES = 4
VARIANTS = ["sam2_hiera_tiny", "sam2.1_hiera_tiny"]
MASK = np.zeros((240, 320), dtype=bool)
MASK[60:160, 180:300] = True
CLICK = dict(points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32))
TWO_CLICKS = dict(points=np.array([[100, 120], [150, 80]], np.float32), labels=np.array([1, 1], np.int32))
NEGATIVE = dict(points=np.array([[60, 200]], np.float32), labels=np.array([0], np.int32))
BOX = np.array([40, 30, 200, 180], np.float32)

Step = Tuple[str, int, List, torch.Tensor]


def make_clip(num_frames: int = NUM_FRAMES, seed: int = 3) -> List[np.ndarray]:
    """Frames of a scene panning right by 5 px per frame (240 x 320 RGB)."""
    base = make_test_image(240, 320, seed=seed)
    return [np.roll(base, 5 * i, axis=1) for i in range(num_frames)]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("clip")
    for i, frame in enumerate(make_clip()):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg")
    return str(folder)


def clear_obj_non_cond_mem(self, inference_state, frame_idx, obj_idx):
    """The per-object clearing that sam2 1.1.0 calls but does not define (upstream semantics)."""
    reach = self.memory_temporal_stride_for_eval * self.num_maskmem
    outputs = inference_state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
    for t in range(frame_idx - reach, frame_idx + reach + 1):
        outputs.pop(t, None)


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, random_checkpoint):
    """(variant, ours, official) with the same weights at image_size 256 and default (postprocessing) options."""
    variant = request.param
    ckpt = random_checkpoint(variant)
    official = build_official(variant, ckpt, video=True, hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"])
    official._clear_obj_non_cond_mem_around_input = types.MethodType(clear_obj_non_cond_mem, official)
    cfg, _ = getconfig(variant)
    cfg["image_size"] = IMAGE_SIZE
    ours = SAMV2VideoPredictor(samv2_cfg=cfg, ckptpath=ckpt)
    return variant, ours, official


def configure(predictors, **options) -> None:
    """The same options on both predictors (the official keeps them as plain attributes too)."""
    values = dict(
        fill_hole_area=0,  # compared separately, with a CPU op for the official
        non_overlap_masks=False,
        clear_non_cond_mem_around_input=False,
        add_all_frames_to_correct_as_cond=True,
    )
    values.update(options)
    for predictor in predictors:
        for name, value in values.items():
            setattr(predictor, name, value)


def compare_masks(mine: torch.Tensor, theirs: torch.Tensor) -> Dict[str, float]:
    mine, theirs = mine.detach().float().cpu(), theirs.detach().float().cpu()
    assert mine.shape == theirs.shape
    diff = (mine - theirs).abs()
    union = ((mine > 0) | (theirs > 0)).sum().item()
    iou = 1.0 if union == 0 else ((mine > 0) & (theirs > 0)).sum().item() / union
    return dict(max=diff.max().item(), frac=(diff > 1e-3).float().mean().item(), iou=iou)


# ---------------------------------------------------------------------------------------------------------- lockstep
class Lockstep:
    """Drive ours and the official predictor through the same calls, checking and aligning the states as we go."""

    def __init__(self, ours: SAMV2VideoPredictor, official, clip: str, check_state: bool = True) -> None:
        self.ours, self.official = ours, official
        self.check_state = check_state
        self.theirs = official.init_state(clip)
        self.mine = ours.init_state(clip)
        self.rows: List[Dict] = []
        self.steps: List[Step] = []  # ours

    def call(self, name: str, method: str, *args, **kwargs) -> None:
        theirs = getattr(self.official, method)(self.theirs, *args, **kwargs)
        mine = getattr(self.ours, method)(self.mine, *args, **kwargs)
        self._record(name, mine, theirs)

    def propagate(self, name: str, **kwargs) -> None:
        mine_iter = self.ours.propagate_in_video(self.mine, **kwargs)
        for theirs in self.official.propagate_in_video(self.theirs, **kwargs):
            self._record(name, next(mine_iter), theirs)
        assert next(mine_iter, None) is None

    def remove(self, name: str, obj_id) -> None:
        ids_theirs, frames_theirs = self.official.remove_object(self.theirs, obj_id)
        ids_mine, frames_mine = self.ours.remove_object(self.mine, obj_id)
        assert list(ids_mine) == list(ids_theirs)
        assert sorted(f for f, _ in frames_mine) == sorted(f for f, _ in frames_theirs)
        theirs_by_frame = dict(frames_theirs)
        for frame_idx, masks in frames_mine:
            self._record(name, (frame_idx, ids_mine, masks), (frame_idx, ids_theirs, theirs_by_frame[frame_idx]))

    def _record(self, name, mine, theirs) -> None:
        assert mine[0] == theirs[0] and list(mine[1]) == list(theirs[1]), (name, mine[:2], theirs[:2])
        self.rows.append(dict(step=name, frame=mine[0], **compare_masks(mine[2], theirs[2])))
        self.steps.append((name, mine[0], list(mine[1]), mine[2].detach().float().cpu().clone()))
        self._align()

    def _align(self) -> None:
        """Check our state against the official one, then copy its values into ours."""
        theirs, mine = self.theirs, self.mine
        assert mine.obj_ids == list(theirs["obj_ids"])
        for obj_id in mine.obj_ids:
            idx = theirs["obj_id_to_idx"][obj_id]
            obj = mine.objects[obj_id]
            points = theirs["point_inputs_per_obj"][idx]
            assert list(obj.point_inputs) == list(points)
            for t, inputs in points.items():
                assert torch.equal(obj.point_inputs[t]["point_coords"], inputs["point_coords"])
                assert torch.equal(obj.point_inputs[t]["point_labels"], inputs["point_labels"])
            masks = theirs["mask_inputs_per_obj"][idx]
            assert list(obj.mask_inputs) == list(masks)
            assert all(torch.equal(obj.mask_inputs[t], m) for t, m in masks.items())
            tracked = {t: v["reverse"] for t, v in theirs["frames_tracked_per_obj"][idx].items()}
            assert obj.frames_tracked == tracked
            outputs, temp = theirs["output_dict_per_obj"][idx], theirs["temp_output_dict_per_obj"][idx]
            assert list(obj.cond_outputs) == list(outputs["cond_frame_outputs"])
            assert sorted(obj.non_cond_outputs) == sorted(outputs["non_cond_frame_outputs"])
            assert list(obj.temp_cond_outputs) == list(temp["cond_frame_outputs"])
            assert list(obj.temp_non_cond_outputs) == list(temp["non_cond_frame_outputs"])
            pairs = [(obj.cond_outputs[t], o) for t, o in outputs["cond_frame_outputs"].items()]
            pairs += [(obj.non_cond_outputs.get(t), o) for t, o in outputs["non_cond_frame_outputs"].items()]
            pairs += [(obj.temp_cond_outputs[t], o) for t, o in temp["cond_frame_outputs"].items()]
            pairs += [(obj.temp_non_cond_outputs[t], o) for t, o in temp["non_cond_frame_outputs"].items()]
            for out, official_out in pairs:
                align_output(out, official_out, self.check_state)


def align_output(out: FrameOutput, theirs: Dict, check: bool = True) -> None:
    """Our stored output of one object on one frame equals the official one up to noise; then take its values."""
    for name in ("pred_masks", "obj_ptr", "object_score_logits"):
        mine, other = getattr(out, name), theirs[name]
        assert mine.shape == other.shape and mine.dtype == other.dtype, name
        assert not check or (mine - other).abs().max().item() <= 1e-3, name
        setattr(out, name, other)
    mine, other = out.maskmem_features, theirs["maskmem_features"]
    assert (mine is None) == (other is None)
    if other is not None:
        assert mine.shape == other.shape and mine.dtype == other.dtype == torch.bfloat16
        # one bfloat16 step (2**-8 relative) where the float32 value sat next to a rounding boundary
        assert not check or torch.allclose(mine.float(), other.float(), rtol=1e-2, atol=1e-2)
        assert torch.allclose(out.maskmem_pos_enc[0], theirs["maskmem_pos_enc"][-1][0], atol=1e-5)
        out.maskmem_features = other


def tutorial(run: Lockstep) -> None:
    """The video tutorial's calls (click, second click, propagate, negative click on a later frame, propagate
    again), then a box, a box plus a click and a mask for two objects added after tracking on one frame, forward
    tracking from the middle, reverse tracking, clearing a frame's prompts, removing an object, a bounded run."""
    run.call("click", "add_new_points_or_box", 0, 1, **CLICK)
    run.call("second click", "add_new_points_or_box", 0, 1, **TWO_CLICKS)
    run.propagate("propagate")
    run.call("negative click", "add_new_points_or_box", 2, 1, **NEGATIVE)
    run.propagate("propagate again")
    run.call("box", "add_new_points_or_box", 2, 2, box=BOX)
    run.call("box and click", "add_new_points_or_box", 2, 2, points=np.array([[90, 100]], np.float32),
             labels=np.array([0], np.int32), box=BOX)  # fmt: skip
    run.call("mask", "add_new_mask", 2, 3, MASK)
    run.propagate("three objects", start_frame_idx=2)
    # (not from frame 3: with no later frame there, SAM 2.1 has no object pointer to read and the official
    # predictor fails on CPU with bfloat16 memories; ours does not, see test_videopredictor.py)
    run.propagate("reverse", start_frame_idx=2, reverse=True)
    run.call("clear prompts", "clear_all_prompts_in_frame", 2, 1)
    run.remove("remove object", 3)
    run.propagate("bounded", start_frame_idx=1, max_frame_num_to_track=2)


def assert_all_close(rows: List[Dict], max_frac: float = 0.0) -> None:
    """Logits within 1e-3 (except on at most ``max_frac`` of the pixels) and IoU >= 0.999 on every output."""
    worst = max(rows, key=lambda r: r["frac"] if max_frac else r["max"])
    if max_frac:
        assert worst["frac"] <= max_frac, f"most differing pixels: {worst}"
    else:
        assert worst["max"] <= 1e-3, f"largest logit difference: {worst}"
    assert min(r["iou"] for r in rows) >= 0.999


# ------------------------------------------------------------------------------------------------------------- tests
def test_tutorial_matches_official_step_by_step(pair, clip_dir):
    variant, ours, official = pair
    configure([ours, official])
    run = Lockstep(ours, official, clip_dir)
    tutorial(run)
    assert_all_close(run.rows)
    names = [r["step"] for r in run.rows]
    assert names.count("three objects") == 2 and names.count("reverse") == 3 and names.count("bounded") == 3
    # the masks are not trivial: tracked objects cover between 1% and 99% of the frame
    for name, _, _, masks in run.steps:
        if name in ("propagate", "three objects"):
            area = (masks > 0).float().mean((1, 2, 3))
            assert ((area > 0.01) & (area < 0.99)).all(), (name, area)
    # the correction on frame 2 changed it, and survives the next propagation (add_all_frames_to_correct_as_cond)
    tracked = next(m for name, f, _, m in run.steps if name == "propagate" and f == 2)
    correction = next(m for name, _, _, m in run.steps if name == "negative click")
    again = next(m for name, f, _, m in run.steps if name == "propagate again" and f == 2)
    assert compare_masks(correction, tracked)["max"] > 0.1
    assert compare_masks(correction, again)["max"] <= 1e-3


_FREE: Dict = {}


def free_running(variant: str, predictor, clip: str, key: str) -> List[Step]:
    """Clicks and one propagation, each predictor on its own (cached per variant for the official one)."""
    cache_key = (variant, key)
    if cache_key in _FREE:
        return _FREE[cache_key]
    state = predictor.init_state(clip)
    steps = []
    for name, kwargs in (("click", CLICK), ("second click", TWO_CLICKS)):
        frame_idx, ids, masks = predictor.add_new_points_or_box(state, 0, 1, **kwargs)
        steps.append((name, frame_idx, list(ids), masks.clone()))
    for frame_idx, ids, masks in predictor.propagate_in_video(state):
        steps.append(("propagate", frame_idx, list(ids), masks.clone()))
    if key.startswith("official"):
        _FREE[cache_key] = steps
    return steps


def free_rows(mine: List[Step], theirs: List[Step]) -> List[Dict]:
    assert [s[:3] for s in mine] == [s[:3] for s in theirs]
    return [dict(step=a[0], frame=a[1], **compare_masks(a[3], b[3])) for a, b in zip(mine, theirs)]


def test_first_propagation_matches_official_free_running(pair, clip_dir):
    """Each predictor on its own. The prompted frame and the first tracked frame agree within 1e-3. Later tracked
    frames drift apart chaotically (module docs), so they are held to the official code's own noise floor, measured
    here: the official predictor against itself with another thread count (1 against 2). Ours must be closer to the
    official than that on the second tracked frame (measured margin 27x for SAM 2.1, 240x for SAM 2), and within 3x
    of it on the third, where a 1e-4 difference has been amplified about a thousandfold (margin 2.3x and 80x)."""
    variant, ours, official = pair
    configure([ours, official])
    theirs = free_running(variant, official, clip_dir, "official")
    rows = free_rows(free_running(variant, ours, clip_dir, "ours"), theirs)
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2  # the same code with another thread count: another reduction order
    try:
        torch.set_num_threads(other)
        noise = free_rows(free_running(variant, official, clip_dir, f"official, {other} threads"), theirs)
    finally:
        torch.set_num_threads(threads)
    for row, floor in zip(rows, noise):
        if row["step"] != "propagate" or row["frame"] <= 1:
            assert row["max"] <= 1e-3, row
        elif row["frame"] == 2:
            assert row["max"] <= floor["max"], (row, floor)
        else:
            assert row["max"] <= 3 * floor["max"], (row, floor)
    assert noise[-1]["max"] > 1e-2  # the floor is real: the official differs from itself by far more than 1e-3


@pytest.mark.parametrize("parameter", ["maskmem_tpos_enc", "obj_ptr_proj.layers.2.weight"])
def test_perturbed_weight_is_caught(pair, clip_dir, parameter):
    """A 1e-2 change of one memory-path weight (the temporal encoding read by memory attention, or the projection
    that makes the object pointers) leaves the prompted frame alone, but on the first tracked frame (within 1e-4 of
    the official one unperturbed, see above) it moves the logits beyond even the issue's loose bound for tracked
    frames (0.1 anywhere, or more than 25% of pixels beyond 1e-3): the checks have teeth."""
    variant, ours, official = pair
    if variant != "sam2.1_hiera_tiny":
        pytest.skip("one variant shows it")
    configure([ours, official])
    tensor = dict(ours.model.named_parameters())[parameter]
    original = tensor.detach().clone()
    try:
        with torch.no_grad():
            tensor.add_(1e-2)
        mine = free_running(variant, ours, clip_dir, "ours")
    finally:
        with torch.no_grad():
            tensor.copy_(original)
    rows = free_rows(mine, free_running(variant, official, clip_dir, "official"))
    prompted = [r for r in rows if r["step"] != "propagate" or r["frame"] == 0]
    assert max(r["max"] for r in prompted) <= 1e-3, prompted
    first = next(r for r in rows if r["step"] == "propagate" and r["frame"] == 1)
    assert first["max"] > 0.1 or first["frac"] > 0.25, first


def test_correction_lost_with_the_official_default(pair, clip_dir):
    """add_all_frames_to_correct_as_cond=False on both sides (the official default): the correction of a tracked
    frame is recomputed without its click by the next propagation (sam2 issues #546, #719, #731). Our default
    (True) keeps it, see the tutorial test."""
    variant, ours, official = pair
    if variant != "sam2.1_hiera_tiny":
        pytest.skip("the option is the same code for both variants")
    configure([ours, official], add_all_frames_to_correct_as_cond=False)
    run = Lockstep(ours, official, clip_dir)
    run.call("click", "add_new_points_or_box", 0, 1, **CLICK)
    run.propagate("propagate")
    run.call("negative click", "add_new_points_or_box", 2, 1, **NEGATIVE)
    run.propagate("propagate again")
    assert_all_close(run.rows)
    tracked = next(m for name, f, _, m in run.steps if name == "propagate" and f == 2)
    corrected = next(m for name, _, _, m in run.steps if name == "negative click")
    later = next(m for name, f, _, m in run.steps if name == "propagate again" and f == 2)
    assert compare_masks(corrected, tracked)["max"] > 0.1
    assert compare_masks(corrected, later)["max"] > 0.1
    assert 2 not in run.mine.objects[1].cond_outputs


def test_postprocessing_options_match_official(pair, clip_dir, monkeypatch):
    """Hole filling (the official op replaced by our CPU connected components, since it skips filling without its
    CUDA extension), non-overlapping masks and clearing the memories around prompts, with two objects."""
    import sam2.utils.misc

    from ssseg.modules.models.segmentors.samv2.ops import get_connected_components

    variant, ours, official = pair
    if variant != "sam2.1_hiera_tiny":
        pytest.skip("the options are the same code for both variants")
    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", get_connected_components)
    configure([ours, official], fill_hole_area=64, non_overlap_masks=True, clear_non_cond_mem_around_input=True)
    run = Lockstep(ours, official, clip_dir)
    run.call("click 1", "add_new_points_or_box", 0, 1, **CLICK)
    run.call("click 2", "add_new_points_or_box", 0, 2, points=np.array([[250, 60]], np.float32),
             labels=np.array([1], np.int32))  # fmt: skip
    run.propagate("propagate", max_frame_num_to_track=2)
    run.call("negative click", "add_new_points_or_box", 1, 1, **NEGATIVE)
    run.propagate("propagate again")
    # non-overlap keeps one object per pixel: where two objects tie within the noise, the loser may differ (<= -10)
    assert_all_close(run.rows, max_frac=1e-3)
    for _, _, _, masks in run.steps:
        if masks.shape[0] == 2:
            assert not ((masks[0] > 0) & (masks[1] > 0)).any()
    # hole filling did fill something
    configure([ours], fill_hole_area=0, non_overlap_masks=True)
    _, _, unfilled = ours.add_new_points_or_box(ours.init_state(clip_dir), 0, 1, **CLICK)
    assert not torch.equal(unfilled, run.steps[0][3])


@pytest.mark.skipif(not os.environ.get("SSSEG_SLOW_TESTS"), reason="image_size 1024 on CPU is slow; SSSEG_SLOW_TESTS=1")
def test_full_resolution_matches_official(random_checkpoint, clip_dir):
    """At image_size 1024: the tutorial's two clicks and two tracked frames, step by step."""
    variant = "sam2.1_hiera_tiny"
    ckpt = random_checkpoint(variant)
    official = build_official(variant, ckpt, video=True)
    ours = SAMV2VideoPredictor(use_default_samv21_t=True, ckptpath=ckpt)
    configure([ours, official])
    run = Lockstep(ours, official, clip_dir)
    run.call("click", "add_new_points_or_box", 0, 1, **CLICK)
    run.call("second click", "add_new_points_or_box", 0, 1, **TWO_CLICKS)
    run.propagate("propagate", max_frame_num_to_track=2)
    print(run.rows)
    assert_all_close(run.rows)
