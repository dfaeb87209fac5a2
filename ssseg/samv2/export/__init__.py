"""``ssseg-samv2 export``: SAM 2 as ONNX graphs for ONNX Runtime and other runtimes (see docs/export.md)."""

from .exporter import export_model

__all__ = ["export_model"]
