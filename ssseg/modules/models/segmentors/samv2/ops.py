"""Connected components of binary masks, and the hole / sprinkle clean-ups that SAM 2 runs on low-res logits.

Label convention
----------------
Every function here that returns component labels follows the convention of the official SAM 2 CUDA op
(``sam2._C.get_connected_componnets``), so that results are interchangeable with it:

* background pixels get label ``0`` and count ``0``;
* components use 8-connectivity;
* a component's label is ``1 + (r - r % 2) * W + (c - c % 2)`` minimised over its pixels ``(r, c)``, i.e. one plus
  the flat index of the top-left corner of the first 2 x 2 cell (in raster order of cells) that the component
  touches. The official op labels its 2 x 2 blocks by that corner index and keeps the smallest one per component,
  which is exactly this number. Labels are therefore neither consecutive nor ordered by component size;
* a pixel's count is the area (in pixels) of the component it belongs to.

The official op only accepts even ``H`` and ``W``; here odd sizes are accepted too, with the same formula.

Backends
--------
* CUDA tensors, when the extension ``_C`` was compiled (``COMPILE_SAMV2=1 pip install --no-build-isolation .``):
  a union-find kernel in ``csrc/connected_components.cu``.
* Anything else: OpenCV's ``connectedComponentsWithStats`` on the CPU (CUDA input is copied over and the result
  copied back).

Both backends follow the convention above, so they return identical labels and counts
(``tests/samv2/test_ops.py`` compares them wherever a GPU and the compiled op are available).
"""

import numbers
from typing import Optional, Tuple

import cv2
import numpy as np
import torch

try:
    # Only present when the package was built with COMPILE_SAMV2=1; the OpenCV path covers everything otherwise.
    from . import _C as _samv2_ext
except ImportError:
    _samv2_ext = None


__all__ = [
    "has_compiled_extension",
    "get_connected_components",
    "find_small_components",
    "fill_holes",
    "remove_sprinkles",
    "fill_holes_in_mask_scores",
]


def has_compiled_extension() -> bool:
    """Whether the compiled CUDA connected-components op is importable."""
    return _samv2_ext is not None


