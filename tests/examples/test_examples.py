"""Every tutorial example under examples/samv2 run end to end on made-up inputs, checking the figures it writes.

The scripts run in this process (``runpy``, as ``__main__``, with their command line in ``sys.argv``) on a small
SAM 2.1 tiny config (image_size 256) with random weights, so that the whole file takes a few minutes on a CPU. One
script runs as a real command in a subprocess, one with ``--model`` (the official 1024 config) instead of ``--config``.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_test_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "samv2"
NUM_FRAMES = 8
VIDEO_HW = (540, 960)  # every click of the video tutorial lies inside
REFINE_FRAME = 5
VIS_STRIDE = 3
STRIDED_FRAMES = [f"out_frame_{i}.png" for i in range(0, NUM_FRAMES, VIS_STRIDE)]  # frames 0, 3, 6

# script -> (extra arguments, files it writes into --outdir, figure size in inches or None for tight bounding boxes)
CASES = {
    "image/selectingobjectswithsamv2.py": ([], ["output_mask_1.png", "output_mask_2.png", "output_mask_3.png"], None),
    "image/specifyingaspecificobjectwithadditionalpoints1.py": ([], ["output_mask_1.png"], None),
    "image/specifyingaspecificobjectwithadditionalpoints2.py": ([], ["output_mask_1.png"], None),
    "image/specifyingaspecificobjectwithabox.py": ([], ["output_mask_1.png"], None),
    "image/combiningpointsandboxes.py": ([], ["output_mask_1.png"], None),
    "image/batchedpromptinputs.py": ([], ["output.png"], (10, 10)),
    "image/endtoendbatchedinference1.py": ([], ["output_0.png", "output_1.png"], (10, 10)),
    "image/endtoendbatchedinference2.py": ([], ["output_0.png", "output_1.png"], (10, 10)),
    "image/automaticmaskgeneration.py": (["--points-per-side", "4"], ["output.png"], (20, 20)),
    # 8 x 8 points (4 x 4 on the crops): the random-weight model keeps a mask, so that showanns draws one
    "image/automaticmaskgenerationoptions.py": (["--points-per-side", "8"], ["output.png"], (20, 20)),
    "video/segmenttrackoneobject_step1.py": ([], ["output_step1.png"], (12, 8)),
    "video/segmenttrackoneobject_step2.py": ([], ["output_step2.png"], (12, 8)),
    "video/segmenttrackoneobject_step3.py": (["--vis-stride", str(VIS_STRIDE)], STRIDED_FRAMES, (6, 4)),
    "video/segmenttrackoneobject_step4.py": (
        ["--refine-frame", str(REFINE_FRAME)],
        [f"frame {REFINE_FRAME} -- before refinement.png", f"frame {REFINE_FRAME} -- after refinement.png"],
        (12, 8),
    ),
    "video/segmenttrackoneobject_step5.py": (
        ["--refine-frame", str(REFINE_FRAME), "--vis-stride", str(VIS_STRIDE)],
        STRIDED_FRAMES,
        (6, 4),
    ),
    "video/segmentmultipleobjectssimultaneously_step1.py": ([], ["output.png"], (12, 8)),
    "video/segmentmultipleobjectssimultaneously_step2.py": (["--vis-stride", str(VIS_STRIDE)], STRIDED_FRAMES, (6, 4)),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out as the tutorial expects: images/{truck,groceries,cars}.jpg and videos/bedroom/00000.jpg..."""
    folder = tmp_path_factory.mktemp("examples")
    (folder / "images").mkdir()
    # the truck holds the tutorial's clicks and boxes up to (1725, 875); the groceries up to (640, 350)
    Image.fromarray(make_test_image(1200, 1800, seed=0)).save(folder / "images" / "truck.jpg", quality=95)
    Image.fromarray(make_test_image(400, 700, seed=1)).save(folder / "images" / "groceries.jpg", quality=95)
    Image.fromarray(make_test_image(240, 320, seed=2)).save(folder / "images" / "cars.jpg", quality=95)
    video = folder / "videos" / "bedroom"
    video.mkdir(parents=True)
    base = make_test_image(*VIDEO_HW, seed=3)
    for i in range(NUM_FRAMES):
        Image.fromarray(np.roll(base, 8 * i, axis=1)).save(video / f"{i:05d}.jpg", quality=95)
    return folder


