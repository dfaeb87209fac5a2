"""SAM 2 Hiera-S: sam2_hiera_small."""

import copy

from ssseg.configs.samv2.base_sam2 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_small.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
SAMV2_CFG["backbone"].update({"stages": [1, 2, 11, 2], "global_att_blocks": [7, 10, 13]})