def _check_binary_masks(mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of shape B x 1 x H x W, got {type(mask).__name__}")
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape B x 1 x H x W, got {tuple(mask.shape)}")
    if mask.dtype not in (torch.bool, torch.uint8):
        raise TypeError(
            f"mask must be a bool or uint8 tensor (nonzero = foreground), got {mask.dtype}; "
            "threshold the scores first, e.g. `scores > 0`"
        )
    if mask.shape[2] * mask.shape[3] >= 2**31:
        raise ValueError(f"masks of {mask.shape[2]} x {mask.shape[3]} pixels overflow the int32 labels")


def _cell_corner_index(height: int, width: int) -> np.ndarray:
    """``H x W`` int64 map: flat index of the top-left corner of the 2 x 2 cell holding each pixel."""
    rows = np.arange(height, dtype=np.int64) & ~1
    cols = np.arange(width, dtype=np.int64) & ~1
    return rows[:, None] * width + cols[None, :]


def _connected_components_opencv(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """OpenCV backend of :func:`get_connected_components`; ``mask`` is a validated ``B x 1 x H x W`` tensor."""
    batch, _, height, width = mask.shape
    labels = np.zeros((batch, 1, height, width), dtype=np.int32)
    counts = np.zeros((batch, 1, height, width), dtype=np.int32)
    if mask.numel() > 0:
        binary = mask.detach().to(device="cpu", dtype=torch.bool).numpy()[:, 0]
        # One OpenCV call for the whole batch: stack the masks vertically, each followed by an empty row. With
        # a background row in between, no component can span two masks, even with 8-connectivity.
        stacked = np.zeros((batch, height + 1, width), dtype=np.uint8)
        stacked[:, :height] = binary
        num, cv_labels, stats, _ = cv2.connectedComponentsWithStats(
            stacked.reshape(batch * (height + 1), width), connectivity=8, ltype=cv2.CV_32S
        )
        cv_labels = cv_labels.reshape(batch, height + 1, width)[:, :height]
        foreground = cv_labels > 0
        # OpenCV numbers components in its own scan order; renumber with the official op's convention.
        component_ids = cv_labels[foreground]
        corners = np.broadcast_to(_cell_corner_index(height, width), cv_labels.shape)[foreground]
        first_corner = np.full(num, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_corner, component_ids, corners)
        labels[:, 0][foreground] = first_corner[component_ids] + 1
        counts[:, 0][foreground] = stats[component_ids, cv2.CC_STAT_AREA]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(counts).to(mask.device)


def get_connected_components(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of a batch of binary masks.

    Args:
        mask: ``B x 1 x H x W`` bool or uint8 tensor; nonzero pixels are foreground.

    Returns:
        ``(labels, counts)``, both ``B x 1 x H x W`` int32 tensors on the device of ``mask``. ``labels`` is 0 on
        the background and follows the official SAM 2 op's numbering on the foreground (see the module
        docstring); ``counts`` holds, for every foreground pixel, the area of its component, and 0 elsewhere.
    """
    _check_binary_masks(mask)
    if _samv2_ext is not None and mask.is_cuda and mask.numel() > 0:
        labels, counts = _samv2_ext.connected_components(mask.to(torch.uint8).contiguous())
        return labels, counts
    return _connected_components_opencv(mask)


def find_small_components(mask: torch.Tensor, max_area: float) -> torch.Tensor:
    """Foreground pixels whose 8-connected component has an area of at most ``max_area`` pixels.

    Args:
        mask: ``... x H x W`` bool or uint8 tensor (at least 2-D); nonzero pixels are foreground.
        max_area: largest component area (in pixels) still counted as small.

    Returns:
        A bool tensor shaped like ``mask``.
    """
    if not isinstance(mask, torch.Tensor) or mask.ndim < 2:
        raise ValueError(f"mask must be a tensor of shape ... x H x W, got {getattr(mask, 'shape', type(mask))}")
    flat = mask.reshape(-1, 1, *mask.shape[-2:])
    _, counts = get_connected_components(flat)
    # counts is 0 on the background, so `counts > 0` plays the role of the official `labels > 0`.
    return ((counts > 0) & (counts <= max_area)).reshape(mask.shape)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_logits_and_area(logits: torch.Tensor, max_area: float, name: str) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
        raise ValueError(
            f"mask logits must be a tensor of shape ... x H x W, got {getattr(logits, 'shape', type(logits))}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"mask logits must be a floating point tensor, got {logits.dtype}")
    if not _is_number(max_area) or max_area < 0:
        raise ValueError(f"{name} must be a number >= 0 (0 disables the step), got {max_area!r}")


def fill_holes(
    logits: torch.Tensor, max_hole_area: float, threshold: float = 0.0, fill_value: Optional[float] = None
) -> torch.Tensor:
    """Turn small background regions ("holes") of mask logits into foreground.

    Background is ``logits <= threshold``; its 8-connected components with an area of at most ``max_hole_area``
    pixels are set to ``fill_value`` (default ``threshold + 10.0``, as in the official image predictor).
    A region touching the image border counts as a hole too, exactly as in the official post-processing.

    Args:
        logits: ``... x H x W`` float mask logits, e.g. ``B x 1 x H x W``.
        max_hole_area: largest hole area in pixels; 0 returns ``logits`` unchanged.
        threshold: logit threshold separating foreground (``>``) from background (``<=``).
        fill_value: score written into the holes.

    Returns:
        A tensor shaped and typed like ``logits`` (``logits`` itself is not modified).
    """
    _check_logits_and_area(logits, max_hole_area, "max_hole_area")
    if max_hole_area == 0:
        return logits
    is_hole = find_small_components(logits <= threshold, max_hole_area)
    return torch.where(is_hole, threshold + 10.0 if fill_value is None else fill_value, logits)


def remove_sprinkles(
    logits: torch.Tensor, max_sprinkle_area: float, threshold: float = 0.0, fill_value: Optional[float] = None
) -> torch.Tensor:
    """Turn small foreground regions ("sprinkles") of mask logits into background.

    Foreground is ``logits > threshold``; its 8-connected components with an area of at most
    ``max_sprinkle_area`` pixels are set to ``fill_value`` (default ``threshold - 10.0``).

    Args:
        logits: ``... x H x W`` float mask logits, e.g. ``B x 1 x H x W``.
        max_sprinkle_area: largest sprinkle area in pixels; 0 returns ``logits`` unchanged.
        threshold: logit threshold separating foreground (``>``) from background (``<=``).
        fill_value: score written into the sprinkles.

    Returns:
        A tensor shaped and typed like ``logits`` (``logits`` itself is not modified).
    """
    _check_logits_and_area(logits, max_sprinkle_area, "max_sprinkle_area")
    if max_sprinkle_area == 0:
        return logits
    is_sprinkle = find_small_components(logits > threshold, max_sprinkle_area)
    return torch.where(is_sprinkle, threshold - 10.0 if fill_value is None else fill_value, logits)


def fill_holes_in_mask_scores(mask: torch.Tensor, max_area: float) -> torch.Tensor:
    """The video predictor's hole filling: background is ``mask <= 0`` and holes get the score ``0.1``.

    Unlike the image path (:func:`fill_holes`, which writes ``threshold + 10.0``), the official video predictor
    fills holes of at most ``max_area`` pixels with a small positive score, and requires ``max_area > 0``.

    Args:
        mask: ``B x 1 x H x W`` float mask scores (``... x H x W`` is accepted as well).
        max_area: largest hole area in pixels, > 0.

    Returns:
        A tensor shaped and typed like ``mask``.
    """
    if not _is_number(max_area) or max_area <= 0:
        raise ValueError(f"max_area must be a number > 0, got {max_area!r}")
    return fill_holes(mask, max_area, threshold=0.0, fill_value=0.1)
