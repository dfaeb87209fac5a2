"""``ssseg-samv2 video`` end to end on a small random-weight model: DAVIS PNGs, overlay MP4, summary, errors."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from ssseg.samv2.cli import main
from ssseg.samv2.overlay import davis_palette
from tests.conftest import make_test_image

NUM_FRAMES = 6


@pytest.fixture(scope="module")
def frames():
    base = make_test_image(120, 160, seed=4)
    return [np.roll(base, 3 * i, axis=1) for i in range(NUM_FRAMES)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames):
    folder = tmp_path_factory.mktemp("clip")
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.jpg", quality=95)  # 0.jpg .. 5.jpg, numeric order
    return folder


def write_prompts(folder, objects):
    path = folder / "prompts.json"
    path.write_text(json.dumps({"objects": objects}))
    return str(path)


def run(args, small_config):
    config, ckpt = small_config
    return main(["video", *args, "--config", config, "--ckpt", ckpt])


def count_video_frames(path):
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    capture.release()
    return count, size


def test_folder_input_writes_palette_pngs_overlay_and_summary(clip, small_config, tmp_path):
    prompts = write_prompts(
        tmp_path,
        [
            {"id": 1, "frame": 2, "points": [[50, 60], [70, 40]], "labels": [1, 1]},
            {"id": 7, "frame": 3, "box": [90, 20, 150, 100]},
        ],
    )
    out = tmp_path / "out"
    assert run([str(clip), "--prompts", prompts, "--out", str(out)], small_config) == 0
    # every frame has a mask, also the ones before the first prompt (tracked backwards)
    assert sorted(os.listdir(out / "masks")) == [f"{t:05d}.png" for t in range(NUM_FRAMES)]
    maps = []
    for t in range(NUM_FRAMES):
        png = Image.open(out / "masks" / f"{t:05d}.png")
        assert png.mode == "P" and png.size == (160, 120)
        assert np.array_equal(np.array(png.getpalette()[:768], np.uint8).reshape(256, 3), davis_palette())
        maps.append(np.asarray(png))
        assert set(np.unique(maps[-1])) <= {0, 1, 7}
    assert (maps[2] == 1).any() and (maps[3] == 7).any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objects"] == [1, 7] and summary["num_frames"] == NUM_FRAMES
    assert (summary["height"], summary["width"]) == (120, 160)
    for t, areas in enumerate(summary["area_per_frame"]):
        assert areas == {"1": int((maps[t] == 1).sum()), "7": int((maps[t] == 7).sum())}
    assert count_video_frames(out / "overlay.mp4") == (NUM_FRAMES, (120, 160))
    assert not [n for n in os.listdir(out) if ".tmp" in n]


def test_video_file_input_gives_the_same_masks(clip, frames, small_config, tmp_path):
    """A lossless AVI of the same frames as the JPEG folder (decoded from it) tracks to the same masks."""
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10, (160, 120))
    assert writer.isOpened()
    for t in range(NUM_FRAMES):
        writer.write(cv2.cvtColor(np.asarray(Image.open(clip / f"{t}.jpg").convert("RGB")), cv2.COLOR_RGB2BGR))
    writer.release()
    prompts = write_prompts(tmp_path, [{"id": 2, "frame": 0, "box": [20, 20, 100, 90]}])
    for source, out in ((clip, tmp_path / "a"), (video, tmp_path / "b")):
        assert run([str(source), "--prompts", prompts, "--out", str(out), "--no-overlay"], small_config) == 0
        assert not (out / "overlay.mp4").exists()
    for t in range(NUM_FRAMES):
        a = np.asarray(Image.open(tmp_path / "a" / "masks" / f"{t:05d}.png"))
        b = np.asarray(Image.open(tmp_path / "b" / "masks" / f"{t:05d}.png"))
        assert np.array_equal(a, b), t
    assert count_video_frames(video)[0] == NUM_FRAMES


def test_mask_prompt_and_fps(clip, small_config, tmp_path):
    mask = np.zeros((120, 160), np.uint8)
    mask[30:80, 40:110] = 1
    Image.fromarray(mask * 255).save(tmp_path / "m.png")
    prompts = write_prompts(tmp_path, [{"id": 3, "frame": 0, "mask": "m.png"}])
    out = tmp_path / "out"
    assert run([str(clip), "--prompts", prompts, "--out", str(out), "--fps", "5"], small_config) == 0
    first = np.asarray(Image.open(out / "masks" / "00000.png"))
    assert (first == 3).sum() > 0
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    capture.release()


@pytest.mark.parametrize(
    "objects, message",
    [
        ([{"id": 1, "frame": 9, "box": [0, 0, 5, 5]}], r"objects[0].frame: 9 is out of range for a video of 6 frames"),
        ([{"id": 1, "frame": 0, "points": [[500, 5]], "labels": [1]}], "objects[0]: points lie outside"),
        ([{"id": 1, "frame": 0, "box": [0, 0, 5, 5]}, {"id": 1, "fram": 1}], "objects[1]: unknown key(s) ['fram']"),
        ([{"id": 1, "frame": 0, "points": [[5, 5]]}], "'points' and 'labels' go together"),
    ],
)
def test_prompt_errors_are_one_line(clip, small_config, tmp_path, capsys, objects, message):
    prompts = write_prompts(tmp_path, objects)
    assert run([str(clip), "--prompts", prompts, "--out", str(tmp_path / "out")], small_config) == 2
    err = capsys.readouterr().err
    assert message in err and "prompts.json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_input_errors(clip, small_config, tmp_path, capsys):
    prompts = write_prompts(tmp_path, [{"id": 1, "frame": 0, "box": [0, 0, 5, 5]}])
    assert run([str(tmp_path / "nothing.mp4"), "--prompts", prompts, "--out", str(tmp_path / "o")], small_config) == 2
    assert "video not found" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert run([str(tmp_path / "broken.mp4"), "--prompts", prompts, "--out", str(tmp_path / "o")], small_config) == 2
    err = capsys.readouterr().err
    assert "cannot read video" in err and "broken.mp4" in err and len(err.strip().splitlines()) == 1
    assert run([str(clip), "--prompts", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")], small_config) == 2
    assert "prompts file not found" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["image", "amg", "video"])
def test_every_subcommand_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "ssseg.samv2", command, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--model" in result.stdout and "--dtype" in result.stdout
    assert "--out" in result.stdout


def test_config_driven_run_as_documented(clip, small_config, tmp_path, capsys):
    """docs/cli.md's worked example: copy a shipped config, change fields (image size, memory stride, checkpoint
    path), run it with --config and no --ckpt; the model is built through the registry with those values."""
    import argparse
    import shutil

    from ssseg.configs.samv2 import sam21_hiera_tiny
    from ssseg.samv2.common import build_model

    _, ckpt = small_config
    config = tmp_path / "my_tiny.py"
    shutil.copy(sam21_hiera_tiny.__file__, config)
    with open(config, "a") as file:
        file.write(
            f'\nSAMV2_CFG["image_size"] = 256\nSAMV2_CFG["memory_temporal_stride_for_eval"] = 2\nCKPT_URL = {ckpt!r}\n'
        )
    args = argparse.Namespace(config=str(config), ckpt=None, device="cpu", model="unused")
    model = build_model(args, video=True)
    assert (model.image_size, model.memory_temporal_stride_for_eval) == (256, 2)
    assert model.binarize_mask_from_pts_for_mem_enc
    prompts = write_prompts(tmp_path, [{"id": 1, "frame": 0, "box": [20, 20, 100, 90]}])
    code = main(["video", str(clip), "--prompts", prompts, "--out", str(tmp_path / "o"), "--config", str(config)])
    assert code == 0, capsys.readouterr().err
    # a field that changes a weight shape fails loudly, naming the mismatch
    with open(config, "a") as file:
        file.write('SAMV2_CFG["num_maskmem"] = 4\n')  # one temporal encoding per memory frame
    code = main(["video", str(clip), "--prompts", prompts, "--out", str(tmp_path / "o"), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "maskmem_tpos_enc: checkpoint [7, 1, 1, 64] vs model [4" in err


def test_bfloat16_autocast(clip, small_config, tmp_path):
    prompts = write_prompts(tmp_path, [{"id": 1, "frame": 0, "points": [[50, 60]], "labels": [1]}])
    out = tmp_path / "out"
    assert (
        run([str(clip), "--prompts", prompts, "--out", str(out), "--dtype", "bfloat16", "--no-overlay"], small_config)
        == 0
    )
    assert len(os.listdir(out / "masks")) == NUM_FRAMES
    assert (np.asarray(Image.open(out / "masks" / "00000.png")) == 1).any()
