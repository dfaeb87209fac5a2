"""Matplotlib helpers used by the SAM 2 tutorials: masks, prompts, boxes and automatic-mask-generator outputs.

The drawing conventions follow the official SAM 2 notebooks (translucent masks with white contour borders, green /
red stars for positive / negative clicks, green prompt boxes, ``tab10`` colours per object id in videos).

Nothing here ever blocks a headless run: when no display is available and the user has not chosen a backend, the
non-interactive ``Agg`` backend is selected at import, and :func:`showmasks` calls ``plt.show()`` only when an
interactive backend is active, saving the figures to PNG files otherwise.
"""

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import matplotlib
import numpy as np
from numpy.typing import ArrayLike

__all__ = ["showmask", "showpoints", "showbox", "showmasks", "showanns", "decode_rle"]

# The official notebooks' default mask colour (dodger blue) and alphas.
DEFAULT_MASK_COLOR = (30 / 255, 144 / 255, 255 / 255)
MASK_ALPHA = 0.6
ANN_ALPHA = 0.5


def _has_display() -> bool:
    """Whether a GUI can be opened; only X11 / Wayland platforms can lack one."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _user_chose_backend() -> bool:
    if os.environ.get("MPLBACKEND"):  # set by the user, or by ipykernel for inline plots in notebooks
        return True
    get_backend_or_none = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    # Without this private helper (old matplotlib) assume a choice was made rather than override one.
    return get_backend_or_none is None or get_backend_or_none() is not None


# Once pyplot is imported the backend is settled (and possibly in use), so it is never switched afterwards.
if "matplotlib.pyplot" not in sys.modules and not _has_display() and not _user_chose_backend():
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice above)


def _is_interactive_backend() -> bool:
    """Whether ``plt.show()`` displays figures (GUI windows, or notebook backends such as inline / ipympl)."""
    backend = str(matplotlib.get_backend()).lower()
    if backend.startswith("module://"):  # third-party backends: notebook inline / widget renderers
        return True
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        interactive = rcsetup.interactive_bk
    return backend in {name.lower() for name in interactive}


def _to_numpy(array: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor (any device) or nested sequence to a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _as_binary_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """Return ``mask`` (H x W, 1 x H x W or 1 x 1 x H x W; bool or numeric) as an H x W uint8 array of 0 / 1.

    Numeric masks are binarised at 0.5: SAM returns float masks of exactly 0 and 1.
    """
    array = _to_numpy(mask)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have shape H x W, 1 x H x W or 1 x 1 x H x W, got shape {tuple(_to_numpy(mask).shape)}"
        )
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be boolean or numeric, got dtype {array.dtype}")
    return (array > 0.5).astype(np.uint8)


def _draw_borders(canvas: np.ndarray, mask: np.ndarray, color: Sequence[float], thickness: int) -> None:
    """Draw the smoothed outer contours of the uint8 ``mask`` onto the float RGBA ``canvas`` in place."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    # A small polygon approximation removes the staircase look of pixel-exact contours.
    contours = [cv2.approxPolyDP(contour, epsilon=0.01, closed=True) for contour in contours]
    cv2.drawContours(canvas, contours, -1, tuple(float(c) for c in color), thickness=thickness)


def showmask(
    mask: ArrayLike,
    ax: "matplotlib.axes.Axes",
    random_color: bool = False,
    borders: bool = True,
    obj_id: Optional[int] = None,
) -> None:
    """Overlay a translucent mask on ``ax``.

    Args:
        mask: H x W, 1 x H x W or 1 x 1 x H x W mask; boolean, or numeric binarised at 0.5. Numpy or torch.
        ax: matplotlib axes already showing the image.
        random_color: use a random colour (for several masks on one image).
        borders: outline the mask with white contours, as in the official image notebook.
        obj_id: object id of a video object: picks colour ``obj_id % 10`` of the ``tab10`` colour map, so that an
            object keeps its colour across frames. Ignored when ``random_color`` is set.
    """
    binary = _as_binary_mask(mask)
    if random_color:
        rgb = tuple(np.random.random(3))
    elif obj_id is not None:
        rgb = plt.get_cmap("tab10")(int(obj_id) % 10)[:3]
    else:
        rgb = DEFAULT_MASK_COLOR
    color = np.array([*rgb, MASK_ALPHA], dtype=np.float64)
    canvas = binary[:, :, None] * color[None, None, :]
    if borders:
        _draw_borders(canvas, binary, (1.0, 1.0, 1.0, 0.5), thickness=2)
    ax.imshow(canvas)


