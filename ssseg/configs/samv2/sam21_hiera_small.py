"""SAM 2.1 Hiera-S: sam2.1_hiera_small."""

import copy

from ssseg.configs.samv2.base_sam21 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
SAMV2_CFG["backbone"].update({"stages": [1, 2, 11, 2], "global_att_blocks": [7, 10, 13]})
