"""Tests of checkpoint download, caching and loading (no network: file:// URLs and a patched urlopen)."""

import http.client
import io
import os
import urllib.error

import pytest
import torch
from torch import nn

from ssseg.modules.models.segmentors.samv2 import checkpoint as ckpt
from ssseg.modules.models.segmentors.samv2.checkpoint import (
    CKPT_URLS,
    CheckpointDownloadError,
    CheckpointMismatchError,
    InvalidCheckpointError,
    cache_dir,
    describe_state_dict,
    download_checkpoint,
    load_checkpoint,
    load_state_dict_file,
    resolve_checkpoint,
)
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict, write_random_checkpoint


class Tiny(nn.Module):
    """A small model of our own for load tests."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(3, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))


class ShapeModel(nn.Module):
    """A module whose state dict has exactly the given keys and shapes (uninitialised storage)."""

    def __init__(self, shapes) -> None:
        super().__init__()
        for key, shape in shapes.items():
            owner = self
            *path, leaf = key.split(".")
            for name in path:
                if not hasattr(owner, name):
                    owner.add_module(name, nn.Module())
                owner = getattr(owner, name)
            owner.register_parameter(leaf, nn.Parameter(torch.empty(tuple(shape)), requires_grad=False))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SSSEG_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def source_ckpt(tmp_path):
    path = tmp_path / "src" / "tiny_model.pt"
    write_random_checkpoint(Tiny(), path, seed=3)
    return path


class FakeResponse(io.RawIOBase):
    """A urlopen() result that announces ``length`` bytes, yields ``chunks`` and then maybe raises."""

    def __init__(self, chunks, length, fail=None):
        self.chunks, self.fail = list(chunks), fail
        self.headers = {"Content-Length": str(length)}

    def read(self, size=-1):
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail is not None:
            raise self.fail
        return b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------------- URLs and cache


def test_ckpt_urls_are_the_eight_official_files():
    sizes = ["tiny", "small", "base_plus", "large"]
    expected = {f"sam2_hiera_{s}" for s in sizes} | {f"sam2.1_hiera_{s}" for s in sizes}
    assert set(CKPT_URLS) == expected
    for name, url in CKPT_URLS.items():
        folder = "092824" if name.startswith("sam2.1") else "072824"
        assert url == f"https://dl.fbaipublicfiles.com/segment_anything_2/{folder}/{name}.pt"


def test_cache_dir_defaults_to_torch_hub_and_env_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("SSSEG_CACHE_DIR", raising=False)
    assert cache_dir() == os.path.join(torch.hub.get_dir(), "checkpoints")
    monkeypatch.setenv("SSSEG_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == str(tmp_path / "elsewhere")


# ---------------------------------------------------------------------------------------------------------- download


def test_download_file_url_into_cache_then_reuse(cache, source_ckpt, monkeypatch):
    path = download_checkpoint(source_ckpt.as_uri(), progress=False)
    assert path == str(cache / "tiny_model.pt")
    assert open(path, "rb").read() == source_ckpt.read_bytes()
    assert sorted(os.listdir(cache)) == ["tiny_model.pt"]  # no temporary file left behind

    # The second call must not touch the network (or the source) at all.
    source_ckpt.unlink()

    def no_network(*args, **kwargs):
        raise AssertionError("urlopen called although the file is cached")

    monkeypatch.setattr(ckpt.urllib.request, "urlopen", no_network)
    assert download_checkpoint(source_ckpt.as_uri(), progress=False) == path


def test_download_with_progress_bar_and_explicit_dst_dir(tmp_path, source_ckpt):
    path = download_checkpoint(source_ckpt.as_uri(), dst_dir=tmp_path / "dst", progress=True)
    assert path == str(tmp_path / "dst" / "tiny_model.pt")
    assert load_state_dict_file(path).keys() == Tiny().state_dict().keys()


@pytest.mark.parametrize(
    "failure, match",
    [
        (ConnectionResetError("peer reset"), "peer reset"),
        (http.client.IncompleteRead(b"partial", 8000), "IncompleteRead|bytes read"),
        (TimeoutError("timed out"), "timed out"),
    ],
)
def test_interrupted_download_leaves_no_file(cache, monkeypatch, failure, match):
    url = CKPT_URLS["sam2.1_hiera_tiny"]

    def failing(*args, **kwargs):
        return FakeResponse([b"x" * 1000, b"y" * 1000], length=10_000, fail=failure)

    monkeypatch.setattr(ckpt.urllib.request, "urlopen", failing)
    with pytest.raises(CheckpointDownloadError, match=match):
        download_checkpoint(url, progress=False)
    assert not (cache / "sam2.1_hiera_tiny.pt").exists()
    assert os.listdir(cache) == []  # the partial temporary file was removed too


def test_truncated_download_is_an_error(cache, monkeypatch):
    url = CKPT_URLS["sam2_hiera_small"]
    monkeypatch.setattr(ckpt.urllib.request, "urlopen", lambda *a, **k: FakeResponse([b"z" * 100], length=5000))
    with pytest.raises(CheckpointDownloadError, match="100 of 5000 bytes"):
        download_checkpoint(url, progress=False)
    assert os.listdir(cache) == []


def test_offline_error_names_url_cache_path_and_ckptpath(cache, monkeypatch):
    url = CKPT_URLS["sam2.1_hiera_large"]

    def offline(*args, **kwargs):
        raise urllib.error.URLError(OSError("Network is unreachable"))

    monkeypatch.setattr(ckpt.urllib.request, "urlopen", offline)
    with pytest.raises(CheckpointDownloadError) as info:
        download_checkpoint(url, progress=False)
    message = str(info.value)
    assert url in message
    assert "Network is unreachable" in message
    assert str(cache / "sam2.1_hiera_large.pt") in message
    assert "ckptpath=" in message
    assert isinstance(info.value, RuntimeError)
    assert not (cache / "sam2.1_hiera_large.pt").exists()


def test_http_error_is_reported(cache, monkeypatch):
    url = "https://example.invalid/models/missing.pt"

    def not_found(*args, **kwargs):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(ckpt.urllib.request, "urlopen", not_found)
    with pytest.raises(CheckpointDownloadError, match="HTTP 404 Not Found") as info:
        download_checkpoint(url, progress=False)
    assert url in str(info.value)


def test_missing_file_url_is_a_download_error(cache, tmp_path):
    url = (tmp_path / "nowhere.pt").as_uri()
    with pytest.raises(CheckpointDownloadError, match="nowhere.pt"):
        download_checkpoint(url, progress=False)


@pytest.mark.parametrize("bad", ["ftp://host/x.pt", "just/a/path.pt", 42, "https://host/"])
def test_download_rejects_non_urls(bad, cache):
    with pytest.raises(ValueError):
        download_checkpoint(bad, progress=False)


# ----------------------------------------------------------------------------------------------------------- resolve


def test_resolve_local_path_url_and_name(cache, source_ckpt, monkeypatch):
    assert resolve_checkpoint(source_ckpt) == str(source_ckpt)
    assert resolve_checkpoint(source_ckpt.as_uri(), progress=False) == str(cache / "tiny_model.pt")

    seen = []

    def fake_download(url, dst_dir=None, progress=True):
        seen.append(url)
        return "/cached/file.pt"

    monkeypatch.setattr(ckpt, "download_checkpoint", fake_download)
    assert resolve_checkpoint("sam2.1_hiera_small") == "/cached/file.pt"
    assert seen == [CKPT_URLS["sam2.1_hiera_small"]]


def test_resolve_missing_local_path(tmp_path):
    missing = tmp_path / "no_such_checkpoint.pt"
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint.pt"):
        resolve_checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="directory"):
        resolve_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------------------ file loading


def test_load_state_dict_file_accepts_official_and_bare_layouts(tmp_path):
    sd = random_state_dict(Tiny().state_dict())
    torch.save({"model": sd}, tmp_path / "official.pt")
    torch.save(sd, tmp_path / "bare.pt")
    for name in ("official.pt", "bare.pt"):
        loaded = load_state_dict_file(tmp_path / name)
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_load_state_dict_file_rejects_non_checkpoints(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("definitely not a checkpoint")
    with pytest.raises(InvalidCheckpointError, match="notes.pt"):
        load_state_dict_file(text)

    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(InvalidCheckpointError, match="list"):
        load_state_dict_file(tmp_path / "list.pt")

    torch.save({"model": {"w": torch.zeros(2), "step": 3}}, tmp_path / "mixed.pt")
    with pytest.raises(InvalidCheckpointError, match="'step'"):
        load_state_dict_file(tmp_path / "mixed.pt")

    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_state_dict_file(tmp_path / "absent.pt")


class Payload:
    """An arbitrary pickled object: weights_only loading must refuse it rather than run anything."""


def test_load_state_dict_file_is_weights_only(tmp_path):
    path = tmp_path / "pickle.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(InvalidCheckpointError, match="weights_only"):
        load_state_dict_file(path)


# ------------------------------------------------------------------------------------------------- model loading


def test_load_checkpoint_round_trip(tmp_path):
    path = write_random_checkpoint(Tiny(), tmp_path / "tiny.pt", seed=1)
    model = Tiny()
    result = load_checkpoint(model, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    expected = random_state_dict(Tiny().state_dict(), seed=1)
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)


def test_load_checkpoint_strict_mismatch_lists_keys(tmp_path):
    sd = random_state_dict(Tiny().state_dict())
    sd.pop("norm.weight")
    sd["extra.bias"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(Tiny(), tmp_path / "bad.pt")
    message = str(info.value)
    assert "missing keys (1)" in message and "norm.weight" in message
    assert "unexpected keys (1)" in message and "extra.bias" in message
    assert "bad.pt" in message and "Hint" in message
    assert "Traceback" not in message

    model = Tiny()
    result = load_checkpoint(model, tmp_path / "bad.pt", strict=False)
    assert result.missing_keys == ["norm.weight"] and result.unexpected_keys == ["extra.bias"]


def test_load_checkpoint_shape_mismatch_is_an_error_even_non_strict(tmp_path):
    path = write_random_checkpoint(Tiny(width=4), tmp_path / "w4.pt")
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError, match=r"proj.weight: checkpoint \[4, 3\] vs model \[6, 3\]"):
            load_checkpoint(Tiny(width=6), path, strict=strict)


def test_load_checkpoint_rejects_non_module(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        load_checkpoint({"a": 1}, tmp_path / "x.pt")


# ------------------------------------------------------------------------- official SAM 2 keys (sam2 as oracle only)


@pytest.fixture(scope="module")
def official_shapes():
    build_sam = pytest.importorskip("sam2.build_sam")
    shapes = {}
    for cfg, name in [
        ("configs/sam2/sam2_hiera_t.yaml", "sam2_t"),
        ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_t"),
        ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_s"),
    ]:
        model = build_sam.build_sam2(cfg, None, device="cpu")
        shapes[name] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        del model
    return shapes


def test_describe_official_state_dicts(official_shapes):
    assert describe_state_dict(official_shapes["sam2_t"]).startswith("SAM 2 Hiera-T (tiny)")
    assert describe_state_dict(official_shapes["sam2.1_t"]).startswith("SAM 2.1 Hiera-T (tiny)")
    assert describe_state_dict(official_shapes["sam2.1_s"]).startswith("SAM 2.1 Hiera-S (small)")
    assert "not recognisably SAM 2" in describe_state_dict(Tiny().state_dict())


def test_sam2_checkpoint_into_sam21_model_names_the_keys(tmp_path, official_shapes):
    path = write_random_checkpoint(official_shapes["sam2_t"], tmp_path / "sam2_hiera_tiny.pt")
    model = ShapeModel(official_shapes["sam2.1_t"])
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, path)
    message = str(info.value)
    assert "missing keys (3)" in message
    for key in ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias"):
        assert key in message
    assert "unexpected keys" not in message
    assert "looks like SAM 2 Hiera-T (tiny)" in message
    assert "expects SAM 2.1 Hiera-T (tiny)" in message

    # The reverse direction reports the same keys as unexpected; non-strict loading accepts it.
    path21 = write_random_checkpoint(official_shapes["sam2.1_t"], tmp_path / "sam2.1_hiera_tiny.pt")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(3\)"):
        load_checkpoint(ShapeModel(official_shapes["sam2_t"]), path21)
    result = load_checkpoint(ShapeModel(official_shapes["sam2_t"]), path21, strict=False)
    assert sorted(result.unexpected_keys) == [
        "no_obj_embed_spatial",
        "obj_ptr_tpos_proj.bias",
        "obj_ptr_tpos_proj.weight",
    ]


def test_small_checkpoint_into_tiny_model_truncates_the_listing(tmp_path, official_shapes):
    path = write_random_checkpoint(official_shapes["sam2.1_s"], tmp_path / "small.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(ShapeModel(official_shapes["sam2.1_t"]), path)
    message = str(info.value)
    small, tiny = official_shapes["sam2.1_s"], official_shapes["sam2.1_t"]
    unexpected = len(small.keys() - tiny.keys())
    shapes = sum(small[k] != tiny[k] for k in small.keys() & tiny.keys())
    assert unexpected > 10 and shapes > 10
    assert f"missing keys ({len(tiny.keys() - small.keys())})" in message
    assert f"unexpected keys ({unexpected})" in message and f"... and {unexpected - 10} more" in message
    assert f"shape mismatches ({shapes})" in message and f"... and {shapes - 10} more" in message
    assert "image_encoder.trunk.blocks.12." in message
    assert "looks like SAM 2.1 Hiera-S (small)" in message


def test_matching_official_checkpoint_loads(tmp_path, official_shapes):
    path = write_random_checkpoint(official_shapes["sam2.1_t"], tmp_path / "ok.pt", seed=5)
    model = ShapeModel(official_shapes["sam2.1_t"])
    load_checkpoint(model, path)
    expected = random_state_dict(official_shapes["sam2.1_t"], seed=5)
    assert torch.equal(model.state_dict()["no_obj_ptr"], expected["no_obj_ptr"])
