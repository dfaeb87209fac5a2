"""``amg`` on the local engine and on a real local Ray cluster: the same bytes, resume, bad inputs, URIs, extras."""

import json
import sys

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.samv2.batch import run_amg
from ssseg.samv2.cli import main
from tests.conftest import make_test_image
from tests.samv2.batch.conftest import files

FAST = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
GENERATOR = dict(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0)
GOOD_KEYS = ["a", "sub1/x", "sub2/deep/g", "sub2/x_jpg", "sub2/x_png"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Nested folders, same-named images in two folders, same stem twice in one, RGBA PNG, grayscale JPEG, one
    corrupt file and a non-image."""
    root = tmp_path_factory.mktemp("tree") / "in"
    for folder in ("sub1", "sub2/deep"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(make_test_image(40, 56, seed=1)).save(root / "a.jpg")
    rgba = np.dstack([make_test_image(36, 48, seed=2), np.linspace(0, 255, 36 * 48).reshape(36, 48).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub1" / "x.png")
    Image.fromarray(make_test_image(36, 48, seed=3)).save(root / "sub2" / "x.png")
    Image.fromarray(make_test_image(32, 40, seed=4)).save(root / "sub2" / "x.jpg")
    Image.fromarray(make_test_image(44, 40, seed=5)[..., 0], "L").save(root / "sub2" / "deep" / "g.jpg")
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


def model_args(small_config):
    config, ckpt = small_config
    return ["--config", config, "--ckpt", ckpt]


def errors_of(folder):
    return [json.loads(line) for line in (folder / "errors.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def local_run(tree, small_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    code = main(["amg", str(tree), "--out", str(out), *FAST, *model_args(small_config)])
    return code, out


def test_local_engine_walks_the_tree_and_records_the_corrupt_file(local_run, tree, capsys):
    code, out = local_run
    assert code == 1, "a failed image makes the exit code 1"
    expected = sorted([f"{k}.json" for k in GOOD_KEYS] + [f"{k}_overlay.png" for k in GOOD_KEYS] + ["errors.jsonl"])
    assert sorted(files(out)) == expected, sorted(files(out))
    errors = errors_of(out)
    assert len(errors) == 1 and errors[0]["input"] == str(tree / "bad.jpg"), errors
    assert errors[0]["reason"].startswith(f"cannot read image {tree / 'bad.jpg'}"), errors
    gray = json.loads((out / "sub2" / "deep" / "g.json").read_text())
    assert gray["image"] == {"file_name": "g.jpg", "height": 44, "width": 40}, gray["image"]
    rgba = json.loads((out / "sub1" / "x.json").read_text())
    assert rgba["image"] == {"file_name": "x.png", "height": 36, "width": 48} and rgba["annotations"], rgba["image"]


def test_ray_engine_writes_the_same_bytes(local_run, tree, small_config, ray_cluster, tmp_path, capsys):
    """file:// URIs in and out, two actors, batches of two; torch threads as in this process (CPU kernels reduce in
    an order that depends on the thread count, so equal bytes need equal threads)."""
    _, local_out = local_run
    out = tmp_path / "ray"
    args = ["amg", f"file://{tree}", "--out", f"file://{out}", *FAST, *model_args(small_config), "--engine", "ray"]
    args += ["--overlays", "--workers", "2", "--batch-size", "2", "--threads", str(torch.get_num_threads())]
    capsys.readouterr()
    assert main(args) == 1, "the corrupt image fails on Ray too"
    captured = capsys.readouterr()
    assert "processed 5, skipped 0, failed 1" in captured.out, captured.out
    assert "cannot read image" in captured.err and "errors.jsonl" in captured.err, captured.err
    ray_files, local_files = files(out), files(local_out)
    assert sorted(ray_files) == sorted(local_files), (sorted(ray_files), sorted(local_files))
    differ = [n for n in local_files if n != "errors.jsonl" and ray_files[n] != local_files[n]]
    assert not differ, f"ray output differs from local output in {differ}"
    assert errors_of(out)[0]["input"] == f"file://{tree / 'bad.jpg'}", errors_of(out)


def test_resume_after_a_ray_run_stopped_midway(tree, small_config, ray_cluster, tmp_path, monkeypatch):
    """The Ray driver stops after its first result (as on Ctrl-C); no half file is left under an output name. The
    rerun (local engine: resume is decided before the engine runs) processes exactly the images without a JSON,
    including one whose JSON write was cut off (only its temporary file exists), and skips the rest."""
    import tqdm

    config, ckpt = small_config
    out = tmp_path / "out"
    kwargs = dict(config=config, ckpt=ckpt, progress=True, **GENERATOR)
    original = tqdm.tqdm.update

    def stop(self, n=1):
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm.tqdm, "update", stop)
    with pytest.raises(KeyboardInterrupt):
        run_amg(str(tree), str(out), engine="ray", threads=torch.get_num_threads(), **kwargs)
    monkeypatch.setattr(tqdm.tqdm, "update", original)
    written = files(out)
    done = sorted(n[: -len(".json")] for n in written if n.endswith(".json"))
    assert 1 <= len(done) < len(GOOD_KEYS), f"the stopped run should have done some but not all images: {done}"
    assert all(json.loads(written[f"{k}.json"])["annotations"] for k in done), "a JSON is complete or absent"
    assert not [n for n in written if not n.endswith(".json")], (
        f"overlays off by default on Ray, no temp file: {written}"
    )
    # a JSON write cut off midway leaves only its temporary file, which is not an output name
    (out / "sub2" / "deep").mkdir(parents=True, exist_ok=True)
    (out / "sub2" / "deep" / "g.json").unlink(missing_ok=True)
    (out / "sub2" / "deep" / "g.tmp4242.json").write_text('{"image": {"file_name": "g.j')
    missing = sorted(set(GOOD_KEYS) - set(done) | {"sub2/deep/g"})
    before = {k: (out / f"{k}.json").read_bytes() for k in GOOD_KEYS if k not in missing}

    summary = run_amg(str(tree), str(out), engine="local", overlays=False, **kwargs)
    assert (summary.processed, summary.skipped, summary.failed) == (len(missing), len(before), 1), summary
    assert all((out / f"{k}.json").read_bytes() == v for k, v in before.items()), "a done image was rewritten"
    assert all(json.loads((out / f"{k}.json").read_text())["annotations"] for k in missing)


def test_object_store_uri_end_to_end_on_the_local_engine(local_run, tree, small_config, capsys):
    """memory:// in and out (an object store without rename: each file is one complete write), then a resumed run
    that skips everything; the bytes equal the local folder run's."""
    _, local_out = local_run
    fs = fsspec.filesystem("memory")
    for name in ["a.jpg", "sub1/x.png"]:
        fs.pipe(f"/amgtest/src/{name}", (tree / name).read_bytes())
    try:
        args = ["amg", "memory://amgtest/src", "--out", "memory://amgtest/dst", *FAST, *model_args(small_config)]
        assert main(args) == 0, capsys.readouterr().err
        written = sorted(fs.find("/amgtest/dst"))
        expected = ["a.json", "a_overlay.png", "sub1/x.json", "sub1/x_overlay.png"]
        assert written == [f"/amgtest/dst/{n}" for n in expected], written
        for name in expected:
            assert fs.cat_file(f"/amgtest/dst/{name}") == (local_out / name).read_bytes(), name
        capsys.readouterr()
        assert main(args) == 0 and "all 2 image(s) already done" in capsys.readouterr().out
    finally:
        fs.rm("/amgtest", recursive=True)


def test_missing_ray_extra_is_one_line(tree, small_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without ray looks like to import
    code = main(["amg", str(tree), "--out", str(tmp_path / "o"), "--engine", "ray", *model_args(small_config)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--engine ray needs the optional package 'ray'" in err and "pip install 'ssseg[ray]'" in err, err
    assert not (tmp_path / "o").exists(), "nothing is written before the engine is known to work"