def showpoints(coords: ArrayLike, labels: ArrayLike, ax: "matplotlib.axes.Axes", marker_size: float = 375) -> None:
    """Draw click prompts on ``ax``: green stars for positive clicks (label 1), red stars for negative (label 0).

    Args:
        coords: N x 2 array of (x, y) pixel coordinates.
        labels: N labels; other values than 0 and 1 (e.g. box corners 2 / 3) are not drawn.
        ax: matplotlib axes.
        marker_size: marker area in points^2.
    """
    coords, labels = _to_numpy(coords), _to_numpy(labels).reshape(-1)
    if coords.size % 2 or (coords.ndim > 1 and coords.shape[-1] != 2):
        raise ValueError(f"coords must be an N x 2 array of (x, y) points, got shape {tuple(coords.shape)}")
    coords = coords.reshape(-1, 2)
    if len(labels) != len(coords):
        raise ValueError(f"showpoints got {len(coords)} points (N x 2 coords) but {len(labels)} labels")
    for value, color in ((1, "green"), (0, "red")):
        points = coords[labels == value]
        ax.scatter(
            points[:, 0], points[:, 1], color=color, marker="*", s=marker_size, edgecolor="white", linewidth=1.25
        )


def showbox(box: ArrayLike, ax: "matplotlib.axes.Axes") -> None:
    """Draw a green box prompt ``(x0, y0, x1, y1)`` in pixel coordinates on ``ax``."""
    values = _to_numpy(box).reshape(-1)
    if values.size != 4:
        raise ValueError(f"box must hold 4 values (x0, y0, x1, y1), got shape {tuple(_to_numpy(box).shape)}")
    x0, y0, x1, y1 = (float(v) for v in values)
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor="green", facecolor=(0, 0, 0, 0), lw=2))


def showmasks(
    image: ArrayLike,
    masks: ArrayLike,
    scores: ArrayLike,
    point_coords: Optional[ArrayLike] = None,
    box_coords: Optional[ArrayLike] = None,
    input_labels: Optional[ArrayLike] = None,
    borders: bool = True,
    savedir: Optional[Union[str, os.PathLike]] = None,
    filename_prefix: str = "output_mask",
) -> List[str]:
    """Show each predicted mask in its own figure titled ``Mask i, Score: x.xxx`` (i counts from 1).

    With an interactive backend and no ``savedir`` every figure is shown with ``plt.show()``. Otherwise (headless,
    or ``savedir`` given) figure ``i`` is saved to ``<savedir>/<filename_prefix>_<i>.png`` (``savedir`` defaults to
    the current directory and is created if needed) and closed, so the call never blocks.

    Args:
        image: H x W x 3 RGB image.
        masks: N x H x W masks (or N x 1 x H x W), boolean or 0 / 1 floats, as returned by ``predict``.
        scores: N scores, one per mask.
        point_coords: optional N_p x 2 click coordinates, drawn with ``input_labels``.
        box_coords: optional box ``(x0, y0, x1, y1)`` (or B x 4 boxes) drawn on every figure.
        input_labels: N_p click labels; required with ``point_coords``.
        borders: outline the masks.
        savedir: folder to save the figures into; forces saving even with an interactive backend.
        filename_prefix: file name stem of the saved figures.

    Returns:
        Paths of the saved figures, in mask order; empty when the figures were shown instead.
    """
    masks = _to_numpy(masks)
    scores = _to_numpy(scores).reshape(-1)
    if masks.ndim == 2:
        masks = masks[None]
    if len(masks) != len(scores):
        raise ValueError(f"showmasks got {len(masks)} masks but {len(scores)} scores; expected one score per mask")
    if point_coords is not None and input_labels is None:
        raise ValueError("showmasks got point_coords without input_labels; pass one label (1 or 0) per point")
    save = savedir is not None or not _is_interactive_backend()
    if save:
        savedir = os.fspath(savedir) if savedir is not None else os.getcwd()
        os.makedirs(savedir, exist_ok=True)
    saved = []
    for i, (mask, score) in enumerate(zip(masks, scores), start=1):
        fig = plt.figure(figsize=(10, 10))
        ax = fig.gca()
        ax.imshow(_to_numpy(image))
        showmask(mask, ax, borders=borders)
        if point_coords is not None:
            showpoints(point_coords, input_labels, ax)
        if box_coords is not None:
            for box in _to_numpy(box_coords).reshape(-1, 4):
                showbox(box, ax)
        ax.set_title(f"Mask {i}, Score: {float(score):.3f}", fontsize=18)
        ax.axis("off")
        if save:
            path = os.path.join(savedir, f"{filename_prefix}_{i}.png")
            fig.savefig(path, bbox_inches="tight")
            plt.close(fig)
            saved.append(path)
        else:
            plt.show()
    return saved


