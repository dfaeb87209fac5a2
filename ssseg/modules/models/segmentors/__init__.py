from .builder import SEGMENTORS, BuildSegmentor

__all__ = ["SEGMENTORS", "BuildSegmentor"]
