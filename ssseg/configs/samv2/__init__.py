"""The SAM 2 / SAM 2.1 model configs, by official variant name or by file."""

import copy
import importlib
import importlib.util
import os
from typing import Any, Dict, Tuple

# official variant name -> module of this package holding SAMV2_CFG and CKPT_URL
VARIANTS = {
    "sam2_hiera_tiny": "sam2_hiera_tiny",
    "sam2_hiera_small": "sam2_hiera_small",
    "sam2_hiera_base_plus": "sam2_hiera_base_plus",
    "sam2_hiera_large": "sam2_hiera_large",
    "sam2.1_hiera_tiny": "sam21_hiera_tiny",
    "sam2.1_hiera_small": "sam21_hiera_small",
    "sam2.1_hiera_base_plus": "sam21_hiera_base_plus",
    "sam2.1_hiera_large": "sam21_hiera_large",
}


def getconfig(name: str) -> Tuple[Dict[str, Any], str]:
    """Return ``(a fresh copy of the model config, the official checkpoint URL)`` of a variant."""
    if name not in VARIANTS:
        raise ValueError(f"unknown SAM 2 variant {name!r}; expected one of {list(VARIANTS)}")
    module = importlib.import_module(f"{__name__}.{VARIANTS[name]}")
    return copy.deepcopy(module.SAMV2_CFG), module.CKPT_URL


def loadconfigfile(path: str) -> Tuple[Dict[str, Any], Any]:
    """Load ``SAMV2_CFG`` (and ``CKPT_URL`` if the file defines one) from a config ``.py`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_ssseg_samv2_cfg_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "SAMV2_CFG", None), dict):
        raise ValueError(f"config file {path} must define a dict named SAMV2_CFG")
    return copy.deepcopy(module.SAMV2_CFG), getattr(module, "CKPT_URL", None)
