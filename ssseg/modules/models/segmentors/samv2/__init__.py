"""SAM 2 / SAM 2.1: the network, its builder and the image predictor."""

from .build import buildsamv2
from .imagepredictor import SAMV2ImagePredictor
from .samv2 import SAMV2

__all__ = ["SAMV2", "SAMV2ImagePredictor", "buildsamv2"]
