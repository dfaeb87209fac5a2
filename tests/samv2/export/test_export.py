"""``ssseg-samv2 export``: the files, their inputs and outputs, and that the dynamic axes take other counts."""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ssseg.modules.models.segmentors.samv2 import onnxbackend as spec
from ssseg.modules.models.segmentors.samv2.samv2 import MemoryBank
from ssseg.samv2.export.exporter import real_rope


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_files_pass_the_checker_with_the_documented_inputs_and_outputs(onnx_dir):
    folder, seconds = onnx_dir
    print(f"export of the small model: {seconds:.1f} s")
    expected = {
        "image_encoder": (spec.IMAGE_ENCODER_INPUTS, spec.IMAGE_ENCODER_OUTPUTS),
        "prompt_decoder": (spec.PROMPT_DECODER_INPUTS, spec.PROMPT_DECODER_OUTPUTS),
        "memory_attention": (spec.MEMORY_ATTENTION_INPUTS, spec.MEMORY_ATTENTION_OUTPUTS),
        "memory_encoder": (spec.MEMORY_ENCODER_INPUTS, spec.MEMORY_ENCODER_OUTPUTS),
    }
    shapes = {}
    for part, (inputs, outputs) in expected.items():
        path = os.path.join(folder, spec.FILES[part])
        onnx.checker.check_model(path, full_check=True)
        graph = onnx.load(path).graph
        assert tuple(i.name for i in graph.input) == inputs, f"{part} inputs: {[i.name for i in graph.input]}"
        assert tuple(o.name for o in graph.output) == outputs, f"{part} outputs: {[o.name for o in graph.output]}"
        shapes.update({f"{part}.{v.name}": dims(v) for v in [*graph.input, *graph.output]})
    # 256 input: stride-16 features 16 x 16, decoder masks 64 x 64, memories 64 channels
    assert shapes["image_encoder.image"] == [1, 3, 256, 256], shapes["image_encoder.image"]
    assert shapes["image_encoder.image_embed"] == [1, 256, 16, 16], shapes["image_encoder.image_embed"]
    assert shapes["image_encoder.high_res_feats_0"] == [1, 32, 64, 64], shapes["image_encoder.high_res_feats_0"]
    assert shapes["image_encoder.high_res_feats_1"] == [1, 64, 32, 32], shapes["image_encoder.high_res_feats_1"]
    assert shapes["prompt_decoder.point_coords"] == ["num_prompts", "num_points", 2]
    assert shapes["prompt_decoder.low_res_masks_multi"] == ["num_prompts", 3, 64, 64]
    assert shapes["prompt_decoder.obj_ptr_single"] == ["num_prompts", 256]
    assert shapes["memory_attention.maskmem_features"] == ["num_memories", "num_objects", 64, 16, 16]
    assert shapes["memory_attention.obj_ptrs"] == ["num_obj_ptrs", "num_objects", 256]
    assert shapes["memory_attention.fused_features"] == [256, "num_objects", 256]
    assert shapes["memory_encoder.maskmem_features"] == ["num_objects", 64, 16, 16]
    with open(os.path.join(folder, spec.CONFIG_FILE)) as f:
        config = json.load(f)
    assert config["format_version"] == spec.FORMAT_VERSION and config["model"] == "small"
    assert config["options"]["image_size"] == 256 and config["mask_input_size"] == [64, 64], config["options"]
    assert set(config["tensors"]) == set(spec.HOST_TENSORS), sorted(config["tensors"])


def close(name, ort_out, torch_out, atol, rtol=0.0):
    """Within ``atol + rtol * max |reference|``: these inputs are random (unit-variance features, labels 0-3), so the
    logits reach +-100 and float32 reduction-order noise scales with them; the issue's absolute tolerances are held
    on the tutorial prompts in test_predictors.py."""
    ref = torch_out.detach().numpy()
    diff, tol = np.abs(ort_out - ref).max(), atol + rtol * np.abs(ref).max()
    assert ort_out.shape == ref.shape, f"{name}: shape {ort_out.shape} vs {ref.shape}"
    assert diff <= tol, f"{name}: max abs difference {diff:.3g} > {tol:.3g} (max |reference| {np.abs(ref).max():.3g})"


def test_dynamic_prompt_counts(onnx_dir, small_model):
    """Prompt sets x points (and with / without a mask prompt) other than the traced 2 x 3, against PyTorch."""
    session = ort.InferenceSession(os.path.join(onnx_dir[0], "prompt_decoder.onnx"))
    gen = torch.Generator().manual_seed(5)
    image = [torch.randn(1, 256, 16, 16, generator=gen), torch.randn(1, 32, 64, 64, generator=gen)]
    image.append(torch.randn(1, 64, 32, 32, generator=gen))
    for batch, points, has_mask in [(1, 1, False), (4, 1, True), (1, 6, True), (3, 2, False)]:
        coords = torch.rand(batch, points, 2, generator=gen) * 256
        labels = torch.randint(0, 4, (batch, points), generator=gen, dtype=torch.int32)
        mask = torch.randn(batch, 1, 64, 64, generator=gen)
        feed = dict(zip(spec.PROMPT_DECODER_INPUTS[:3], (x.numpy() for x in image)))
        feed.update(point_coords=coords.numpy(), point_labels=labels.numpy(), mask_input=mask.numpy())
        feed["has_mask_input"] = np.array([float(has_mask)], np.float32)
        outs = dict(zip(spec.PROMPT_DECODER_OUTPUTS, session.run(None, feed)))
        for multi in (True, False):
            with torch.no_grad():
                ref = small_model.decode_prompts(
                    image[0], image[1:], (coords, labels), mask if has_mask else None, multi, repeat_image=True
                )
            suffix = "multi" if multi else "single"
            what = f"{batch} prompt sets x {points} points, mask {has_mask}, {suffix}"
            close(f"{what}: logits", outs[f"low_res_masks_{suffix}"], ref.low_res_masks, 1e-3, 1e-5)
            close(f"{what}: IoU", outs[f"iou_scores_{suffix}"], ref.ious, 1e-4)
            close(f"{what}: pointer", outs[f"obj_ptr_{suffix}"], ref.obj_ptr, 1e-3, 1e-5)
            close(f"{what}: object score", outs["object_score_logits"], ref.object_score_logits, 1e-3)


