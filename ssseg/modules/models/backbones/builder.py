"""The backbone registry. Registration happens here, so it never depends on import order."""

from ...utils import Registry
from .hiera import Hiera

BACKBONES = Registry("backbone", {"Hiera": Hiera})
BuildBackbone = BACKBONES.build
