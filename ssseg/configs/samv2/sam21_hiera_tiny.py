"""SAM 2.1 Hiera-T: sam2.1_hiera_tiny."""

import copy

from ssseg.configs.samv2.base_sam21 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
