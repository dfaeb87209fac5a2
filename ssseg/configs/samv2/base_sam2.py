"""SAM 2 (2024-07-28) base config: Hiera-T trunk. Each size file overrides only what differs.

The keys mirror the options of the official yaml configs; every option that changes the computation is here.
"""

CKPT_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt"

SAMV2_CFG = {
    "type": "SAMV2",
    # image encoder: Hiera trunk (through the backbone registry) + FPN neck
    "backbone": {
        "type": "Hiera",
        "embed_dim": 96,
        "num_heads": 1,
        "stages": [1, 2, 7, 2],
        "global_att_blocks": [5, 7, 9],
        "window_pos_embed_bkg_spatial_size": [7, 7],
        "window_spec": [8, 4, 14, 7],
    },
    "neck": {
        "position_encoding": {"num_pos_feats": 256, "normalize": True, "scale": None, "temperature": 10000},
        "d_model": 256,
        "backbone_channel_list": [768, 384, 192, 96],
        "fpn_top_down_levels": [2, 3],  # levels 0 and 1 use the backbone features directly
        "fpn_interp_model": "nearest",
    },
    "scalp": 1,
    # memory attention: self-attention + cross-attention to memories, both with axial RoPE
    "memory_attention": {
        "d_model": 256,
        "pos_enc_at_input": True,
        "num_layers": 4,
        "layer": {
            "activation": "relu",
            "dim_feedforward": 2048,
            "dropout": 0.1,
            "pos_enc_at_attn": False,
            "d_model": 256,
            "pos_enc_at_cross_attn_keys": True,
            "pos_enc_at_cross_attn_queries": False,
            "self_attention": {
                "rope_theta": 10000.0,
                "feat_sizes": [64, 64],  # only a default: the RoPE table follows the actual feature size
                "embedding_dim": 256,
                "num_heads": 1,
                "downsample_rate": 1,
                "dropout": 0.1,
            },
            "cross_attention": {
                "rope_theta": 10000.0,
                "feat_sizes": [64, 64],
                "rope_k_repeat": True,
                "embedding_dim": 256,
                "num_heads": 1,
                "downsample_rate": 1,
                "dropout": 0.1,
                "kv_in_dim": 64,
            },
        },
    },
    # memory encoder: mask downsampler + fuser (two ConvNeXt blocks) + channel compression to 64
    "memory_encoder": {
        "out_dim": 64,
        "position_encoding": {"num_pos_feats": 64, "normalize": True, "scale": None, "temperature": 10000},
        "mask_downsampler": {"kernel_size": 3, "stride": 2, "padding": 1},
        "fuser": {
            "layer": {"dim": 256, "kernel_size": 7, "padding": 3, "layer_scale_init_value": 1e-6, "use_dwconv": True},
            "num_layers": 2,
        },
    },
    "num_maskmem": 7,
    "image_size": 1024,
    "backbone_stride": 16,
    # scaled sigmoid on mask logits for the memory encoder; an input mask is used directly as the output mask
    "sigmoid_scale_for_mem_enc": 20.0,
    "sigmoid_bias_for_mem_enc": -10.0,
    "use_mask_input_as_output_without_sam": True,
    "directly_add_no_mem_embed": True,
    "no_obj_embed_spatial": False,
    # high-resolution feature maps in the SAM mask decoder
    "use_high_res_features_in_sam": True,
    # three masks on the first click of initial conditioning frames
    "multimask_output_in_sam": True,
    "iou_prediction_use_sigmoid": True,
    # object pointers (from SAM output tokens) cross-attended in memory attention
    "use_obj_ptrs_in_encoder": True,
    "add_tpos_enc_to_obj_ptrs": False,
    "proj_tpos_enc_in_obj_ptrs": False,
    "use_signed_tpos_enc_to_obj_ptrs": False,
    "only_obj_ptrs_in_the_past_for_eval": True,
    # object occlusion prediction
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    # multimask tracking
    "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "use_mlp_for_obj_ptr_proj": True,
    "compile_image_encoder": False,
}
