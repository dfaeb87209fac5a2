"""Configs, registries and model building: all 8 official variants have the official state-dict layout."""

import copy

import pytest
import torch

from ssseg.configs.samv2 import VARIANTS, getconfig, loadconfigfile
from ssseg.modules.models.backbones import BACKBONES, BuildBackbone
from ssseg.modules.models.segmentors import SEGMENTORS, BuildSegmentor
from ssseg.modules.models.segmentors.samv2 import SAMV2, SAMV2ImagePredictor, buildsamv2
from tests.conftest import OFFICIAL_YAML


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_layout_matches_official(variant):
    from sam2.build_sam import build_sam2

    ours = buildsamv2(variant, loadweights=False).state_dict()
    official = build_sam2(OFFICIAL_YAML[variant], None, device="cpu").state_dict()
    missing = sorted(set(official) - set(ours))
    unexpected = sorted(set(ours) - set(official))
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    wrong = [(k, tuple(ours[k].shape), tuple(v.shape)) for k, v in official.items() if ours[k].shape != v.shape]
    assert not wrong, f"shape mismatches (key, ours, official): {wrong[:10]}"


def test_registry_builds_and_names_known_types():
    cfg, _ = getconfig("sam2.1_hiera_tiny")
    frozen = copy.deepcopy(cfg)
    model = BuildSegmentor(cfg)
    assert isinstance(model, SAMV2)
    assert cfg == frozen, "building must not mutate the caller's config"
    trunk = BuildBackbone(cfg["backbone"])
    assert type(trunk).__name__ == "Hiera" and cfg == frozen
    with pytest.raises(KeyError, match=r"segmentor registry: unknown type 'Nope'.*SAMV2"):
        BuildSegmentor({"type": "Nope"})
    with pytest.raises(KeyError, match=r"backbone registry.*Hiera"):
        BuildBackbone({"type": "ResNet"})
    with pytest.raises(TypeError, match="'type' key"):
        BuildSegmentor({"image_size": 1024})
    assert set(SEGMENTORS.modules) == {"SAMV2"} and set(BACKBONES.modules) == {"Hiera"}


def test_sam21_differs_from_sam2_only_where_documented():
    sam2, url2 = getconfig("sam2_hiera_tiny")
    sam21, url21 = getconfig("sam2.1_hiera_tiny")
    diff = {k for k in sam21 if sam21[k] != sam2.get(k)}
    assert diff == {
        "no_obj_embed_spatial",
        "add_tpos_enc_to_obj_ptrs",
        "proj_tpos_enc_in_obj_ptrs",
        "use_signed_tpos_enc_to_obj_ptrs",
    }
    assert "/072824/sam2_hiera_tiny.pt" in url2 and "/092824/sam2.1_hiera_tiny.pt" in url21


def test_unknown_variant_and_bad_config_file(tmp_path):
    with pytest.raises(ValueError, match="unknown SAM 2 variant 'sam3'.*sam2.1_hiera_tiny"):
        buildsamv2("sam3", loadweights=False)
    with pytest.raises(FileNotFoundError, match="nowhere.py"):
        loadconfigfile(str(tmp_path / "nowhere.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("X = 1\n")
    with pytest.raises(ValueError, match="SAMV2_CFG"):
        loadconfigfile(str(bad))


def test_config_file_with_changed_image_size_builds(tmp_path):
    path = tmp_path / "small_input.py"
    path.write_text(
        "import copy\nfrom ssseg.configs.samv2.sam21_hiera_tiny import SAMV2_CFG as BASE\n"
        "SAMV2_CFG = copy.deepcopy(BASE)\nSAMV2_CFG['image_size'] = 512\n"
    )
    cfg, url = loadconfigfile(str(path))
    assert url is None and cfg["image_size"] == 512
    model = buildsamv2(cfg, loadweights=False)
    assert model.sam_image_embedding_size == 32
    assert model.sam_prompt_encoder.mask_input_size == (128, 128)


def test_model_selection_errors(random_checkpoint):
    with pytest.raises(ValueError, match="choose exactly one model.*got none"):
        SAMV2ImagePredictor()
    with pytest.raises(ValueError, match=r"choose exactly one model.*use_default_samv2_t.*use_default_samv21_l"):
        SAMV2ImagePredictor(use_default_samv2_t=True, use_default_samv21_t=True)
    cfg, _ = getconfig("sam2.1_hiera_tiny")
    with pytest.raises(ValueError, match="needs ckptpath"):
        SAMV2ImagePredictor(samv2_cfg=cfg)
    # a checkpoint of another variant names the mismatching keys
    with pytest.raises(Exception, match="no_obj_embed_spatial|obj_ptr_tpos_proj"):
        SAMV2ImagePredictor(use_default_samv21_t=True, ckptpath=random_checkpoint("sam2_hiera_tiny"))


def test_one_model_serves_several_predictors(random_checkpoint):
    model = buildsamv2("sam2.1_hiera_tiny", ckptpath=random_checkpoint("sam2.1_hiera_tiny"))
    first, second = SAMV2ImagePredictor(model=model), SAMV2ImagePredictor(model=model)
    assert first.model is second.model is model
    assert not any(p.requires_grad and p.grad is not None for p in model.parameters())
    assert all(not m.training for m in model.modules())
    assert torch.equal(model.no_obj_embed_spatial, first.model.no_obj_embed_spatial)
