"""Overlay rendering for the command line: masks, points and boxes drawn onto an RGB image with OpenCV."""

from typing import Optional, Sequence

import cv2
import numpy as np

# tab10 colours (RGB), the palette of the tutorials' figures
PALETTE = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.float32,
)


def render_overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    points: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    boxes: Optional[np.ndarray] = None,
    color_ids: Optional[Sequence[int]] = None,
    alpha: float = 0.5,
    palette: np.ndarray = PALETTE,
) -> np.ndarray:
    """Blend ``N x H x W`` boolean masks (colour ``palette[color_ids[i]]``, cycling; tab10 by default) into an
    ``H x W x 3`` uint8 image and draw their outlines, points (green foreground, red background) and boxes. Returns a
    new uint8 image."""
    out = image.astype(np.float32).copy()
    ids = list(color_ids) if color_ids is not None else list(range(len(masks)))
    for mask, cid in zip(masks, ids):
        mask = np.asarray(mask, dtype=bool)
        color = np.asarray(palette[cid % len(palette)], dtype=np.float32)
        out[mask] = out[mask] * (1 - alpha) + color * alpha
    out = out.clip(0, 255).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for mask in masks:
        contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), thickness)
    if boxes is not None:
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(out, (round(x0), round(y0)), (round(x1), round(y1)), (0, 255, 0), thickness + 1)
    if points is not None:
        radius = 3 * thickness + 3
        for (x, y), label in zip(np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1)):
            color = (0, 200, 0) if label == 1 else (220, 0, 0)
            cv2.drawMarker(out, (round(x), round(y)), (255, 255, 255), cv2.MARKER_STAR, radius * 2 + 4, thickness + 2)
            cv2.drawMarker(out, (round(x), round(y)), color, cv2.MARKER_STAR, radius * 2, thickness + 1)
    return out


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS / PASCAL VOC index PNGs (``256 x 3`` uint8): 0 is black, 1 (128, 0, 0), ...

    Colour ``i`` spreads the bits of ``i`` over the high bits of R, G and B, three bits per step.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, color = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                color[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = color
    return palette


def index_mask_image(index_map: np.ndarray):
    """An ``H x W`` uint8 map of object ids as a palette ("P" mode) PIL image with the DAVIS palette."""
    from PIL import Image

    image = Image.fromarray(np.asarray(index_map, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette().reshape(-1).tolist())
    return image


def render_index_overlay(frame: np.ndarray, index_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the DAVIS colours of an ``H x W`` object-id map into an ``H x W x 3`` uint8 RGB frame, with outlines."""
    ids = [int(i) for i in np.unique(index_map) if i != 0]
    masks = [index_map == i for i in ids]
    return render_overlay(frame, masks, color_ids=ids, alpha=alpha, palette=davis_palette())
