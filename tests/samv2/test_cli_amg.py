"""``ssseg-samv2 amg`` end to end on a small random-weight model: outputs, resuming a folder run, errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import SAMV2AutomaticMaskGenerator
from ssseg.modules.models.segmentors.samv2.masks import decode_rle
from ssseg.samv2.cli import main
from tests.conftest import make_test_image

FAST = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amg_images")
    for i, name in enumerate(["a.jpg", "b.png", "c.jpg"]):
        Image.fromarray(make_test_image(72, 96, seed=i)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def run(args, small_config):
    config, ckpt = small_config
    return main(["amg", *args, *FAST, "--config", config, "--ckpt", ckpt])


def test_single_image_writes_coco_json_and_overlay(images, small_config, tmp_path):
    out = tmp_path / "out"
    assert run([str(images / "b.png"), "--out", str(out)], small_config) == 0
    assert sorted(os.listdir(out)) == ["b.json", "b_overlay.png"]
    result = json.loads((out / "b.json").read_text())
    assert result["image"] == {"file_name": "b.png", "height": 72, "width": 96}
    annotations = result["annotations"]
    assert len(annotations) > 0
    for i, ann in enumerate(annotations):
        assert ann["id"] == i + 1
        assert set(ann) == {"id", "segmentation", "area", "bbox", "predicted_iou", "stability_score",
                            "point_coords", "crop_box"}  # fmt: skip
        assert ann["segmentation"]["size"] == [72, 96] and isinstance(ann["segmentation"]["counts"], str)
        mask = decode_rle(ann["segmentation"])
        assert mask.sum() == ann["area"] > 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    assert [a["area"] for a in annotations] == sorted((a["area"] for a in annotations), reverse=True)
    overlay = Image.open(out / "b_overlay.png")
    assert overlay.size == (96, 72) and overlay.mode == "RGB"


def test_interrupted_folder_run_resumes(images, small_config, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    calls = []
    original = SAMV2AutomaticMaskGenerator.generate

    def interrupt_on_second(self, image):
        calls.append(image.shape)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, image)

    monkeypatch.setattr(SAMV2AutomaticMaskGenerator, "generate", interrupt_on_second)
    assert run([str(images), "--out", str(out)], small_config) == 130
    # a.jpg is complete; nothing of b.png, and no temporary file is left behind
    assert sorted(os.listdir(out)) == ["a.json", "a_overlay.png"]
    a_json = (out / "a.json").read_bytes()
    # a stale overlay without its JSON (as if killed between the two writes) does not count as done
    Image.new("RGB", (2, 2)).save(out / "c_overlay.png")

    calls.clear()
    monkeypatch.setattr(SAMV2AutomaticMaskGenerator, "generate", lambda self, image: calls.append(1) or [])
    capsys.readouterr()
    assert run([str(images), "--out", str(out)], small_config) == 0
    assert len(calls) == 2 and "skipped 1 already done" in capsys.readouterr().out
    assert (out / "a.json").read_bytes() == a_json
    assert sorted(os.listdir(out)) == ["a.json", "a_overlay.png", "b.json", "b_overlay.png", "c.json", "c_overlay.png"]
    assert Image.open(out / "c_overlay.png").size == (96, 72)

    calls.clear()
    assert run([str(images), "--out", str(out)], small_config) == 0
    assert calls == [] and "already done" in capsys.readouterr().out
    assert run([str(images), "--out", str(out), "--overwrite"], small_config) == 0
    assert len(calls) == 3


def test_same_stem_images_do_not_collide(small_config, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(make_test_image(20, 30)).save(folder / "x.jpg")
    Image.fromarray(make_test_image(20, 30)).save(folder / "x.png")
    monkeypatch.setattr(SAMV2AutomaticMaskGenerator, "generate", lambda self, image: [])
    assert run([str(folder), "--out", str(tmp_path / "out")], small_config) == 0
    assert sorted(os.listdir(tmp_path / "out"))[:2] == ["x_jpg.json", "x_jpg_overlay.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing_dir"], "input not found: missing_dir"),
        (["EMPTY"], "no images"),
        (["IMAGE", "--crop-n-layers", "-1"], "--crop-n-layers must be"),  # the flag, not the Python argument (issue 12)
        (["IMAGE", "--box-nms-thresh", "2"], "--box-nms-thresh must be"),
    ],
)
def test_errors_are_one_line(images, small_config, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [str(images / "a.jpg") if a == "IMAGE" else str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    assert run([*args, "--out", str(tmp_path / "out")], small_config) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
