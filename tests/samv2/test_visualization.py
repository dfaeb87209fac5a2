"""Tests for the matplotlib helpers of the SAM 2 tutorials (``samv2/visualization.py``), run headless."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ssseg.modules.models.segmentors.samv2 import visualization as vis  # noqa: E402


def disk(height: int = 40, width: int = 60, cy: int = 20, cx: int = 30, radius: int = 12) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2


def rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major flattened mask, starting with a run of zeros."""
    flat = mask.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def coco_string(counts: list) -> bytes:
    """Compress run lengths like pycocotools' ``rleToString``, written independently of the decoder under test."""
    out = bytearray()
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        while True:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            out.append((chunk | (0x20 if more else 0)) + 48)
            if not more:
                break
    return bytes(out)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_backend_is_non_interactive_here():
    assert not vis._is_interactive_backend()


@pytest.mark.parametrize(
    "mask",
    [disk(), disk()[None], disk()[None, None], disk().astype(np.float32), torch.from_numpy(disk())[None]],
    ids=["hw", "1hw", "11hw", "float", "torch"],
)
def test_showmask_accepts_tutorial_shapes(mask):
    fig, ax = plt.subplots()
    vis.showmask(mask, ax, borders=False)
    overlay = ax.images[-1].get_array()
    assert overlay.shape == (40, 60, 4)
    alpha = np.asarray(overlay[..., 3])
    assert np.allclose(alpha[disk()], 0.6) and np.all(alpha[~disk()] == 0)
    assert np.allclose(overlay[20, 30, :3], vis.DEFAULT_MASK_COLOR)


def test_showmask_object_colour_and_borders():
    fig, ax = plt.subplots()
    vis.showmask(disk(), ax, obj_id=3, borders=True)
    overlay = np.asarray(ax.images[-1].get_array())
    assert np.allclose(overlay[20, 30], [*plt.get_cmap("tab10")(3)[:3], 0.6])  # interior keeps the object colour
    assert np.any(np.all(np.isclose(overlay, [1.0, 1.0, 1.0, 0.5]), axis=-1))  # white contour drawn
    vis.showmask(disk(), ax, obj_id=13)  # ids wrap around the 10 tab10 colours
    assert np.allclose(np.asarray(ax.images[-1].get_array())[20, 30, :3], plt.get_cmap("tab10")(3)[:3])
    vis.showmask(disk(), ax, random_color=True)
    assert len(ax.images) == 3


def test_showmask_rejects_bad_shapes():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="H x W"):
        vis.showmask(np.zeros((2, 40, 60), bool), ax)


def test_showpoints_and_showbox():
    fig, ax = plt.subplots()
    coords = np.array([[10, 12], [30, 5], [40, 20]])
    vis.showpoints(coords, np.array([1, 0, 1]), ax)
    positive, negative = ax.collections
    assert np.array_equal(positive.get_offsets(), coords[[0, 2]])
    assert np.array_equal(negative.get_offsets(), coords[[1]])
    assert np.allclose(positive.get_facecolor()[0][:3], matplotlib.colors.to_rgb("green"))
    assert np.allclose(negative.get_facecolor()[0][:3], matplotlib.colors.to_rgb("red"))
    vis.showbox(np.array([5, 6, 25, 30]), ax)
    box = ax.patches[-1]
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (5, 6, 20, 24)
    with pytest.raises(ValueError, match="labels"):
        vis.showpoints(coords, [1, 0], ax)
    with pytest.raises(ValueError, match="4 values"):
        vis.showbox([1, 2, 3], ax)


def test_showmasks_saves_files_headless_without_showing(tmp_path, monkeypatch):
    def refuse_show(*args, **kwargs):
        raise AssertionError("plt.show() must not be called with a non-interactive backend")

    monkeypatch.setattr(plt, "show", refuse_show)
    image = np.zeros((40, 60, 3), np.uint8)
    masks = np.stack([disk(), disk(radius=5), ~disk()]).astype(np.float32)
    figures_before = len(plt.get_fignums())
    paths = vis.showmasks(
        image,
        masks,
        np.array([0.91, 0.52, 0.13]),
        point_coords=np.array([[30, 20]]),
        input_labels=np.array([1]),
        box_coords=np.array([10, 5, 50, 35]),
        savedir=tmp_path / "figs",
    )
    assert paths == [str(tmp_path / "figs" / f"output_mask_{i}.png") for i in (1, 2, 3)]
    assert all((tmp_path / "figs" / f"output_mask_{i}.png").stat().st_size > 0 for i in (1, 2, 3))
    assert len(plt.get_fignums()) == figures_before  # every figure was closed
    monkeypatch.chdir(tmp_path)
    assert vis.showmasks(image, masks[:1], [0.5]) == [str(tmp_path / "output_mask_1.png")]


