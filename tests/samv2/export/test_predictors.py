"""The predictors on ONNX Runtime (``onnxdir=``) against the same predictors on the PyTorch model (fp32, CPU).

Tolerances of the issue: embedding 1e-4, logits 1e-3, scores 1e-4, masks IoU >= 0.999. Video runs in lockstep, as
the oracle video tests do (tests/samv2/test_videopredictor_oracle.py explains why: random-weight tracking is
chaotic, a binarised correction click turns 1e-4 noise into flipped pixels): every call runs on both predictors
from the same state, then the PyTorch outputs are copied into the ONNX Runtime state. Memories stay float32 on
both sides, so tracked frames are held to 1e-3 like prompted ones.
"""

import dataclasses
import os

import numpy as np
import pytest
import torch

from ssseg.configs.samv2 import getconfig
from ssseg.modules.models.segmentors.samv2 import (
    SAMV2AutomaticMaskGenerator,
    SAMV2ImagePredictor,
    SAMV2VideoPredictor,
    buildsamv2,
)
from ssseg.samv2.cli import main
from tests.conftest import make_test_image
from tests.samv2.test_imagepredictor import CASES


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def image_pair(onnx_dir, small_model, test_image):
    ours = SAMV2ImagePredictor(onnxdir=onnx_dir[0])
    torch_pred = SAMV2ImagePredictor(model=small_model)
    ours.setimage(test_image)
    torch_pred.setimage(test_image)
    return ours, torch_pred


def test_embedding_matches(image_pair):
    ours, torch_pred = image_pair
    diff = (ours.getimageembedding() - torch_pred.getimageembedding()).abs().max().item()
    assert diff <= 1e-4, f"image embedding differs by {diff:.3g} > 1e-4"


@pytest.mark.parametrize("case", [c for c in CASES if c != "negative_point_with_mask"] + ["negative_point_with_mask"])
def test_tutorial_prompts_match(image_pair, case):
    ours, torch_pred = image_pair
    kwargs = dict(CASES[case])
    if case in ("negative_point_with_mask", "two_points"):
        # the tutorial feeds back the best low-resolution logits of the single click
        _, scores, logits = torch_pred.predict(**CASES["point"])
        kwargs["mask_input"] = logits[np.argmax(scores)][None]
    mine = ours.predict(return_logits=True, **kwargs)
    ref = torch_pred.predict(return_logits=True, **kwargs)
    for name, a, b, tol in [("logits", mine[0], ref[0], 1e-3), ("scores", mine[1], ref[1], 1e-4)]:
        diff = np.abs(a - b).max()
        assert a.shape == b.shape and diff <= tol, f"{case}: {name} differ by {diff:.3g} > {tol} ({a.shape})"
    diff = np.abs(mine[2] - ref[2]).max()
    assert diff <= 1e-3, f"{case}: low-res logits differ by {diff:.3g} > 1e-3"
    masks, ref_masks = ours.predict(**kwargs)[0], torch_pred.predict(**kwargs)[0]
    side = masks.shape[-2:]
    worst = min(iou(a > 0, b > 0) for a, b in zip(masks.reshape(-1, *side), ref_masks.reshape(-1, *side)))
    assert worst >= 0.999, f"{case}: mask IoU {worst:.5f} < 0.999"
    assert 0.001 < (masks > 0).mean() < 0.999, f"{case}: degenerate masks (area {(masks > 0).mean():.3f})"


def test_mask_only_prompt_is_a_clear_error(image_pair):
    ours, torch_pred = image_pair
    _, _, logits = torch_pred.predict(**CASES["point"])
    with pytest.raises(ValueError, match="at least one point or box"):
        ours.predict(mask_input=logits[:1])
    assert ours.predict(**CASES["point"])[0].shape[0] == 3, "the predictor is no longer usable after the error"


