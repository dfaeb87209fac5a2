"""SAMV2VideoPredictor against the official SAM2VideoPredictor (sam2 1.1.0) on the same random weights and clip.

Both run at image_size 256: at 1024 one propagated frame costs 5-30 s on 2 CPU cores (memory attention over
7 x 4096 memory tokens), far too slow for CI; ``SSSEG_SLOW_TESTS=1`` adds a check at 1024.

Why two precisions. The official predictor stores memories in bfloat16 (ours too, by default). Reduction-order noise
of 1e-5 upstream then moves memory values by one bfloat16 step, and the random weights amplify that frame after
frame: a relative perturbation of 1e-6 of the official's own backbone features moves its propagated logits by up to
0.04 (35% of pixels beyond 1e-3) within 5 frames, and by up to 0.4 after a correction click, whose binarised mask
turns tiny logit changes into flipped memory pixels. So:

* with float32 memories on both sides (the official patched to keep float32), every output of the whole tutorial
  sequence must match within 1e-3 and IoU >= 0.999. This is the check that catches bugs: a perturbed memory-path
  weight moves later logits by far more (``test_perturbed_weight_is_caught``);
* with the default bfloat16 memories, prompted frames must match within 1e-3 and propagated frames within the
  official noise floor (IoU >= 0.999, logits within 0.1; the 25%-beyond-1e-3 rule on the first two tracked frames).
"""

import contextlib
import os
import types
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2.videopredictor import SAMV2VideoPredictor
from tests.conftest import build_official, make_test_image

IMAGE_SIZE = 256
NUM_FRAMES = 6
VARIANTS = ["sam2_hiera_tiny", "sam2.1_hiera_tiny"]
MASK = np.zeros((240, 320), dtype=bool)
MASK[60:160, 180:300] = True

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


@contextlib.contextmanager
def official_memory_dtype(dtype: torch.dtype):
    """Make the official predictor store memories in ``dtype`` instead of bfloat16.

    Its two casts read ``torch.bfloat16`` from the module's globals, so a proxy of ``torch`` there with that one
    attribute changed does it without touching its code.
    """
    import sam2.sam2_video_predictor as official_module

    if dtype == torch.bfloat16:
        yield
        return
    proxy = types.ModuleType("torch")
    proxy.__dict__.update(vars(torch))
    proxy.bfloat16 = dtype
    official_module.torch = proxy
    try:
        yield
    finally:
        official_module.torch = torch


