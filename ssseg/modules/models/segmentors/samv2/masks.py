"""Mask, RLE, box, point-grid and crop utilities of the SAM 2 automatic mask generator.

Behaviour follows the official ``sam2/utils/amg.py`` function by function (same outputs for the same inputs);
the implementations are vectorised where the official ones loop in Python.

RLE formats
-----------
* uncompressed: ``{"size": [h, w], "counts": [n0, n1, ...]}``; runs of the mask flattened in column-major
  (Fortran / COCO) order, alternating background / foreground and starting with background, so ``n0`` is 0 when
  the first pixel is foreground.
* COCO-compressed: the same runs packed into the ASCII string of ``pycocotools`` (``"counts"`` is str or bytes).
"""

import math
import numbers
from itertools import product
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

__all__ = [
    "area_from_rle",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "decode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


# ----------------------------------------------------------------------------------------------------------------
# boxes and scores
# ----------------------------------------------------------------------------------------------------------------


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive pixel coordinates) around binary masks.

    Args:
        masks: ``... x H x W`` bool (or uint8, nonzero = foreground) tensor.

    Returns:
        ``... x 4`` int64 tensor ``(x0, y0, x1, y1)``; an empty mask gives ``(0, 0, 0, 0)``.
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim < 2:
        raise ValueError(f"masks must be a tensor of shape ... x H x W, got {getattr(masks, 'shape', type(masks))}")
    leading, (height, width) = masks.shape[:-2], masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*leading, 4, dtype=torch.int64, device=masks.device)
    flat = masks.reshape(-1, height, width)
    if flat.dtype != torch.bool:
        flat = flat != 0  # (a no-op comparison on bool would cost a full pass over the batch)
    rows_hit = flat.any(dim=-1)  # N x H
    cols_hit = flat.any(dim=-2)  # N x W
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    # Rows / columns without foreground are pushed past the opposite end so that min / max ignore them.
    top = torch.where(rows_hit, ys, height).amin(dim=-1)
    bottom = torch.where(rows_hit, ys, -1).amax(dim=-1)
    left = torch.where(cols_hit, xs, width).amin(dim=-1)
    right = torch.where(cols_hit, xs, -1).amax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    boxes = boxes * rows_hit.any(dim=-1, keepdim=True)  # empty masks -> (0, 0, 0, 0)
    return boxes.reshape(*leading, 4)


def box_xyxy_to_xywh(box_xyxy: torch.Tensor) -> torch.Tensor:
    """``... x 4`` boxes ``(x0, y0, x1, y1)`` -> ``(x0, y0, w, h)``; the input is not modified."""
    if box_xyxy.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape ... x 4, got {tuple(box_xyxy.shape)}")
    box_xywh = box_xyxy.clone()
    box_xywh[..., 2:] = box_xyxy[..., 2:] - box_xyxy[..., :2]
    return box_xywh