def test_automatic_masks_are_the_same(onnx_dir, small_model):
    image = make_test_image(240, 320, seed=1)
    options = dict(points_per_side=6, points_per_batch=16, pred_iou_thresh=0.1, stability_score_thresh=0.3)
    options["mask_threshold"] = 15.0
    mine = SAMV2AutomaticMaskGenerator(onnxdir=onnx_dir[0], **options).generate(image)
    ref = SAMV2AutomaticMaskGenerator(model=small_model, **options).generate(image)
    assert len(ref) >= 3, f"only {len(ref)} masks: the comparison would prove little"
    assert len(mine) == len(ref), f"{len(mine)} masks on ONNX Runtime, {len(ref)} on PyTorch"
    for i, (a, b) in enumerate(zip(mine, ref)):
        overlap = iou(a["segmentation"], b["segmentation"])
        assert overlap >= 0.999, f"mask {i}: IoU {overlap:.5f} < 0.999"
        assert abs(a["predicted_iou"] - b["predicted_iou"]) <= 1e-4, f"mask {i}: {a['predicted_iou']} vs {b}"


# ------------------------------------------------------------------------------------------------------------ video
CLIP = [np.roll(make_test_image(240, 320, seed=3), 5 * i, axis=1) for i in range(3)]
CLICK = dict(points=np.array([[100, 120]], np.float32), labels=np.array([1], np.int32))
TWO_CLICKS = dict(points=np.array([[100, 120], [150, 80]], np.float32), labels=np.array([1, 1], np.int32))
NEGATIVE = dict(points=np.array([[60, 200]], np.float32), labels=np.array([0], np.int32))
BOX = np.array([40, 30, 200, 180], np.float32)


def copy_outputs(src, dst) -> None:
    """Give ``dst`` (the ONNX Runtime session) the outputs of ``src`` (PyTorch), after checking the same host
    state (objects, prompts, conditioning / tracked frames) came out of both."""
    assert list(src.objects) == list(dst.objects), "objects differ"
    for obj_id, a in src.objects.items():
        b = dst.objects[obj_id]
        for name in ("point_inputs", "mask_inputs", "cond_outputs", "temp_cond_outputs", "temp_non_cond_outputs"):
            assert list(getattr(a, name)) == list(getattr(b, name)), f"object {obj_id}: {name} frames differ"
        assert a.frames_tracked == b.frames_tracked and list(a.non_cond_outputs) == list(b.non_cond_outputs)
        for name in ("cond_outputs", "temp_cond_outputs", "temp_non_cond_outputs"):
            setattr(b, name, {t: dataclasses.replace(o) for t, o in getattr(a, name).items()})
        for t in list(a.non_cond_outputs):
            b.non_cond_outputs[t] = dataclasses.replace(a.non_cond_outputs.get(t))


def compare(rows, step, frame, ids, mine, ref) -> None:
    assert mine.shape == ref.shape, f"{step} frame {frame}: shape {tuple(mine.shape)} vs {tuple(ref.shape)}"
    diff = (mine - ref).abs().max().item()
    overlap = min(iou((a > 0).numpy(), (b > 0).numpy()) for a, b in zip(mine, ref))
    rows.append(dict(step=step, frame=frame, ids=ids, max=diff, iou=overlap, area=(ref > 0).float().mean().item()))