def decode_rle(rle: Dict[str, Any]) -> np.ndarray:
    """Decode a COCO run-length encoding into an H x W boolean mask.

    Args:
        rle: ``{"size": [h, w], "counts": counts}`` where ``counts`` is either a list of run lengths (uncompressed
            RLE, as SAM's ``uncompressed_rle`` output mode) or a COCO-compressed string / bytes (``coco_rle`` mode).
            Runs go through the mask in column-major order and alternate starting with zeros.

    Returns:
        H x W boolean mask.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be a dict with 'size' ([h, w]) and 'counts' (run lengths or a COCO string)")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = _decode_coco_counts(counts.encode("ascii") if isinstance(counts, str) else counts)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if (counts < 0).any() or counts.sum() != height * width:
        raise ValueError(
            f"RLE counts must be non-negative and sum to h * w = {height * width} for size {[height, width]}, "
            f"got a sum of {int(counts.sum())}"
        )
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T  # column-major runs


def _decode_coco_counts(data: bytes) -> List[int]:
    """Decode the counts string of COCO's compressed RLE (pycocotools' ``rleFrString``).

    Each count is stored in 5-bit groups as characters offset by 48, low group first, with 0x20 marking that more
    groups follow and 0x10 in the last group meaning negative. From the third count on, the value is a delta to the
    count two positions earlier.
    """
    counts: List[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise ValueError("truncated COCO RLE counts string")
            chunk = data[pos] - 48
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            pos += 1
            shift += 5
            if not more and chunk & 0x10:
                value -= 1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def showanns(anns: Sequence[Dict[str, Any]], borders: bool = True, ax: Optional["matplotlib.axes.Axes"] = None) -> None:
    """Overlay automatic-mask-generator outputs on ``ax`` (default ``plt.gca()``), largest first, random colours.

    Args:
        anns: list of dicts with ``segmentation`` (an H x W boolean mask or an RLE dict, see :func:`decode_rle`)
            and ``area`` (pixels; computed from the mask when missing).
        borders: outline each mask with thin blue contours.
        ax: axes to draw on; defaults to the current axes.
    """
    if len(anns) == 0:
        return
    masks, areas = [], []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise ValueError(f"annotation {i} must be a dict with a 'segmentation' entry (mask or RLE)")
        segmentation = ann["segmentation"]
        mask = decode_rle(segmentation) if isinstance(segmentation, dict) else _to_numpy(segmentation)
        mask = _as_binary_mask(mask, name=f"annotation {i} segmentation").astype(bool)
        if masks and mask.shape != masks[0].shape:
            raise ValueError(f"annotation {i} has a {mask.shape} mask but annotation 0 has {masks[0].shape}")
        masks.append(mask)
        areas.append(float(ann["area"]) if "area" in ann else float(mask.sum()))
    ax = plt.gca() if ax is None else ax
    ax.set_autoscale_on(False)
    canvas = np.ones((*masks[0].shape, 4))
    canvas[:, :, 3] = 0
    # Largest first, so that small masks stay visible on top of the large ones that contain them.
    for index in sorted(range(len(masks)), key=lambda k: areas[k], reverse=True):
        canvas[masks[index]] = np.concatenate([np.random.random(3), [ANN_ALPHA]])
        if borders:
            _draw_borders(canvas, masks[index].astype(np.uint8), (0.0, 0.0, 1.0, 0.4), thickness=1)
    ax.imshow(canvas)
