"""Building SAM 2 models by variant name or config dict, and the predictors' shared model selection."""

import copy
from typing import Any, Dict, Optional, Sequence, Union

import torch

from ssseg.configs.samv2 import VARIANTS, getconfig

from .checkpoint import load_checkpoint
from .samv2 import SAMV2
from .samv2logic import SAMV2Logic

# the predictors' use_default_* flags: suffix -> variant size
DEFAULT_FLAG_SIZES = {"t": "tiny", "s": "small", "bplus": "base_plus", "l": "large"}

# what the official builders switch on with apply_postprocessing=True
POSTPROCESSING_DECODER_ARGS = {
    "dynamic_multimask_via_stability": True,  # fall back to multimask output when a single mask is unstable
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


def buildsamv2(
    name_or_cfg: Union[str, Dict[str, Any]],
    ckptpath: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
    loadweights: bool = True,
    apply_postprocessing: bool = True,
    extra_options: Optional[Dict[str, Any]] = None,
) -> SAMV2:
    """Build a SAM 2 model in eval mode.

    Args:
        name_or_cfg: an official variant name (``'sam2_hiera_tiny'`` ... ``'sam2.1_hiera_large'``) or a config dict
            (``{'type': 'SAMV2', ...}``, see ``ssseg/configs/samv2``); the dict is not modified.
        ckptpath: a local checkpoint file or URL; by default the official URL of a named variant.
        device: where the model lives.
        loadweights: load the checkpoint (strictly); ``False`` leaves the untrained initialisation.
        apply_postprocessing: turn on the decoder's dynamic multimask fallback, as the official builders do.
        extra_options: more top-level model options to override (e.g. ``binarize_mask_from_pts_for_mem_enc``).
    """
    if isinstance(name_or_cfg, str):
        cfg, default_url = getconfig(name_or_cfg)
    elif isinstance(name_or_cfg, dict):
        cfg, default_url = copy.deepcopy(name_or_cfg), None
    else:
        raise TypeError(
            f"expected a variant name ({list(VARIANTS)}) or a config dict, got {type(name_or_cfg).__name__}"
        )
    if apply_postprocessing:
        decoder_args = dict(cfg.get("sam_mask_decoder_extra_args") or {})
        decoder_args.update(POSTPROCESSING_DECODER_ARGS)
        cfg["sam_mask_decoder_extra_args"] = decoder_args
    cfg.update(extra_options or {})
    # the segmentor registry imports this package, so it is looked up at call time
    from ..builder import BuildSegmentor

    model = BuildSegmentor(cfg)
    if loadweights:
        source = ckptpath or default_url
        if source is None:
            raise ValueError(
                "a model built from a config dict needs ckptpath= to load its weights (or loadweights=False)"
            )
        load_checkpoint(model, source)
    return model.to(device).eval()


def selectmodel(
    model: Optional[SAMV2] = None,
    samv2_cfg: Optional[Dict[str, Any]] = None,
    ckptpath: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    apply_postprocessing: bool = True,
    extra_options: Optional[Dict[str, Any]] = None,
    onnxdir: Optional[str] = None,
    providers: Optional[Sequence[Any]] = None,
    **default_flags: bool,
) -> SAMV2Logic:
    """The model a predictor wraps: an already built ``model``, or exactly one ``use_default_samv2*_<size>=True``
    flag, or a ``samv2_cfg`` dict, or ``onnxdir``: a folder written by ``ssseg-samv2 export``, run by ONNX Runtime
    with ``providers`` (CPU by default). Anything else is a ``ValueError`` naming the choices.

    ``device=None`` leaves a given ``model`` where it is (it may serve other predictors) and builds new ones on the CPU.
    """
    flags = {}
    for name, value in default_flags.items():
        prefix, _, size = name.rpartition("_")
        if prefix not in ("use_default_samv2", "use_default_samv21") or size not in DEFAULT_FLAG_SIZES:
            raise TypeError(f"unexpected keyword argument {name!r}")
        if value:
            version = "sam2.1" if prefix.endswith("21") else "sam2"
            flags[name] = f"{version}_hiera_{DEFAULT_FLAG_SIZES[size]}"
    chosen = len(flags) + (samv2_cfg is not None) + (model is not None) + (onnxdir is not None)
    if chosen != 1:
        choices = ", ".join(f"use_default_samv2{v}_{s}" for v in ("", "1") for s in DEFAULT_FLAG_SIZES)
        given = list(flags) + (["samv2_cfg"] if samv2_cfg is not None else []) + (["model"] if model else [])
        given += ["onnxdir"] if onnxdir is not None else []
        raise ValueError(
            f"choose exactly one model: one of {choices} set to True, a samv2_cfg dict, model= or onnxdir=; "
            f"got {given or 'none'}"
        )
    if providers is not None and onnxdir is None:
        raise ValueError("providers= chooses ONNX Runtime's execution providers: it needs onnxdir=")
    if onnxdir is not None:
        if ckptpath is not None:
            raise ValueError("ckptpath= does not apply to onnxdir=: the weights are in the exported graphs")
        from .onnxbackend import ONNXSAMV2  # onnxruntime is optional

        onnx_model = ONNXSAMV2(onnxdir, providers, apply_postprocessing, extra_options)
        return onnx_model if device is None else onnx_model.to(device)
    if model is not None:
        if not isinstance(model, SAMV2Logic):
            raise TypeError(f"model= must be a SAMV2 network (from buildsamv2), got {type(model).__name__}")
        return (model if device is None else model.to(device)).eval()
    name_or_cfg = samv2_cfg if samv2_cfg is not None else next(iter(flags.values()))
    return buildsamv2(
        name_or_cfg,
        ckptpath=ckptpath,
        device=device or "cpu",
        apply_postprocessing=apply_postprocessing,
        extra_options=extra_options,
    )
