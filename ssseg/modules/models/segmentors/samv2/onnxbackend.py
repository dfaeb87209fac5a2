"""SAM 2 on ONNX Runtime: the four exported networks behind the interface of :class:`~.samv2logic.SAMV2Logic`.

:class:`ONNXSAMV2` reads a folder written by ``ssseg-samv2 export`` and implements ``forward_image``,
``embed_image``, ``decode_prompts``, ``attend_memory`` and ``encode_memory`` with ONNX Runtime sessions; every
other step (prompt checks, transforms, memory selection, state, postprocessing) is the host code the PyTorch
predictors run. The predictors take it through ``onnxdir=DIR`` (see :func:`~.build.selectmodel`).

The names below are the contract between the export and this backend (docs/export.md lists shapes and dtypes).
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ....utils.optional import import_optional
from .samv2logic import DecoderOutput, MemoryBank, SAMV2Logic

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
FILES = {
    "image_encoder": "image_encoder.onnx",
    "prompt_decoder": "prompt_decoder.onnx",
    "memory_attention": "memory_attention.onnx",
    "memory_encoder": "memory_encoder.onnx",
}
IMAGE_ENCODER_INPUTS = ("image",)
IMAGE_ENCODER_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1", "vision_features", "vision_pos_enc")
PROMPT_DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
PROMPT_DECODER_OUTPUTS = (
    "low_res_masks_multi",
    "iou_scores_multi",
    "obj_ptr_multi",
    "low_res_masks_single",
    "iou_scores_single",
    "obj_ptr_single",
    "object_score_logits",
)
MEMORY_ATTENTION_INPUTS = (
    "curr",
    "curr_pos",
    "maskmem_features",
    "maskmem_pos_enc",
    "maskmem_tpos_index",
    "obj_ptrs",
    "obj_ptr_rel_pos",
)
MEMORY_ATTENTION_OUTPUTS = ("fused_features",)
MEMORY_ENCODER_INPUTS = ("pix_feat", "mask_for_mem", "object_score_logits")
MEMORY_ENCODER_OUTPUTS = ("maskmem_features", "maskmem_pos_enc")

# model options the host code reads (attributes of SAMV2), written to config.json by the export
HOST_OPTIONS = (
    "image_size",
    "backbone_stride",
    "hidden_dim",
    "mem_dim",
    "num_maskmem",
    "num_feature_levels",
    "use_high_res_features_in_sam",
    "sigmoid_scale_for_mem_enc",
    "sigmoid_bias_for_mem_enc",
    "binarize_mask_from_pts_for_mem_enc",
    "use_mask_input_as_output_without_sam",
    "max_cond_frames_in_attn",
    "directly_add_no_mem_embed",
    "multimask_output_in_sam",
    "multimask_min_pt_num",
    "multimask_max_pt_num",
    "multimask_output_for_tracking",
    "memory_temporal_stride_for_eval",
    "non_overlap_masks_for_mem_enc",
    "use_obj_ptrs_in_encoder",
    "max_obj_ptrs_in_encoder",
    "add_tpos_enc_to_obj_ptrs",
    "proj_tpos_enc_in_obj_ptrs",
    "use_signed_tpos_enc_to_obj_ptrs",
    "only_obj_ptrs_in_the_past_for_eval",
    "pred_obj_scores",
    "fixed_no_obj_ptr",
    "soft_no_obj_ptr",
)
# options a predictor may still change on a loaded folder: they only steer host code
HOST_ONLY_OPTIONS = {"binarize_mask_from_pts_for_mem_enc", "non_overlap_masks_for_mem_enc"}
# small learned tensors the host code uses directly (stored in config.json)
HOST_TENSORS = ("no_mem_embed", "no_mem_pos_enc", "no_obj_ptr", "mask_downsample.weight", "mask_downsample.bias")


def _numpy(x: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu").numpy().astype(dtype, copy=False))


class ONNXSAMV2(SAMV2Logic):
    """SAM 2 from an exported folder, run by ONNX Runtime (``providers``: its execution providers, CPU by default).

    ``extra_options`` may change the host-only options (``binarize_mask_from_pts_for_mem_enc``,
    ``non_overlap_masks_for_mem_enc``); ``apply_postprocessing`` must match the export (the decoder's dynamic
    multimask fallback is part of the graph).
    """

    def __init__(
        self,
        onnxdir: str,
        providers: Optional[Sequence[Any]] = None,
        apply_postprocessing: Optional[bool] = None,
        extra_options: Optional[Dict[str, Any]] = None,
    ) -> None:
        ort = import_optional("onnxruntime", "onnx", "running SAM 2 on ONNX Runtime (onnxdir=)")
        path = os.path.join(onnxdir, CONFIG_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{onnxdir!r} is not an exported SAM 2 folder: {CONFIG_FILE} is missing")
        with open(path) as f:
            config = json.load(f)
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {config.get('format_version')!r}; this ssseg reads version "
                f"{FORMAT_VERSION}: export the model again"
            )
        if apply_postprocessing is not None and bool(apply_postprocessing) != config["apply_postprocessing"]:
            raise ValueError(
                f"the folder was exported with apply_postprocessing={config['apply_postprocessing']} (part of the "
                f"decoder graph), the predictor asks for {apply_postprocessing}: export again or change the option"
            )
        self.config = config
        self.onnxdir = onnxdir
        for name in HOST_OPTIONS:
            setattr(self, name, config["options"][name])
        for name, value in (extra_options or {}).items():
            if name not in HOST_ONLY_OPTIONS:
                raise ValueError(f"option {name!r} is fixed by the export; only {sorted(HOST_ONLY_OPTIONS)} can change")
            setattr(self, name, value)
        self.mask_input_size = tuple(config["mask_input_size"])
        tensors = {
            name: torch.tensor(t["data"], dtype=torch.float32).reshape(t["shape"])
            for name, t in config["tensors"].items()
        }
        self.no_mem_embed = tensors["no_mem_embed"]
        self.no_mem_pos_enc = tensors["no_mem_pos_enc"]
        self.no_obj_ptr = tensors.get("no_obj_ptr")
        self._mask_downsample = (tensors.get("mask_downsample.weight"), tensors.get("mask_downsample.bias"))
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.sessions = {}
        for part, filename in FILES.items():
            file = os.path.join(onnxdir, filename)
            if not os.path.isfile(file):
                raise FileNotFoundError(f"{file} is missing: export the model again")
            self.sessions[part] = ort.InferenceSession(file, providers=self.providers)

    # ------------------------------------------------------------------ torch-module look-alikes
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # inputs and outputs cross the host as CPU arrays whatever the provider

    def eval(self) -> "ONNXSAMV2":
        return self

    def to(self, device: Any) -> "ONNXSAMV2":
        if torch.device(device).type != "cpu":
            raise ValueError(
                f"an ONNX Runtime model is placed by its providers ({self.providers}), not by device={device!r}"
            )
        return self

    def mask_downsample(self, masks: torch.Tensor) -> torch.Tensor:
        """The learned 4x4 / stride-4 convolution turning a mask input into decoder-scale logits."""
        weight, bias = self._mask_downsample
        if weight is None:
            raise RuntimeError("this export has no mask_downsample (use_obj_ptrs_in_encoder is off)")
        return F.conv2d(masks, weight, bias, stride=4)

    def _run(self, part: str, inputs: Dict[str, np.ndarray], outputs: Sequence[str]) -> List[torch.Tensor]:
        results = self.sessions[part].run(list(outputs), inputs)
        return [torch.from_numpy(r) for r in results]

    # ------------------------------------------------------------------ networks
    def _encode(self, images: torch.Tensor) -> List[torch.Tensor]:
        """All image-encoder outputs of a ``B x 3 x S x S`` batch (the graph takes one image at a time)."""
        runs = [
            self._run("image_encoder", {"image": _numpy(images[i : i + 1])}, IMAGE_ENCODER_OUTPUTS)
            for i in range(images.size(0))
        ]
        return [torch.cat(level) if len(runs) > 1 else level[0] for level in zip(*runs)]

    def forward_image(self, images: torch.Tensor) -> Dict[str, Any]:
        _, hr0, hr1, feats, pos = self._encode(images)
        # only the lowest level's position encoding is exported: memory attention reads that one alone
        return {"backbone_fpn": [hr0, hr1, feats], "vision_pos_enc": [pos]}

    def embed_image(self, images: torch.Tensor) -> Dict[str, Any]:
        image_embed, hr0, hr1, _, _ = self._encode(images)
        return {"image_embed": image_embed, "high_res_feats": [hr0, hr1]}

    def decode_prompts(
        self,
        image_embed: torch.Tensor,
        high_res_feats: Optional[List[torch.Tensor]],
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        mask_prompt: Optional[torch.Tensor],
        multimask_output: bool,
        repeat_image: bool = False,
    ) -> DecoderOutput:
        if points is None:
            raise ValueError(
                "the exported prompt decoder needs at least one point or box per prompt; a mask input alone is "
                "only supported by the PyTorch model"
            )
        coords, labels = points
        batch = coords.shape[0]
        if mask_prompt is None:
            mask = np.zeros((batch, 1, *self.mask_input_size), dtype=np.float32)
            has_mask = np.zeros(1, dtype=np.float32)
        else:
            mask = _numpy(mask_prompt.expand(batch, -1, -1, -1))
            has_mask = np.ones(1, dtype=np.float32)
        suffix = "multi" if multimask_output else "single"
        names = (f"low_res_masks_{suffix}", f"iou_scores_{suffix}", f"obj_ptr_{suffix}", "object_score_logits")
        # the graph takes one image for all prompt sets; several images (one per object) run one by one
        per_image = image_embed.size(0) > 1
        parts = []
        for i in range(batch if per_image else 1):
            rows = slice(i, i + 1) if per_image else slice(0, batch)
            image_rows = slice(i, i + 1) if per_image else slice(0, 1)
            inputs = {
                "image_embed": _numpy(image_embed[image_rows]),
                "high_res_feats_0": _numpy(high_res_feats[0][image_rows]),
                "high_res_feats_1": _numpy(high_res_feats[1][image_rows]),
                "point_coords": _numpy(coords[rows]),
                "point_labels": _numpy(labels[rows], np.int32),
                "mask_input": mask[rows],
                "has_mask_input": has_mask,
            }
            parts.append(self._run("prompt_decoder", inputs, names))
        outs = [torch.cat(p) if len(parts) > 1 else p[0] for p in zip(*parts)]
        return DecoderOutput(*outs)

    def attend_memory(self, curr: torch.Tensor, curr_pos: torch.Tensor, bank: Optional[MemoryBank]) -> torch.Tensor:
        if bank is None:
            raise NotImplementedError(
                "the exported memory attention needs at least one memory (directly_add_no_mem_embed is off)"
            )
        batch = curr.size(1)
        if bank.obj_ptrs is None:
            obj_ptrs = np.zeros((0, batch, self.hidden_dim), dtype=np.float32)
            rel_pos = np.zeros((0,), dtype=np.float32)
        else:
            obj_ptrs, rel_pos = _numpy(bank.obj_ptrs), _numpy(bank.obj_ptr_rel_pos)
        inputs = {
            "curr": _numpy(curr),
            "curr_pos": _numpy(curr_pos.expand_as(curr)),
            "maskmem_features": _numpy(bank.features),
            "maskmem_pos_enc": _numpy(bank.pos_enc),
            "maskmem_tpos_index": _numpy(bank.tpos_index, np.int64),
            "obj_ptrs": obj_ptrs,
            "obj_ptr_rel_pos": rel_pos,
        }
        return self._run("memory_attention", inputs, MEMORY_ATTENTION_OUTPUTS)[0]

    def encode_memory(
        self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor, object_score_logits: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        inputs = {
            "pix_feat": _numpy(pix_feat),
            "mask_for_mem": _numpy(mask_for_mem),
            "object_score_logits": _numpy(object_score_logits),
        }
        features, pos = self._run("memory_encoder", inputs, MEMORY_ENCODER_OUTPUTS)
        return features, pos