def calculate_stability_score(
    mask_logits: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """IoU between the masks thresholded at ``mask_threshold + offset`` and at ``mask_threshold - offset``.

    The stricter mask is contained in the looser one, so the IoU is simply the ratio of their areas.

    Args:
        mask_logits: ``... x H x W`` mask logits.
        mask_threshold: logit threshold of the masks.
        threshold_offset: offset of the two thresholds.

    Returns:
        ``...`` float32 scores (NaN where both masks are empty, as in the official code).
    """
    strict_area = (mask_logits > (mask_threshold + threshold_offset)).sum(dim=(-2, -1), dtype=torch.int32)
    loose_area = (mask_logits > (mask_threshold - threshold_offset)).sum(dim=(-2, -1), dtype=torch.int32)
    return strict_area / loose_area


# ----------------------------------------------------------------------------------------------------------------
# run-length encoding
# ----------------------------------------------------------------------------------------------------------------


def _column_major_changes(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where a ``B x H x W`` bool mask, flattened in column-major order, differs from the previous pixel.

    Returns ``(mask_ids, positions)``, sorted by mask then position (``position = c * H + r``, always >= 1).
    Comparing in place avoids a transposed copy of the whole batch, which dominates the cost for large masks:
    the predecessor of ``(r, c)`` is ``(r - 1, c)``, or ``(H - 1, c - 1)`` at the top of a column.
    """
    height = masks.shape[1]
    ids_within, rows, cols = torch.nonzero(masks[:, 1:, :] != masks[:, :-1, :], as_tuple=True)
    ids_top, top_cols = torch.nonzero(masks[:, 0, 1:] != masks[:, -1, :-1], as_tuple=True)
    num_pixels = masks[0].numel()
    keys = torch.cat(
        [ids_within * num_pixels + cols * height + rows + 1, ids_top * num_pixels + (top_cols + 1) * height]
    )
    keys = torch.sort(keys).values  # keys are unique, so the order is fully determined
    mask_ids = keys // num_pixels
    return mask_ids, keys - mask_ids * num_pixels


def mask_to_rle(masks: torch.Tensor) -> List[Dict[str, Any]]:
    """Uncompressed COCO RLEs of a batch of binary masks.

    Args:
        masks: ``B x H x W`` bool (or uint8, nonzero = foreground) tensor, on any device.

    Returns:
        ``B`` dicts ``{"size": [H, W], "counts": [...]}`` with Python int counts (see the module docstring).
    """
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        raise ValueError(f"masks must be a B x H x W tensor, got {getattr(masks, 'shape', type(masks))}")
    if masks.dtype not in (torch.bool, torch.uint8):
        raise TypeError(f"masks must be bool or uint8 (nonzero = foreground), got {masks.dtype}")
    batch, height, width = masks.shape
    num_pixels = height * width
    if batch == 0:
        return []
    if num_pixels == 0:
        return [{"size": [height, width], "counts": [0]} for _ in range(batch)]
    if masks.dtype != torch.bool:
        masks = masks.to(torch.bool)
    mask_ids, run_starts = _column_major_changes(masks)
    # Length of each run that ends at a change: distance to the previous change of the same mask (or to 0).
    previous = torch.zeros_like(run_starts)
    previous[1:] = torch.where(mask_ids[1:] == mask_ids[:-1], run_starts[:-1], 0)
    changes_per_mask = torch.bincount(mask_ids, minlength=batch)
    # Start of each mask's last run: its largest change position (0 when the mask is constant).
    last_start = torch.zeros(batch, dtype=run_starts.dtype, device=masks.device)
    last_start = last_start.scatter_reduce(0, mask_ids, run_starts, reduce="amax")
    final_runs = num_pixels - last_start

    # One device -> host transfer, then pure list slicing.
    num_closed = run_starts.numel()
    host = torch.cat([run_starts - previous, changes_per_mask, final_runs, masks[:, 0, 0].long()]).tolist()
    closed_runs = host[:num_closed]
    changes_per_mask = host[num_closed : num_closed + batch]
    final_runs = host[num_closed + batch : num_closed + 2 * batch]
    starts_with_foreground = host[num_closed + 2 * batch :]
    rles, offset = [], 0
    for i in range(batch):
        counts = [0] if starts_with_foreground[i] else []
        counts.extend(closed_runs[offset : offset + changes_per_mask[i]])
        counts.append(final_runs[i])
        offset += changes_per_mask[i]
        rles.append({"size": [height, width], "counts": counts})
    return rles


def _check_rle(rle: Dict[str, Any]) -> Tuple[int, int]:
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"an RLE must be a dict with keys 'size' and 'counts', got {type(rle).__name__}")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple, np.ndarray))
        or len(size) != 2
        or not all(isinstance(s, numbers.Real) and not isinstance(s, bool) and int(s) == s and s >= 0 for s in size)
    ):
        raise ValueError(f"RLE 'size' must be [height, width] with non-negative ints, got {size!r:.80}")
    return int(size[0]), int(size[1])


def _run_lengths(counts: Any, num_pixels: int) -> np.ndarray:
    """Uncompressed RLE ``counts`` as int64 run lengths that add up to ``num_pixels``, or a ``ValueError``."""
    message = "RLE 'counts' must be a flat list of non-negative ints (use decode_rle for COCO strings)"
    if isinstance(counts, (str, bytes, dict, set)) or counts is None:
        raise ValueError(f"{message}, got {type(counts).__name__}")
    try:
        values = np.asarray(counts)
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iuO"):
            raise ValueError
        values = values.astype(np.int64) if values.size else np.zeros(0, np.int64)
        if not np.array_equal(values, np.asarray(counts)):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{message}, got {counts!r:.80}") from None
    if np.any(values < 0) or np.any(values > num_pixels):
        raise ValueError(f"{message}; runs must lie in [0, {num_pixels}], got {values.tolist()[:8]}")
    if int(values.sum()) != num_pixels:  # no overflow: each run is at most num_pixels
        raise ValueError(f"RLE counts add up to {int(values.sum())} pixels but the size needs {num_pixels}")
    return values


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed RLE (``counts`` a list of ints) into an ``H x W`` bool numpy array."""
    height, width = _check_rle(rle)
    counts = _run_lengths(rle["counts"], height * width)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate background / foreground
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def area_from_rle(rle: Dict[str, Any]) -> int:
    """Foreground area of an uncompressed RLE: the sum of its odd (foreground) runs."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: Dict[str, Any]) -> Dict[str, Any]:
    """Compress an uncompressed RLE into COCO's string form (``counts`` as a JSON-serialisable str).

    The string is byte-for-byte what ``pycocotools.mask.frPyObjects`` makes (see :func:`_counts_to_coco_string`);
    pycocotools is not needed.
    """
    height, width = _check_rle(uncompressed_rle)
    return {"size": [height, width], "counts": _counts_to_coco_string(list(uncompressed_rle["counts"]))}


def _counts_to_coco_string(counts: List[int]) -> str:
    """Pack run lengths into COCO's ASCII form, the inverse of :func:`_coco_string_to_counts`.

    From the fourth count on, the difference to the count two places earlier is stored (runs of the same kind have
    similar lengths). Each number is cut into 5-bit groups, least significant first, until the rest is only its sign
    (0 or -1, read from bit 0x10 of the last group); bit 0x20 marks that a group follows; each group is ``48 + c``.
    """
    chars = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        while True:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: a negative value ends at -1
            more = value != (-1 if group & 0x10 else 0)
            chars.append(chr(48 + (group | (0x20 if more else 0))))
            if not more:
                break
    return "".join(chars)


def _coco_string_to_counts(encoded: str) -> List[int]:
    """Unpack the counts of a COCO-compressed RLE string (``rleFrString`` of pycocotools' maskApi.c).

    Each count is a variable-length signed integer: characters ``48 + c`` carry 5 bits each, least significant
    group first, bit ``0x20`` of ``c`` says that another group follows, and bit ``0x10`` of the last group is the
    sign. From the fourth count on, the stored number is the difference to the count two places earlier.
    """
    counts: List[int] = []
    value, shift = 0, 0
    for char in encoded:
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise ValueError(f"invalid character {char!r} in a COCO RLE string")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift  # sign-extend the last group
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError("truncated COCO RLE string: the last count is incomplete")
    return counts


def decode_rle(rle: Dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed or COCO-compressed RLE into an ``H x W`` bool numpy array.

    COCO strings are decoded in pure Python, so ``pycocotools`` is not needed.
    """
    _check_rle(rle)
    counts = rle["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"COCO RLE 'counts' must be ASCII, got {counts[:20]!r}") from None
    if isinstance(counts, str):
        return rle_to_mask({"size": rle["size"], "counts": _coco_string_to_counts(counts)})
    return rle_to_mask(rle)


# ----------------------------------------------------------------------------------------------------------------
# point grids and crops
# ----------------------------------------------------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n_per_side**2 x 2`` float64 ``(x, y)`` points at the centres of an even grid over ``[0, 1] x [0, 1]``.

    Points are ordered row by row (x varies fastest).
    """
    if int(n_per_side) != n_per_side or n_per_side < 1:
        raise ValueError(f"n_per_side must be a positive int, got {n_per_side!r}")
    n_per_side = int(n_per_side)
    half_step = 1 / (2 * n_per_side)
    centres = np.linspace(half_step, 1 - half_step, n_per_side)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """Point grids of the crop layers ``0..n_layers``: layer ``i`` has ``int(n_per_side / scale_per_layer**i)``
    points per side."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: Tuple[int, ...], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """XYXY crop boxes of the automatic mask generator, and the layer of each.

    Layer 0 is the whole image; layer ``i >= 1`` tiles it with ``2**i x 2**i`` overlapping crops.

    Args:
        im_size: ``(H, W)`` of the image.
        n_layers: number of crop layers beyond the full image.
        overlap_ratio: overlap of neighbouring crops, as a fraction of the short image side (scaled per layer).

    Returns:
        ``(crop_boxes, layer_idxs)``: lists of ``[x0, y0, x1, y1]`` and of ints.
    """
    if len(im_size) != 2:
        raise ValueError(f"im_size must be (height, width), got {im_size!r}")
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    crop_boxes, layer_idxs = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        crops_per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / crops_per_side))
        # Crop length such that `crops_per_side` crops overlapping by `overlap` cover the side.
        crop_w = int(math.ceil((overlap * (crops_per_side - 1) + im_w) / crops_per_side))
        crop_h = int(math.ceil((overlap * (crops_per_side - 1) + im_h) / crops_per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(crops_per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(crops_per_side)]
        for x0, y0 in product(x0s, y0s):  # column by column, as in the official order
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(layer)
    return crop_boxes, layer_idxs


def _crop_offset(crop_box: Sequence[int], num_coords: int, device: torch.device) -> torch.Tensor:
    x0, y0 = crop_box[0], crop_box[1]
    return torch.tensor([x0, y0] * (num_coords // 2), device=device)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift ``... x 4`` XYXY boxes from crop coordinates to image coordinates."""
    return boxes + _crop_offset(crop_box, 4, boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """Shift ``... x 2`` ``(x, y)`` points from crop coordinates to image coordinates."""
    return points + _crop_offset(crop_box, 2, points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Zero-pad ``... x h x w`` masks of the crop ``crop_box`` to ``... x orig_h x orig_w`` image masks."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad_x, pad_y = orig_w - (x1 - x0), orig_h - (y1 - y0)
    return torch.nn.functional.pad(masks, (x0, pad_x - x0, y0, pad_y - y0), value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """Which boxes touch an edge of their crop that is not also an edge of the image.

    Args:
        boxes: ``N x 4`` XYXY boxes in crop coordinates.
        crop_box: ``[x0, y0, x1, y1]`` of the crop in the image.
        orig_box: ``[0, 0, W, H]`` of the image.
        atol: distance (pixels) within which a box side counts as on an edge.

    Returns:
        ``N`` bool tensor.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop_edge = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)
    near_image_edge = torch.isclose(boxes, image[None, :], atol=atol, rtol=0)
    return torch.any(near_crop_edge & ~near_image_edge, dim=1)


# ----------------------------------------------------------------------------------------------------------------
# small regions
# ----------------------------------------------------------------------------------------------------------------


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill small holes in, or drop small islands from, a binary mask (8-connectivity).

    Args:
        mask: ``H x W`` bool numpy array.
        area_thresh: regions with an area strictly below this are small.
        mode: ``"holes"`` fills small background regions; ``"islands"`` removes small foreground regions, but if
            every island is small the largest one is kept.

    Returns:
        ``(mask, changed)``; when nothing is small the input array itself is returned with ``changed=False``.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be an H x W array, got shape {mask.shape}")
    fill_holes = mode == "holes"
    # Label the regions to examine: the background for holes, the foreground for islands.
    regions_of_interest = (mask.astype(bool) != fill_holes).astype(np.uint8)
    num_labels, labels, stats, _ = cv2.connectedComponentsWithStats(regions_of_interest, 8)
    areas = stats[1:, cv2.CC_STAT_AREA]  # label 0 is everything outside the regions of interest
    is_small = areas < area_thresh
    if not is_small.any():
        return mask, False
    # keep[label]: whether pixels of that label end up foreground in the result.
    keep = np.zeros(num_labels, dtype=bool)
    if fill_holes:
        keep[0] = True  # the original foreground
        keep[1:] = is_small
    else:
        keep[1:] = ~is_small
        if not keep.any():
            keep[int(np.argmax(areas)) + 1] = True
    return keep[labels], True
