"""Image pre-processing and mask post-processing of the SAM 2 image predictor.

Pixel-identical to the official ``SAM2Transforms`` (``sam2/utils/transforms.py``): an image goes through
``ToTensor`` -> antialiased bilinear resize to ``R x R`` -> ImageNet normalisation, and predicted low-res mask
logits get their small holes / sprinkles cleaned up before being upsampled to the original image size.
"""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode

from .ops import find_small_components

__all__: List[str] = ["SAMV2Transforms", "IMAGENET_MEAN", "IMAGENET_STD"]

ImageLike = Union[np.ndarray, Image.Image]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_hw(orig_hw: Sequence[int], name: str = "orig_hw") -> Tuple[int, int]:
    if orig_hw is None or len(orig_hw) != 2 or any(int(s) != s or s <= 0 for s in orig_hw):
        raise ValueError(f"{name} must be (height, width) with positive ints, got {orig_hw!r}")
    return int(orig_hw[0]), int(orig_hw[1])


class SAMV2Transforms(nn.Module):
    """Pre- and post-processing between user images / prompts and the ``R x R`` input of a SAM 2 model.

    Args:
        resolution: side ``R`` of the square model input (1024 for the released checkpoints).
        mask_threshold: logit threshold separating mask foreground (``>``) from background.
        max_hole_area: in :meth:`postprocess_masks`, background regions of at most this many low-res pixels
            become foreground; 0 disables it.
        max_sprinkle_area: in :meth:`postprocess_masks`, foreground regions of at most this many low-res pixels
            become background; 0 disables it.
    """

    def __init__(
        self, resolution: int, mask_threshold: float = 0.0, max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0
    ) -> None:
        super().__init__()
        if int(resolution) != resolution or resolution <= 0:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if max_hole_area < 0 or max_sprinkle_area < 0:
            raise ValueError(
                f"max_hole_area and max_sprinkle_area must be >= 0, got {max_hole_area!r} and {max_sprinkle_area!r}"
            )
        self.resolution = int(resolution)
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD

    @staticmethod
    def to_tensor(image: ImageLike) -> torch.Tensor:
        """``H x W x 3`` uint8 RGB array or RGB PIL image -> ``3 x H x W`` float32 tensor in ``[0, 1]``."""
        if isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise ValueError(f"expected an RGB PIL image, got mode {image.mode!r}; use image.convert('RGB')")
        elif isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an H x W x 3 RGB image array, got shape {image.shape}")
            if image.dtype != np.uint8:
                raise TypeError(f"expected a uint8 image array with values in [0, 255], got dtype {image.dtype}")
        else:
            raise TypeError(f"expected an H x W x 3 uint8 numpy array or a PIL image, got {type(image).__name__}")
        return TF.to_tensor(image)

    def forward(self, image: ImageLike) -> torch.Tensor:
        """One image (``H x W x 3`` uint8 array or RGB PIL image) -> ``3 x R x R`` normalised float32 tensor."""
        tensor = self.to_tensor(image)
        tensor = TF.resize(
            tensor, [self.resolution, self.resolution], interpolation=InterpolationMode.BILINEAR, antialias=True
        )
        return TF.normalize(tensor, list(self.mean), list(self.std))

    def forward_batch(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """A list of images (sizes may differ) -> ``B x 3 x R x R`` tensor."""
        if isinstance(images, (np.ndarray, Image.Image)) or len(images) == 0:
            raise ValueError("forward_batch expects a non-empty list of images")
        return torch.stack([self(image) for image in images], dim=0)

    def transform_coords(
        self, coords: torch.Tensor, normalize: bool = False, orig_hw: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """Map ``... x 2`` ``(x, y)`` point coordinates into the ``R x R`` model input frame.

        Args:
            coords: ``... x 2`` coordinates, either absolute pixels of the original image (``normalize=True``)
                or already relative to the image size, in ``[0, 1]`` (``normalize=False``).
            normalize: divide by the original image width / height first.
            orig_hw: ``(H, W)`` of the original image; required when ``normalize`` is True.

        Returns:
            ``... x 2`` float tensor (``coords`` itself is not modified).
        """
        if coords.shape[-1:] != (2,):
            raise ValueError(f"coords must have shape ... x 2, got {tuple(coords.shape)}")
        if not coords.is_floating_point():
            # Integer pixel coordinates would be truncated by the division below.
            coords = coords.float()
        if normalize:
            if orig_hw is None:
                raise ValueError("orig_hw=(height, width) is required when normalize=True")
            height, width = _check_hw(orig_hw)
            coords = coords / torch.tensor([width, height], dtype=coords.dtype, device=coords.device)
        return coords * self.resolution

    def transform_boxes(
        self, boxes: torch.Tensor, normalize: bool = False, orig_hw: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """Map ``... x 4`` XYXY boxes into the model input frame, as ``N x 2 x 2`` corner points.

        The corners come back as point pairs (top-left, bottom-right) because the prompt encoder embeds boxes
        as two points; ``N`` is the number of boxes. See :meth:`transform_coords` for the arguments.
        """
        if boxes.shape[-1:] != (4,):
            raise ValueError(f"boxes must have shape ... x 4, got {tuple(boxes.shape)}")
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: Sequence[int]) -> torch.Tensor:
        """Clean up low-res mask logits and upsample them to the original image size.

        Holes (background components, ``<= mask_threshold``, of at most ``max_hole_area`` pixels) are set to
        ``mask_threshold + 10`` and sprinkles (foreground components of at most ``max_sprinkle_area`` pixels) to
        ``mask_threshold - 10``. As in the official code, both are found on the incoming logits, so the two steps
        do not influence each other. Then bilinear interpolation (``align_corners=False``) to ``orig_hw``.

        Args:
            masks: ``B x C x h x w`` mask logits.
            orig_hw: ``(H, W)`` of the original image.

        Returns:
            ``B x C x H x W`` float32 logits.
        """
        if not isinstance(masks, torch.Tensor) or masks.ndim != 4:
            raise ValueError(f"masks must be a B x C x h x w tensor, got {getattr(masks, 'shape', type(masks))}")
        height, width = _check_hw(orig_hw)
        masks = masks.float()
        is_hole = is_sprinkle = None
        if self.max_hole_area > 0:
            is_hole = find_small_components(masks <= self.mask_threshold, self.max_hole_area)
        if self.max_sprinkle_area > 0:
            is_sprinkle = find_small_components(masks > self.mask_threshold, self.max_sprinkle_area)
        # Holes and sprinkles are disjoint (background vs foreground of the same logits): order is irrelevant.
        if is_hole is not None:
            masks = torch.where(is_hole, self.mask_threshold + 10.0, masks)
        if is_sprinkle is not None:
            masks = torch.where(is_sprinkle, self.mask_threshold - 10.0, masks)
        return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)
