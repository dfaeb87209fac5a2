"""SAM 2 Hiera-B+: sam2_hiera_base_plus."""

import copy

from ssseg.configs.samv2.base_sam2 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
SAMV2_CFG["backbone"].update(
    {
        "embed_dim": 112,
        "num_heads": 2,
        "stages": [2, 3, 16, 3],
        "global_att_blocks": [12, 16, 20],
        "window_pos_embed_bkg_spatial_size": [14, 14],
    }
)
SAMV2_CFG["neck"]["backbone_channel_list"] = [896, 448, 224, 112]
