"""The segmentor registry. Registration happens here, so it never depends on import order."""

from ...utils import Registry
from .samv2.samv2 import SAMV2

SEGMENTORS = Registry("segmentor", {"SAMV2": SAMV2})
BuildSegmentor = SEGMENTORS.build