def clear_obj_non_cond_mem(self, inference_state, frame_idx, obj_idx):
    """The per-object clearing that sam2 1.1.0 calls but does not define (upstream semantics)."""
    reach = self.memory_temporal_stride_for_eval * self.num_maskmem
    outputs = inference_state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
    for t in range(frame_idx - reach, frame_idx + reach + 1):
        outputs.pop(t, None)


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, random_checkpoint):
    """(variant, ours, official) with the same weights at image_size 256, default (postprocessing) options."""
    variant = request.param
    ckpt = random_checkpoint(variant)
    official = build_official(variant, ckpt, video=True, hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"])
    official.fill_hole_area = 0  # hole filling is compared separately (with a CPU connected-components op)
    official.add_all_frames_to_correct_as_cond = True
    official._clear_obj_non_cond_mem_around_input = types.MethodType(clear_obj_non_cond_mem, official)
    cfg, _ = getconfig(variant)
    cfg["image_size"] = IMAGE_SIZE
    ours = SAMV2VideoPredictor(samv2_cfg=cfg, ckptpath=ckpt, fill_hole_area=0)
    return variant, ours, official


def configure(predictor, memory_dtype: torch.dtype, **options) -> None:
    """Set the same options on either predictor (the official keeps them as plain attributes too)."""
    defaults = dict(
        fill_hole_area=0,
        non_overlap_masks=False,
        clear_non_cond_mem_around_input=False,
        add_all_frames_to_correct_as_cond=True,
    )
    defaults.update(options)
    for name, value in defaults.items():
        setattr(predictor, name, value)
    if isinstance(predictor, SAMV2VideoPredictor):
        predictor.maskmem_dtype = memory_dtype


def run(predictor, memory_dtype: torch.dtype, script) -> List[Step]:
    """Run ``script(predictor, record)`` with the official memory dtype patched when needed."""
    steps: List[Step] = []

    def record(name: str, result) -> None:
        frame_idx, obj_ids, masks = result
        steps.append((name, int(frame_idx), list(obj_ids), masks.detach().float().cpu().clone()))

    if isinstance(predictor, SAMV2VideoPredictor):
        script(predictor, record)
    else:
        with official_memory_dtype(memory_dtype):
            script(predictor, record)
    return steps


def tutorial(clip: str, short: bool = False):
    """The video tutorial's calls (clicks, second click, propagate, negative click on a later frame, propagate
    again), then a box, a box plus a click and a mask for two more objects added after tracking, forward and
    reverse tracking from the middle, clearing a frame's prompts, removing an object and a bounded propagation."""

    def script(p, record):
        state = p.init_state(clip)
        record(
            "click",
            p.add_new_points_or_box(
                state, 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32)
            ),
        )
        two = np.array([[100, 120], [150, 80]], dtype=np.float32)
        record("second click", p.add_new_points_or_box(state, 0, 1, points=two, labels=np.array([1, 1], np.int32)))
        for result in p.propagate_in_video(state):
            record("propagate", result)
        if short:
            return
        neg = np.array([[60, 200]], dtype=np.float32)
        record("negative click", p.add_new_points_or_box(state, 4, 1, points=neg, labels=np.array([0], np.int32)))
        for result in p.propagate_in_video(state):
            record("propagate again", result)
        box = np.array([40, 30, 200, 180], dtype=np.float32)
        record("box", p.add_new_points_or_box(state, 2, 2, box=box))
        click = np.array([[90, 100]], dtype=np.float32)
        record(
            "box and click", p.add_new_points_or_box(state, 2, 2, points=click, labels=np.array([0], np.int32), box=box)
        )
        record("mask", p.add_new_mask(state, 2, 3, MASK))
        for result in p.propagate_in_video(state, start_frame_idx=2):
            record("three objects", result)
        for result in p.propagate_in_video(state, start_frame_idx=3, reverse=True):
            record("reverse", result)
        record("clear prompts", p.clear_all_prompts_in_frame(state, 4, 1))
        obj_ids, updated = p.remove_object(state, 3)
        for frame_idx, masks in updated:
            record("remove object", (frame_idx, obj_ids, masks))
        for result in p.propagate_in_video(state, start_frame_idx=1, max_frame_num_to_track=2):
            record("bounded propagation", result)

    return script


def differences(ours: List[Step], official: List[Step]) -> List[Dict]:
    assert [(n, f, ids) for n, f, ids, _ in ours] == [(n, f, ids) for n, f, ids, _ in official]
    rows = []
    for (name, frame_idx, _, mine), (_, _, _, theirs) in zip(ours, official):
        assert mine.shape == theirs.shape == (mine.shape[0], 1, 240, 320)
        diff = (mine - theirs).abs()
        union = ((mine > 0) | (theirs > 0)).sum().item()
        iou = 1.0 if union == 0 else ((mine > 0) & (theirs > 0)).sum().item() / union
        rows.append(
            dict(step=name, frame=frame_idx, max=diff.max().item(), frac=(diff > 1e-3).float().mean().item(), iou=iou)
        )
    return rows


_CACHE: Dict = {}


def cached_run(variant: str, which: str, predictor, memory_dtype, script_name: str, script) -> List[Step]:
    key = (variant, which, memory_dtype, script_name)
    if key not in _CACHE:
        configure(predictor, memory_dtype)
        _CACHE[key] = run(predictor, memory_dtype, script)
    return _CACHE[key]


