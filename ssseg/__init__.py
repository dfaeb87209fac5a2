"""ssseg: a registry-driven segmentation toolbox (SAM 2 / SAM 2.1 inference)."""

__version__ = "0.1.0"
