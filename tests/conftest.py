"""Shared fixtures: images made in code, random-weight checkpoints, and the official sam2 oracle."""

import os

import numpy as np
import pytest
import torch

# deterministic CPU numerics, and the same thread count on both sides of every comparison
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

OFFICIAL_YAML = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def make_test_image(height: int = 1200, width: int = 1800, seed: int = 0) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB image with a gradient background, a few solid shapes and noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xs / width * 120 + 40, ys / height * 100 + 60, (xs + ys) / (width + height) * 80 + 30], -1)
    for _ in range(6):
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
        ry, rx = rng.uniform(0.06, 0.2) * height, rng.uniform(0.06, 0.2) * width
        color = rng.uniform(0, 255, size=3)
        if rng.random() < 0.5:
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
        else:
            inside = (np.abs(ys - cy) <= ry) & (np.abs(xs - cx) <= rx)
        image[inside] = color
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def test_image() -> np.ndarray:
    return make_test_image()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """``random_checkpoint(variant, seed=0) -> path`` of a checkpoint with deterministic random weights."""
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import write_random_checkpoint

    cache = {}
    folder = tmp_path_factory.mktemp("ckpts")

    def make(variant: str, seed: int = 0) -> str:
        if (variant, seed) not in cache:
            model = buildsamv2(variant, loadweights=False)
            path = str(folder / f"{variant}_{seed}.pt")
            write_random_checkpoint(model, path, seed=seed)
            cache[(variant, seed)] = path
        return cache[(variant, seed)]

    return make


def build_official(variant: str, ckpt_path: str, video: bool = False, device: str = "cpu", **kwargs):
    """The official sam2 model of ``variant`` with the checkpoint loaded strictly (the test oracle; also what the
    benchmarks compare with). ``kwargs`` go to sam2's builder, e.g. ``hydra_overrides_extra``."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    builder = build_sam2_video_predictor if video else build_sam2
    model = builder(OFFICIAL_YAML[variant], None, device=device, **kwargs)
    state = torch.load(ckpt_path, map_location=device, weights_only=True)["model"]
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def small_model():
    """SAM 2.1 tiny at image_size 256 with random weights: fast shape and input-validation tests."""
    from ssseg.configs.samv2 import getconfig
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict

    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg["image_size"] = 256
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    return model


SMALL_CONFIG = """import copy
from ssseg.configs.samv2.sam21_hiera_tiny import SAMV2_CFG as _BASE
SAMV2_CFG = copy.deepcopy(_BASE)
SAMV2_CFG["image_size"] = 256
"""


@pytest.fixture(scope="session")
def small_config(tmp_path_factory, small_model):
    """``(config file, checkpoint file)`` of :func:`small_model` for ``--config`` / ``--ckpt`` (CLI, examples)."""
    folder = tmp_path_factory.mktemp("small_config")
    config = folder / "small.py"
    config.write_text(SMALL_CONFIG)
    ckpt = folder / "small.pt"
    torch.save({"model": small_model.state_dict()}, ckpt)
    return str(config), str(ckpt)


# ------------------------------------------------------------------------------------------ hypothesis (issue 12)
# Property-based tests (tests/samv2/test_properties_*.py): "ci" is the default, sized for seconds per entry point;
# run `pytest --hypothesis-profile=thorough tests/samv2/test_properties_*.py` for a long local search.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is in the test extra; without it only the property tests cannot run
    settings = None
if settings is not None:
    _SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", max_examples=12, deadline=None, suppress_health_check=_SLOW_OK, derandomize=True)
    settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)
    settings.load_profile("ci")
