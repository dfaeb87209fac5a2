"""A minimal builder registry: a dict from type name to class."""

import copy
from typing import Any, Dict, Optional


class Registry:
    """Maps config ``type`` names to classes and builds instances from config dicts."""

    def __init__(self, name: str, modules: Optional[Dict[str, type]] = None) -> None:
        self.name = name
        self.modules: Dict[str, type] = dict(modules or {})

    def register(self, cls: type, name: Optional[str] = None) -> type:
        key = name or cls.__name__
        if key in self.modules and self.modules[key] is not cls:
            raise KeyError(f"{self.name} registry: type {key!r} is already registered")
        self.modules[key] = cls
        return cls

    def build(self, cfg: Dict[str, Any]) -> Any:
        """Build ``cfg['type']`` with the remaining keys as keyword arguments; ``cfg`` itself is left untouched."""
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise TypeError(f"{self.name} registry: expected a config dict with a 'type' key, got {cfg!r}")
        cfg = copy.deepcopy(cfg)
        type_name = cfg.pop("type")
        if type_name not in self.modules:
            raise KeyError(f"{self.name} registry: unknown type {type_name!r}; known types: {sorted(self.modules)}")
        return self.modules[type_name](**cfg)