def run_example(script, args, workdir, monkeypatch):
    """Run ``examples/samv2/<script>`` as ``__main__`` in this process, from ``workdir``.

    The script's ``sys.path`` insert goes to a copy of ``sys.path`` that is dropped afterwards, and its ``common``
    module is forgotten, so that every script imports it by itself and nothing leaks into other tests.
    """
    path = str(EXAMPLES / script)
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", [path, *args])
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("common", None)
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        sys.modules.pop("common", None)


def check_figures(outdir, expected, figsize):
    """The figures exist, are the only files written, decode as RGB(A) PNGs, and have the figure's size."""
    assert sorted(os.listdir(outdir)) == sorted(expected)
    for name in expected:
        with Image.open(outdir / name) as image:
            image.load()
            assert image.format == "PNG" and image.mode in ("RGB", "RGBA")
            width, height = image.size
        assert min(width, height) >= 100, (name, image.size)
        if figsize is not None:  # saved without a tight bounding box: the whole figure
            assert abs(width / height - figsize[0] / figsize[1]) < 0.01, (name, image.size, figsize)


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs_end_to_end(script, workdir, small_config, tmp_path, monkeypatch, capsys):
    args, expected, figsize = CASES[script]
    config, ckpt = small_config
    outdir = tmp_path / "out"
    run_example(script, [*args, "--config", config, "--ckpt", ckpt, "--outdir", str(outdir)], workdir, monkeypatch)
    check_figures(outdir, expected, figsize)
    if "automaticmaskgeneration" in script:
        lines = capsys.readouterr().out.splitlines()
        assert lines and lines[0].isdigit()  # the number of masks, then the keys of a record if there is one
        if int(lines[0]) > 0:
            for key in ("segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"):
                assert key in lines[1]


def test_every_example_is_tested():
    scripts = {f"{kind}/{p.name}" for kind in ("image", "video") for p in (EXAMPLES / kind).glob("*.py")}
    assert scripts == set(CASES)


def test_official_variant_by_name(workdir, random_checkpoint, tmp_path, monkeypatch):
    """``--model`` picks an official variant (its 1024 config) instead of ``--config``."""
    outdir = tmp_path / "out"
    ckpt = random_checkpoint("sam2.1_hiera_tiny")
    args = ["--model", "sam2.1_hiera_tiny", "--ckpt", ckpt, "--outdir", str(outdir)]
    run_example("image/specifyingaspecificobjectwithabox.py", args, workdir, monkeypatch)
    check_figures(outdir, ["output_mask_1.png"], None)


def test_example_runs_as_a_command(workdir, small_config, tmp_path):
    config, ckpt = small_config
    outdir = tmp_path / "out"
    script = EXAMPLES / "video" / "segmenttrackoneobject_step1.py"
    command = [sys.executable, str(script), "--config", config, "--ckpt", ckpt, "--outdir", str(outdir)]
    subprocess.run(command, cwd=workdir, check=True, timeout=300)
    check_figures(outdir, ["output_step1.png"], (12, 8))


def test_bad_refine_frame_is_a_usage_error(workdir, tmp_path, monkeypatch, capsys):
    args = ["--refine-frame", str(NUM_FRAMES), "--outdir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        run_example("video/segmenttrackoneobject_step4.py", args, workdir, monkeypatch)
    assert info.value.code == 2
    assert f"--refine-frame {NUM_FRAMES} is not a frame" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
