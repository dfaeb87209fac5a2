from .builder import BACKBONES, BuildBackbone

__all__ = ["BACKBONES", "BuildBackbone"]
