"""SAM 2.1 (2024-09-28) base config: SAM 2 plus a spatial no-object embedding and signed, projected
temporal encodings of the object pointers."""

import copy

from ssseg.configs.samv2.base_sam2 import SAMV2_CFG as _SAM2_CFG

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"

SAMV2_CFG = copy.deepcopy(_SAM2_CFG)
SAMV2_CFG.update(
    {
        "no_obj_embed_spatial": True,
        "add_tpos_enc_to_obj_ptrs": True,
        "proj_tpos_enc_in_obj_ptrs": True,
        "use_signed_tpos_enc_to_obj_ptrs": True,
    }
)
