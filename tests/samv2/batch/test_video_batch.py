"""``video MANIFEST.jsonl``: every video of a manifest, on the local engine and on Ray, equal to the ``video`` command
run on each video alone; bad lines and unreadable videos are recorded and the rest is tracked."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.samv2.cli import main
from tests.conftest import make_test_image
from tests.samv2.batch.conftest import files

NUM_FRAMES = 3
PROMPTS_1 = {"objects": [{"id": 1, "frame": 1, "points": [[20, 24]], "labels": [1]}]}
PROMPTS_2 = {"objects": [{"id": 2, "frame": 0, "box": [8, 8, 40, 36]}, {"id": 5, "frame": 0, "points": [[50, 12]],
                                                                        "labels": [1]}]}  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """``clips/v1`` (a JPEG folder), ``clips/v2.avi`` (lossless), their prompts and a manifest with two good lines,
    a line without prompts and a video that does not exist."""
    root = tmp_path_factory.mktemp("videos")
    (root / "clips" / "v1").mkdir(parents=True)
    for t in range(NUM_FRAMES):
        Image.fromarray(np.roll(make_test_image(40, 56, seed=6), 2 * t, axis=1)).save(
            root / "clips" / "v1" / f"{t}.jpg"
        )
    writer = cv2.VideoWriter(str(root / "clips" / "v2.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10, (64, 48))
    for t in range(NUM_FRAMES):
        writer.write(np.roll(make_test_image(48, 64, seed=7), t, axis=0))
    writer.release()
    (root / "p2.json").write_text(json.dumps(PROMPTS_2))
    lines = [
        {"video": "clips/v1", "prompts": PROMPTS_1},
        {"video": "clips/v2.avi", "prompts_file": "p2.json"},
        {"video": "clips/v3"},
        {"video": "clips/nothing.mp4", "prompts": PROMPTS_1},
    ]
    (root / "videos.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return root


def model_args(small_config):
    config, ckpt = small_config
    return ["--config", config, "--ckpt", ckpt, "--no-overlay"]


@pytest.fixture(scope="module")
def single_runs(videos, small_config, tmp_path_factory):
    """The ``video`` command on each good video alone: the reference outputs."""
    out = tmp_path_factory.mktemp("single")
    prompts1 = out / "p1.json"
    prompts1.write_text(json.dumps(PROMPTS_1))
    for name, video, prompts in (("v1", "clips/v1", prompts1), ("v2", "clips/v2.avi", videos / "p2.json")):
        code = main(["video", str(videos / video), "--prompts", str(prompts), "--out", str(out / name),
                     *model_args(small_config)])  # fmt: skip
        assert code == 0
    return out


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_manifest_equals_the_video_command(engine, videos, single_runs, small_config, tmp_path, capsys, request):
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    out = tmp_path / engine
    args = ["video", str(videos / "videos.jsonl"), "--out", str(out), *model_args(small_config), "--engine", engine]
    args += ["--threads", str(torch.get_num_threads())]
    assert main(args) == 1, "the two bad lines make the exit code 1"
    captured = capsys.readouterr()
    assert "tracked 2 video(s), 6 frames" in captured.out and "failed 2" in captured.out, captured.out
    expected = files(single_runs)
    written = files(out)
    assert sorted(written) == sorted([n for n in expected if not n.endswith("p1.json")] + ["errors.jsonl"]), written
    differ = [n for n in written if n != "errors.jsonl" and written[n] != expected[n]]
    assert not differ, f"{engine} manifest outputs differ from the video command's in {differ}"
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["input"] == "clips/v3" and "exactly one of 'prompts'" in errors[0]["reason"], errors
    assert errors[1]["input"].endswith("nothing.mp4") and "video not found" in errors[1]["reason"], errors
    if engine == "local":  # resume: only the failed ones are tried again
        assert main(args) == 1
        resumed = capsys.readouterr().out
        assert "tracked 0 video(s)" in resumed and "skipped 2, failed 2" in resumed, resumed


def test_video_uri_in_and_object_store_out(videos, single_runs, small_config, tmp_path, capsys):
    """A frame folder behind a URI (copied locally for OpenCV) tracked into an object store (files uploaded, the
    summary last): the same masks as the local run; the summary names the URI."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for t in range(NUM_FRAMES):
        fs.pipe(f"/vidtest/clips/v1/{t}.jpg", (videos / "clips" / "v1" / f"{t}.jpg").read_bytes())
    manifest = tmp_path / "uri.jsonl"
    manifest.write_text(json.dumps({"video": "memory://vidtest/clips/v1", "prompts": PROMPTS_1}) + "\n")
    try:
        args = ["video", str(manifest), "--out", "memory://vidtest/out", *model_args(small_config)]
        assert main(args) == 0, capsys.readouterr().err
        expected = {n: b for n, b in files(single_runs / "v1").items()}
        written = {p[len("/vidtest/out/v1/") :]: fs.cat_file(p) for p in fs.find("/vidtest/out")}
        assert sorted(written) == sorted(expected), sorted(written)
        differ = [n for n in expected if n != "summary.json" and written[n] != expected[n]]
        assert not differ, f"masks differ from the local run in {differ}"
        summary, reference = json.loads(written["summary.json"]), json.loads(expected["summary.json"])
        assert summary.pop("input") == "memory://vidtest/clips/v1", summary
        reference.pop("input")
        assert summary == reference, (summary, reference)
    finally:
        fs.rm("/vidtest", recursive=True)
