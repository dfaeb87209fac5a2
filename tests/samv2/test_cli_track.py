"""``ssseg-samv2 track`` on a video file made in code: PNGs, overlay MP4 and summary as it goes, --max-frames,
objects starting on later frames, equality with SAMV2CameraPredictor, SIGINT, and bad sources."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ssseg.samv2.cli import main
from tests.conftest import make_test_image
from tests.samv2.test_cli_video import count_video_frames
from tests.samv2.test_video import write_video

HEIGHT, WIDTH = 48, 64


def write_mp4(path, num_frames: int, seed: int = 9):
    """An mp4v file of frames made in code; returns the frames as OpenCV decodes them (RGB)."""
    base = make_test_image(HEIGHT, WIDTH, seed=seed)
    decoded = write_video(path, [np.roll(base, 2 * i, axis=1) for i in range(num_frames)], "mp4v")
    assert len(decoded) == num_frames, f"wrote {num_frames} frames, decoded {len(decoded)}"
    return decoded


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("track") / "clip.mp4"
    return path, write_mp4(path, 8)


PROMPTS = [
    {"id": 1, "frame": 0, "points": [[20, 24]], "labels": [1]},
    {"id": 2, "frame": 3, "box": [36, 4, 60, 30]},  # appears mid-stream
    {"id": 1, "frame": 5, "points": [[20, 24], [30, 10]], "labels": [1, 0]},  # a correction
]


def write_prompts(folder, objects=PROMPTS):
    path = folder / "prompts.json"
    path.write_text(json.dumps({"objects": objects}))
    return str(path)


def model_args(small_config):
    config, ckpt = small_config
    return ["--config", config, "--ckpt", ckpt]


def read_ids(path):
    with Image.open(path) as png:
        assert png.mode == "P", f"{path} is mode {png.mode}, expected a palette PNG"
        return np.asarray(png)


def test_video_file_writes_pngs_overlay_summary_equal_to_the_predictor(clip, small_config, small_model, tmp_path):
    path, frames = clip
    out = tmp_path / "out"
    code = main(
        ["track", str(path), "--prompts", write_prompts(tmp_path), "--out", str(out), *model_args(small_config)]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["objects"] == [1, 2], f"summary: {summary}"
    assert summary["stopped"] == "end of source" and summary["frames_dropped"] == 0
    assert summary["fps"] > 0 and 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert (summary["height"], summary["width"]) == (HEIGHT, WIDTH) and summary["prompts_not_applied"] == []
    assert count_video_frames(out / "overlay.mp4") == (8, (HEIGHT, WIDTH))
    assert sorted(os.listdir(out / "masks")) == [f"{t:05d}.png" for t in range(8)]

    # the PNGs are the predictor's masks, fed the same decoded frames and prompts (the CLI's video model options)
    from ssseg.modules.models.segmentors.samv2 import SAMV2CameraPredictor
    from ssseg.samv2.videocmd import index_map

    saved = small_model.binarize_mask_from_pts_for_mem_enc
    small_model.binarize_mask_from_pts_for_mem_enc = True
    try:
        predictor = SAMV2CameraPredictor(model=small_model)
        predictor.loadfirstframe(frames[0])
        for t, frame in enumerate(frames):
            ids, logits = predictor.track(frame) if t else ([], None)
            for p in PROMPTS:
                if p["frame"] == t:
                    box = p.get("box")
                    _, ids, logits = predictor.addnewprompt(t, p["id"], p.get("points"), p.get("labels"), box)
            want = index_map(ids, logits) if ids else np.zeros((HEIGHT, WIDTH), np.uint8)
            got = read_ids(out / "masks" / f"{t:05d}.png")
            assert np.array_equal(got, want), f"frame {t}: {np.sum(got != want)} pixels differ from the predictor"
    finally:
        small_model.binarize_mask_from_pts_for_mem_enc = saved
    assert set(np.unique(read_ids(out / "masks" / "00007.png"))) >= {1, 2}, "an object is missing on the last frame"
    assert set(np.unique(read_ids(out / "masks" / "00002.png"))) <= {0, 1}, "object 2 shows before its first frame"


def test_max_frames_and_prompts_beyond_the_end(clip, small_config, tmp_path):
    path, _ = clip
    out = tmp_path / "out"
    prompts = write_prompts(tmp_path, PROMPTS + [{"id": 3, "frame": 50, "points": [[5, 5]], "labels": [1]}])
    args = ["track", str(path), "--prompts", prompts, "--out", str(out), "--max-frames", "4", "--no-overlay"]
    assert main([*args, *model_args(small_config)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 4 and summary["stopped"] == "--max-frames 4", f"summary: {summary}"
    assert summary["prompts_not_applied"] == [2, 3] and summary["overlay"] is None
    assert sorted(os.listdir(out / "masks")) == [f"{t:05d}.png" for t in range(4)]
    assert not (out / "overlay.mp4").exists()


def test_drop_frames_counts_skipped_frames(clip, small_config, tmp_path):
    path, _ = clip
    out = tmp_path / "out"
    prompts = write_prompts(tmp_path, PROMPTS[:1])
    args = ["track", str(path), "--prompts", prompts, "--out", str(out), "--drop-frames", "--no-overlay"]
    assert main([*args, *model_args(small_config)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # a file is read faster than it is tracked: frames are skipped, and every frame is either tracked or dropped
    assert summary["frames"] + summary["frames_dropped"] == 8, f"summary: {summary}"
    assert len(os.listdir(out / "masks")) == summary["frames"]


def test_sigint_leaves_a_playable_mp4_and_a_summary(small_config, tmp_path):
    path = tmp_path / "long.mp4"
    write_mp4(path, 300)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ssseg.samv2", "track", str(path), "--prompts", write_prompts(tmp_path)]
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [*command, "--out", str(out), *model_args(small_config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "masks").is_dir() and len(os.listdir(out / "masks")) >= 4:
                break
            time.sleep(0.2)
        assert process.poll() is None, f"the run ended before SIGINT: {process.communicate()}"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, f"exit {process.returncode}: {stderr[-2000:]}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "interrupted (SIGINT)" and 4 <= summary["frames"] < 300, f"summary: {summary}"
    frames, size = count_video_frames(out / "overlay.mp4")
    assert (frames, size) == (summary["frames"], (HEIGHT, WIDTH)), f"overlay has {frames} frames of {size}"
    assert len(os.listdir(out / "masks")) == summary["frames"]
    assert not [n for n in os.listdir(out) if ".tmp" in n], "a temporary file was left behind"
    assert "interrupted" in stdout


@pytest.mark.parametrize("kind", ["missing file", "unreadable file", "camera", "url"])
def test_bad_source_is_one_line_exit_2(kind, small_config, tmp_path, capsys):
    sources = {
        "missing file": str(tmp_path / "nope.mp4"),
        "unreadable file": str(tmp_path / "text.mp4"),
        "camera": "57",
        "url": "http://127.0.0.1:9/stream.mjpg",
    }
    (tmp_path / "text.mp4").write_text("not a video")
    out = tmp_path / "out"
    code = main(
        ["track", sources[kind], "--prompts", write_prompts(tmp_path), "--out", str(out), *model_args(small_config)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "track: error:" in err, f"exit {code}: {err!r}"
    assert ("not found" if kind == "missing file" else "cannot open") in err, err
    assert not out.exists(), "outputs were created for a source that does not open"


def test_bad_arguments_and_prompts(clip, small_config, tmp_path, capsys):
    path, _ = clip
    (tmp_path / "bad").mkdir()
    bad_prompt = write_prompts(tmp_path / "bad", [{"id": 1, "frame": 0, "points": [[500, 5]], "labels": [1]}])
    cases = [
        (["--max-frames", "0"], write_prompts(tmp_path), "--max-frames must be >= 1"),
        ([], str(tmp_path / "missing.json"), "prompts file not found"),
        ([], bad_prompt, "objects[0]: points lie outside"),
    ]
    for extra, prompts, message in cases:
        out = tmp_path / "out"
        code = main(["track", str(path), "--prompts", prompts, "--out", str(out), *extra, *model_args(small_config)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, f"{extra}: exit {code}: {err!r}"
    # the bad prompt came on frame 0: the outputs of the stream so far are still written
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 0 and summary["objects"] == [], summary
