"""SAM 2 / SAM 2.1: the network, its builder, and the image, automatic-mask and video predictors."""

from .build import buildsamv2
from .camerapredictor import SAMV2CameraPredictor
from .imagepredictor import SAMV2ImagePredictor
from .maskgenerator import SAMV2AutomaticMaskGenerator
from .samv2 import SAMV2
from .videopredictor import SAMV2VideoPredictor

__all__ = [
    "SAMV2",
    "SAMV2CameraPredictor",
    "SAMV2AutomaticMaskGenerator",
    "SAMV2ImagePredictor",
    "SAMV2VideoPredictor",
    "buildsamv2",
]