def test_tutorial_matches_official_with_float32_memories(pair, clip_dir):
    variant, ours, official = pair
    script = tutorial(clip_dir)
    theirs = cached_run(variant, "official", official, torch.float32, "tutorial", script)
    mine = cached_run(variant, "ours", ours, torch.float32, "tutorial", script)
    rows = differences(mine, theirs)
    worst = max(rows, key=lambda r: r["max"])
    assert worst["max"] <= 1e-3, f"{variant}: largest logit difference {worst}"
    assert min(r["iou"] for r in rows) >= 0.999
    # the masks are not trivial: objects cover between 1% and 99% of the frame on every tracked frame
    areas = [(m > 0).float().mean((1, 2, 3)) for name, _, _, m in mine if name == "propagate"]
    assert all(((a > 0.01) & (a < 0.99)).all() for a in areas)
    # the correction on frame 4 survives the next propagation (add_all_frames_to_correct_as_cond=True)
    correction = next(m for name, f, _, m in mine if name == "negative click")
    again = next(m for name, f, _, m in mine if name == "propagate again" and f == 4)
    assert torch.equal(correction, again)


def test_tutorial_matches_official_with_bfloat16_memories(pair, clip_dir):
    """The default: prompted frames within 1e-3, tracked frames within the official bfloat16 noise floor."""
    variant, ours, official = pair
    script = tutorial(clip_dir, short=True)
    theirs = cached_run(variant, "official", official, torch.bfloat16, "short", script)
    mine = cached_run(variant, "ours", ours, torch.bfloat16, "short", script)
    rows = differences(mine, theirs)
    for row in rows:
        if row["step"] != "propagate" or row["frame"] == 0:
            assert row["max"] <= 1e-3, row
        else:
            assert row["max"] <= 0.1 and row["iou"] >= 0.999, row
            if row["frame"] <= 2:
                assert row["frac"] <= 0.25, row


@pytest.mark.parametrize("parameter", ["maskmem_tpos_enc", "obj_ptr_proj.layers.2.weight"])
def test_perturbed_weight_is_caught(pair, clip_dir, parameter):
    """A 1e-2 change of one memory-path weight (temporal encoding, object pointers) breaks the tolerance on tracked
    frames, not on prompted ones."""
    variant, ours, official = pair
    theirs = cached_run(variant, "official", official, torch.float32, "tutorial", tutorial(clip_dir))
    tensor = dict(ours.model.named_parameters())[parameter]
    original = tensor.detach().clone()
    configure(ours, torch.float32)
    try:
        with torch.no_grad():
            tensor.add_(1e-2)
        mine = run(ours, torch.float32, tutorial(clip_dir, short=True))
    finally:
        with torch.no_grad():
            tensor.copy_(original)
    rows = differences(mine, theirs[: len(mine)])
    prompted = [r for r in rows if r["step"] != "propagate" or r["frame"] == 0]
    tracked = [r for r in rows if r["step"] == "propagate" and r["frame"] > 0]
    assert max(r["max"] for r in prompted) <= 1e-3
    assert max(r["max"] for r in tracked) > 0.1, f"{parameter} perturbation went unnoticed: {tracked}"


def correction_script(clip: str):
    def script(p, record):
        state = p.init_state(clip)
        record(
            "click",
            p.add_new_points_or_box(
                state, 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32)
            ),
        )
        for result in p.propagate_in_video(state):
            record("propagate", result)
        neg = np.array([[60, 200]], dtype=np.float32)
        record("negative click", p.add_new_points_or_box(state, 3, 1, points=neg, labels=np.array([0], np.int32)))
        for result in p.propagate_in_video(state):
            record("propagate again", result)

    return script


@pytest.mark.parametrize("add_all", [False, True])
def test_correction_on_tracked_frame(pair, clip_dir, add_all):
    """Same value of add_all_frames_to_correct_as_cond on both sides; with False the correction is lost on the next
    propagation (sam2 issues #546, #719, #731), with True (our default) it survives."""
    variant, ours, official = pair
    if variant != "sam2.1_hiera_tiny":
        pytest.skip("one variant is enough for this option")
    steps = {}
    for which, predictor in (("ours", ours), ("official", official)):
        configure(predictor, torch.float32, add_all_frames_to_correct_as_cond=add_all)
        steps[which] = run(predictor, torch.float32, correction_script(clip_dir))
    rows = differences(steps["ours"], steps["official"])
    assert max(r["max"] for r in rows) <= 1e-3 and min(r["iou"] for r in rows) >= 0.999
    for which in ("ours", "official"):
        corrected = next(m for name, f, _, m in steps[which] if name == "negative click")
        later = next(m for name, f, _, m in steps[which] if name == "propagate again" and f == 3)
        assert torch.equal(corrected, later) == add_all, which