def test_showmasks_shows_with_an_interactive_backend(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(vis, "_is_interactive_backend", lambda: True)
    monkeypatch.setattr(plt, "show", lambda *a, **k: titles.append(plt.gca().get_title()))
    monkeypatch.chdir(tmp_path)
    masks = np.stack([disk(), disk(radius=5)])
    assert vis.showmasks(np.zeros((40, 60, 3), np.uint8), masks, [0.9, 0.1234]) == []
    assert titles == ["Mask 1, Score: 0.900", "Mask 2, Score: 0.123"]
    assert list(tmp_path.iterdir()) == []
    # An explicit savedir still saves instead of showing.
    assert len(vis.showmasks(np.zeros((40, 60, 3), np.uint8), masks, [0.9, 0.1], savedir=tmp_path)) == 2
    assert len(titles) == 2


def test_showmasks_rejects_inconsistent_inputs():
    image, masks = np.zeros((40, 60, 3), np.uint8), np.stack([disk(), disk()])
    with pytest.raises(ValueError, match="2 masks but 1 scores"):
        vis.showmasks(image, masks, [0.5])
    with pytest.raises(ValueError, match="input_labels"):
        vis.showmasks(image, masks, [0.5, 0.4], point_coords=np.array([[1, 2]]))


def test_decode_rle_uncompressed_and_compressed():
    rng = np.random.default_rng(0)
    masks = [disk(), ~disk(), rng.random((17, 23)) > 0.5, np.zeros((5, 7), bool), np.ones((5, 7), bool)]
    for mask in masks:
        rle = rle_uncompressed(mask)
        assert np.array_equal(vis.decode_rle(rle), mask)
        compressed = coco_string(rle["counts"])
        assert np.array_equal(vis.decode_rle({"size": rle["size"], "counts": compressed}), mask)
        assert np.array_equal(vis.decode_rle({"size": rle["size"], "counts": compressed.decode()}), mask)
    with pytest.raises(ValueError, match="sum to h \\* w"):
        vis.decode_rle({"size": [4, 4], "counts": [3, 4]})


def test_decode_rle_matches_official_encoder():
    amg = pytest.importorskip("sam2.utils.amg")
    masks = np.random.default_rng(1).random((3, 21, 34)) > 0.6
    for rle, mask in zip(amg.mask_to_rle_pytorch(torch.from_numpy(masks)), masks):
        assert np.array_equal(vis.decode_rle(rle), mask)


@pytest.mark.parametrize("encoding", ["binary", "rle", "coco"])
def test_showanns_draws_largest_first(encoding):
    big, small = disk(radius=15), disk(radius=5)
    encode = {
        "binary": lambda m: m,
        "rle": rle_uncompressed,
        "coco": lambda m: {"size": list(m.shape), "counts": coco_string(rle_uncompressed(m)["counts"])},
    }[encoding]
    anns = [{"segmentation": encode(small), "area": int(small.sum())}, {"segmentation": encode(big)}]
    plt.figure()
    plt.imshow(np.zeros((40, 60, 3), np.uint8))
    vis.showanns(anns)
    overlay = np.asarray(plt.gca().images[-1].get_array())
    assert overlay.shape == (40, 60, 4)
    assert np.all(overlay[~big, 3] == 0) and np.allclose(overlay[20, 30, 3], 0.5)
    # The small mask lies inside the big one and is drawn last, so its colour shows in the centre.
    assert not np.allclose(overlay[20, 30, :3], overlay[20, 42, :3])
    vis.showanns([])  # nothing to draw is not an error


def test_showanns_rejects_bad_annotations():
    with pytest.raises(ValueError, match="segmentation"):
        vis.showanns([{"area": 3}])
    with pytest.raises(ValueError, match="annotation 1"):
        vis.showanns([{"segmentation": disk()}, {"segmentation": np.zeros((3, 3), bool)}])
