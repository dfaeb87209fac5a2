"""The export of all 8 variants at image size 256 (random weights): files, key shapes, one run against PyTorch.

Minutes per variant on 2 CPU cores (mostly tracing), so it runs with ``SSSEG_SLOW_TESTS=1``; CI exports the small
model once (tests/samv2/export/conftest.py). Export times measured are in docs/export.md.
"""

import json
import os
import time

import numpy as np
import pytest
import torch

from ssseg.configs.samv2 import VARIANTS, getconfig
from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor, buildsamv2
from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict
from ssseg.samv2.export import export_model
from tests.conftest import make_test_image


@pytest.mark.skipif(not os.environ.get("SSSEG_SLOW_TESTS"), reason="minutes per variant; SSSEG_SLOW_TESTS=1")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_exports_and_runs(variant, tmp_path):
    cfg, _ = getconfig(variant)
    cfg["image_size"] = 256
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    start = time.perf_counter()
    times = export_model(model, str(tmp_path), name=variant)
    print(f"{variant}: export {time.perf_counter() - start:.1f} s {times}")
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["options"]["hidden_dim"] == model.hidden_dim
    image = make_test_image(240, 320)
    ours, ref = SAMV2ImagePredictor(onnxdir=str(tmp_path)), SAMV2ImagePredictor(model=model)
    ours.setimage(image)
    ref.setimage(image)
    embed = ours.getimageembedding()
    assert tuple(embed.shape) == (1, model.hidden_dim, 16, 16), f"{variant}: embedding {tuple(embed.shape)}"
    diff = (embed - ref.getimageembedding()).abs().max().item()
    assert diff <= 1e-4, f"{variant}: embedding differs by {diff:.3g}"
    click = dict(point_coords=np.array([[100, 120]]), point_labels=np.array([1]), return_logits=True)
    (logits, scores, low_res), (ref_logits, ref_scores, _) = ours.predict(**click), ref.predict(**click)
    assert logits.shape == (3, 240, 320) and low_res.shape == (3, 64, 64), f"{variant}: {logits.shape}"
    assert np.abs(logits - ref_logits).max() <= 1e-3, f"{variant}: logits differ"
    assert np.abs(scores - ref_scores).max() <= 1e-4, f"{variant}: scores {scores} vs {ref_scores}"
    torch.testing.assert_close(torch.as_tensor(scores), torch.as_tensor(ref_scores), atol=1e-4, rtol=0)