def test_video_tutorial_matches_in_lockstep(onnx_dir, small_model):
    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg["image_size"] = 256
    model = buildsamv2(cfg, loadweights=False, extra_options={"binarize_mask_from_pts_for_mem_enc": True})
    model.load_state_dict(small_model.state_dict())
    options = dict(maskmem_dtype=torch.float32, release_old_state=False)
    ours, torch_pred = SAMV2VideoPredictor(onnxdir=onnx_dir[0], **options), SAMV2VideoPredictor(model=model, **options)
    assert ours.model.binarize_mask_from_pts_for_mem_enc, "the video predictor's host option did not reach ONNX"
    states = ours.initstate(CLIP), torch_pred.initstate(CLIP)
    rows = []

    def call(step, method, *args, **kwargs):
        mine = getattr(ours, method)(states[0], *args, **kwargs)
        ref = getattr(torch_pred, method)(states[1], *args, **kwargs)
        assert mine[0] == ref[0] and list(mine[1]) == list(ref[1]), f"{step}: {mine[:2]} vs {ref[:2]}"
        compare(rows, step, mine[0], list(mine[1]), mine[2], ref[2])
        copy_outputs(states[1], states[0])

    def propagate(step):
        # one frame at a time from the same state: the next frame reads the PyTorch memories on both sides
        for mine, ref in zip(ours.propagateinvideo(states[0]), torch_pred.propagateinvideo(states[1])):
            assert mine[0] == ref[0] and list(mine[1]) == list(ref[1]), f"{step}: frames {mine[:2]} vs {ref[:2]}"
            compare(rows, step, mine[0], list(mine[1]), mine[2], ref[2])
            copy_outputs(states[1], states[0])

    call("click", "addnewpoints", 0, 1, **CLICK)
    call("second click", "addnewpoints", 0, 1, **TWO_CLICKS)
    propagate("propagate")
    call("negative click", "addnewpoints", 2, 1, **NEGATIVE)
    propagate("propagate again")
    call("box, second object", "addnewpointsorbox", 2, 2, box=BOX)
    propagate("two objects")
    table = "\n".join(f"{r}" for r in rows)
    assert len(rows) == 13, f"expected 13 outputs (2 + 3 + 1 + 3 + 1 + 3):\n{table}"
    worst = max(rows, key=lambda r: r["max"])
    assert worst["max"] <= 1e-3, f"largest logit difference {worst}\n{table}"
    assert min(r["iou"] for r in rows) >= 0.999, table
    assert all(0.01 < r["area"] < 0.99 for r in rows), f"degenerate masks:\n{table}"


def test_cli_subcommands_take_onnx(onnx_dir, tmp_path, small_config):
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(make_test_image(240, 320, seed=2)).save(image)
    out = tmp_path / "out"
    assert main(["image", str(image), "--point", "60,40", "--onnx", onnx_dir[0], "--out", str(out)]) == 0
    assert os.path.isfile(out / "scene_mask0.png") and os.path.isfile(out / "scene.json"), os.listdir(out)
    assert main(["image", str(image), "--point", "60,40", "--onnx", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_camera_predictor_on_onnx_runtime_equals_offline_and_pytorch(onnx_dir, small_model):
    """The live predictor takes ``onnxdir=`` too: on ONNX Runtime a stream equals the ONNX Runtime video predictor
    driven the same way offline (same graphs, same host logic: bit for bit), and its first prompt result equals the
    PyTorch stream's within the image tolerance (no memory is involved yet)."""
    from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor
    from tests.samv2.test_camerapredictor import (
        FRAMES,
        SCHEDULES,
        assert_stream_equals_offline,
        run_offline,
        run_stream,
    )

    schedule, streamed = SCHEDULES["second object mid-stream"], 8
    stream = run_stream(SAMV2CameraPredictor(onnxdir=onnx_dir[0]), FRAMES[:streamed], schedule)
    offline = run_offline(SAMV2VideoPredictor(onnxdir=onnx_dir[0]), FRAMES, schedule, streamed)
    compared = assert_stream_equals_offline(stream, offline, streamed)
    assert compared >= streamed - 1, f"only {compared} (frame, object) pairs were compared"
    reference = SAMV2CameraPredictor(model=small_model)
    reference.loadfirstframe(FRAMES[0])
    _, _, torch_logits = reference.addnewprompt(0, 1, **schedule[0][0][2])
    onnx_logits = stream[1][0][2]
    diff = (onnx_logits - torch_logits).abs().max().item()
    assert diff <= 1e-3, f"first prompt on ONNX Runtime differs from PyTorch by {diff:.3g}"
