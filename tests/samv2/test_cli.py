"""The ssseg-samv2 command line, end to end on a small random-weight model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ssseg.modules.models.segmentors.samv2.masks import rle_to_mask
from ssseg.samv2.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_config):
    folder = tmp_path_factory.mktemp("cli")
    config, ckpt = small_config
    image = folder / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)).save(image)
    return folder, config, ckpt, str(image)


def test_image_command_writes_masks_overlay_and_json(setup, capsys):
    folder, config, ckpt, image = setup
    out = folder / "out"
    code = main(
        [
            "image",
            image,
            "--point",
            "60,40",
            "--point",
            "10,10:0",
            "--config",
            config,
            "--ckpt",
            ckpt,
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "photo.json").read_text())
    assert result["height"] == 90 and result["width"] == 120 and len(result["masks"]) == 1
    record = result["masks"][0]
    mask = np.asarray(Image.open(out / record["file"])) > 0
    assert mask.shape == (90, 120) and mask.sum() == record["area"]
    assert np.array_equal(rle_to_mask(record["rle"]), mask)
    overlay = np.asarray(Image.open(out / "photo_overlay.png"))
    assert overlay.shape == (90, 120, 3)
    assert sorted(os.listdir(out)) == ["photo.json", "photo_mask0.png", "photo_overlay.png"]


def test_single_click_gives_three_masks_best_first(setup):
    folder, config, ckpt, image = setup
    out = folder / "multi"
    assert main(["image", image, "--point", "60,40", "--config", config, "--ckpt", ckpt, "--out", str(out)]) == 0
    scores = [m["score"] for m in json.loads((out / "photo.json").read_text())["masks"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jpg", "--point", "1,1"], "image not found: missing.jpg"),
        (["IMAGE", "--point", "1,1", "--model", "sam9_huge"], "unknown model 'sam9_huge'"),
        (["IMAGE"], "give at least one --point"),
        (["IMAGE", "--box", "50,5,10,50"], "x1 >= x0"),
    ],
)
def test_errors_are_one_line(setup, capsys, args, message):
    folder, config, ckpt, image = setup
    args = [image if a == "IMAGE" else a for a in args]
    extra = [] if "--model" in args else ["--config", config, "--ckpt", ckpt]
    code = main(["image", *args, *extra, "--out", str(folder / "err")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_malformed_point_and_module_entry(setup):
    folder, config, ckpt, image = setup
    run = subprocess.run(
        [sys.executable, "-m", "ssseg.samv2", "image", image, "--point", "1;2", "--out", str(folder / "x")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "malformed point '1;2'" in run.stderr
    help_text = subprocess.run([sys.executable, "-m", "ssseg.samv2", "image", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--point" in help_text.stdout and "--ckpt" in help_text.stdout


def test_offline_download_error_is_readable(setup, capsys, monkeypatch, tmp_path):
    folder, config, ckpt, image = setup
    monkeypatch.setenv("SSSEG_CACHE_DIR", str(tmp_path))
    code = main(
        [
            "image",
            image,
            "--point",
            "1,1",
            "--config",
            config,
            "--ckpt",
            "http://127.0.0.1:9/none.pt",
            "--out",
            str(folder / "offline"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "http://127.0.0.1:9/none.pt" in err and "Traceback" not in err


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_runs_under_autocast(setup, dtype):
    """--dtype runs the model under autocast (on the CPU here) and still writes valid masks, close to float32's."""
    folder, config, ckpt, image = setup
    masks = {}
    for name in ("float32", dtype):
        out = folder / f"dtype_{name}"
        args = ["image", image, "--point", "60,40", "--config", config, "--ckpt", ckpt, "--out", str(out)]
        assert main([*args, "--dtype", name, "--no-multimask"]) == 0
        record = json.loads((out / "photo.json").read_text())["masks"][0]
        masks[name] = rle_to_mask(record["rle"])
    union = (masks["float32"] | masks[dtype]).sum()
    assert (masks["float32"] & masks[dtype]).sum() / union > 0.9


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_one_line_error(setup, capsys):
    folder, config, ckpt, image = setup
    args = ["image", image, "--point", "60,40", "--config", config, "--ckpt", ckpt, "--out", str(folder / "gpu")]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU is available" in err and len(err.strip().splitlines()) == 1