def test_dynamic_memory_counts(onnx_dir, small_model):
    """Memory frames, object pointers (none too) and objects other than the traced 3, 4 and 2, against PyTorch."""
    attention = ort.InferenceSession(os.path.join(onnx_dir[0], "memory_attention.onnx"))
    encoder = ort.InferenceSession(os.path.join(onnx_dir[0], "memory_encoder.onnx"))
    gen = torch.Generator().manual_seed(6)
    for objects, frames, ptrs in [(1, 1, 0), (1, 7, 16), (3, 2, 1)]:
        curr = torch.randn(256, objects, 256, generator=gen)
        curr_pos = torch.randn(256, objects, 256, generator=gen)
        bank = MemoryBank(
            torch.randn(frames, objects, 64, 16, 16, generator=gen),
            torch.randn(frames, objects, 64, 16, 16, generator=gen),
            torch.randint(0, 7, (frames,), generator=gen),
            torch.randn(ptrs, objects, 256, generator=gen) if ptrs else None,
            torch.rand(ptrs, generator=gen) if ptrs else None,
        )
        feed = {"curr": curr.numpy(), "curr_pos": curr_pos.numpy(), "maskmem_features": bank.features.numpy()}
        feed.update(maskmem_pos_enc=bank.pos_enc.numpy(), maskmem_tpos_index=bank.tpos_index.numpy())
        feed["obj_ptrs"] = bank.obj_ptrs.numpy() if ptrs else np.zeros((0, objects, 256), np.float32)
        feed["obj_ptr_rel_pos"] = bank.obj_ptr_rel_pos.numpy() if ptrs else np.zeros(0, np.float32)
        (fused,) = attention.run(None, feed)
        with torch.no_grad():
            ref = small_model.attend_memory(curr, curr_pos, bank)
            with real_rope(small_model):
                # the same model with the exported (real) rotation: its distance to the complex one is the float32
                # noise floor of these random inputs (about 1e-3 here; 3e-4 on the video test's real features)
                floor = (small_model.attend_memory(curr, curr_pos, bank) - ref).abs().max().item()
        what = f"memory attention, {objects} objects, {frames} memories, {ptrs} pointers"
        close(what, fused, ref, max(1e-3, 3 * floor))

        pix_feat = torch.randn(objects, 256, 16, 16, generator=gen)
        mask = torch.rand(objects, 1, 256, 256, generator=gen)
        scores = torch.randn(objects, 1, generator=gen)
        feats, pos = encoder.run(
            None, {"pix_feat": pix_feat.numpy(), "mask_for_mem": mask.numpy(), "object_score_logits": scores.numpy()}
        )
        with torch.no_grad():
            ref_feats, ref_pos = small_model.encode_memory(pix_feat, mask, scores)
        close(f"memory encoder, {objects} objects", feats, ref_feats, 1e-4)
        close(f"memory encoder position, {objects} objects", pos, ref_pos, 1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image-size", "250"], "multiple of 16"),
        (["--opset", "13"], "opset 18 or newer"),
        (["--model", "sam3"], "unknown model"),
    ],
)
def test_export_errors_are_one_line(args, message, capsys, tmp_path):
    from ssseg.samv2.cli import main

    assert main(["export", "--out", str(tmp_path / "x"), *args]) == 2, f"{args} did not fail"
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, f"{args}: {err!r}"


def test_missing_extra_is_named(monkeypatch, onnx_dir, capsys, tmp_path):
    """Without onnxruntime / onnx: a one-line error naming ``ssseg[onnx]``, from the predictors and the CLI."""
    import sys

    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
    from ssseg.modules.utils.optional import MissingExtraError
    from ssseg.samv2.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'ssseg\[onnx\]'"):
        SAMV2ImagePredictor(onnxdir=onnx_dir[0])
    assert main(["export", "--model", "sam2.1_hiera_tiny", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "ssseg[onnx]" in err and err.count("\n") == 1, err


def test_folder_errors(tmp_path, onnx_dir):
    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor, SAMV2VideoPredictor

    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        SAMV2ImagePredictor(onnxdir=str(tmp_path))
    with pytest.raises(ValueError, match="apply_postprocessing"):
        SAMV2VideoPredictor(onnxdir=onnx_dir[0], apply_postprocessing=False)
    with pytest.raises(ValueError, match="ckptpath"):
        SAMV2ImagePredictor(onnxdir=onnx_dir[0], ckptpath="x.pt")
    with pytest.raises(ValueError, match="exactly one model"):
        SAMV2ImagePredictor(onnxdir=onnx_dir[0], use_default_samv21_t=True)
