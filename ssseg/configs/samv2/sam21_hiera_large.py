"""SAM 2.1 Hiera-L: sam2.1_hiera_large."""

import copy

from ssseg.configs.samv2.base_sam21 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
SAMV2_CFG["backbone"].update(
    {
        "embed_dim": 144,
        "num_heads": 2,
        "stages": [2, 6, 36, 4],
        "global_att_blocks": [23, 33, 43],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 16, 8],
    }
)
SAMV2_CFG["neck"]["backbone_channel_list"] = [1152, 576, 288, 144]
