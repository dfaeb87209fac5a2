"""SAM 2 Hiera-T: sam2_hiera_tiny."""

import copy

from ssseg.configs.samv2.base_sam2 import SAMV2_CFG as _BASE_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt"

SAMV2_CFG = copy.deepcopy(_BASE_CFG)