def test_postprocessing_options_match_official(pair, clip_dir, monkeypatch):
    """Hole filling (official op replaced by our CPU connected components), non-overlapping masks and clearing the
    memories around prompts, all on, with two objects."""
    import sam2.utils.misc

    from ssseg.modules.models.segmentors.samv2.ops import get_connected_components

    variant, ours, official = pair
    if variant != "sam2.1_hiera_tiny":
        pytest.skip("one variant is enough for these options")
    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", get_connected_components)
    options = dict(fill_hole_area=64, non_overlap_masks=True, clear_non_cond_mem_around_input=True)

    def script(p, record):
        state = p.init_state(clip_dir)
        record(
            "click 1",
            p.add_new_points_or_box(
                state, 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32)
            ),
        )
        record(
            "click 2",
            p.add_new_points_or_box(
                state, 0, 2, points=np.array([[250, 60]], np.float32), labels=np.array([1], np.int32)
            ),
        )
        for result in p.propagate_in_video(state, max_frame_num_to_track=3):
            record("propagate", result)
        neg = np.array([[60, 200]], dtype=np.float32)
        record("negative click", p.add_new_points_or_box(state, 2, 1, points=neg, labels=np.array([0], np.int32)))
        for result in p.propagate_in_video(state):
            record("propagate again", result)

    steps = {}
    for which, predictor in (("ours", ours), ("official", official)):
        configure(predictor, torch.float32, **options)
        steps[which] = run(predictor, torch.float32, script)
    rows = differences(steps["ours"], steps["official"])
    assert max(r["max"] for r in rows) <= 1e-3 and min(r["iou"] for r in rows) >= 0.999
    # the options did something: holes were filled, and the two objects never overlap
    configure(ours, torch.float32, **dict(options, fill_hole_area=0))
    unfilled = run(
        ours,
        torch.float32,
        lambda p, rec: rec(
            "x",
            p.add_new_points_or_box(
                p.init_state(clip_dir), 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32)
            ),
        ),
    )
    assert not torch.equal(unfilled[0][3], steps["ours"][0][3][:1])
    for _, _, _, masks in steps["ours"]:
        if masks.shape[0] == 2:
            assert not ((masks[0] > 0) & (masks[1] > 0)).any()


@pytest.mark.skipif(not os.environ.get("SSSEG_SLOW_TESTS"), reason="image_size 1024 on CPU is slow; SSSEG_SLOW_TESTS=1")
def test_full_resolution_matches_official(random_checkpoint, clip_dir):
    """At image_size 1024: the tutorial's two clicks and two tracked frames."""
    variant = "sam2.1_hiera_tiny"
    ckpt = random_checkpoint(variant)
    official = build_official(variant, ckpt, video=True)
    configure(official, torch.float32)
    ours = SAMV2VideoPredictor(use_default_samv21_t=True, ckptpath=ckpt)
    configure(ours, torch.float32)

    def script(p, record):
        state = p.init_state(clip_dir)
        record(
            "click",
            p.add_new_points_or_box(
                state, 0, 1, points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32)
            ),
        )
        two = np.array([[100, 120], [150, 80]], dtype=np.float32)
        record("second click", p.add_new_points_or_box(state, 0, 1, points=two, labels=np.array([1, 1], np.int32)))
        for result in p.propagate_in_video(state, max_frame_num_to_track=2):
            record("propagate", result)

    rows = differences(run(ours, torch.float32, script), run(official, torch.float32, script))
    print(rows)
    assert max(r["max"] for r in rows) <= 1e-3 and min(r["iou"] for r in rows) >= 0.999
