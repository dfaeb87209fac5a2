"""Automatic mask generation ("segment everything"): a grid of single-point prompts over the image (and over crops
of it), one batched decoder run per group of points, then quality filters and non-maximum suppression.

The output equals the official ``SAM2AutomaticMaskGenerator`` (sam2 1.1.0) on the same weights and options; the
work is organised differently so that it is cheaper:

* masks are filtered by their predicted IoU *before* being upsampled to the crop resolution, and upsampling,
  stability scores, boxes and RLE encoding run in memory-bounded chunks on the tensor device;
* between point batches masks are kept as run-length encodings; the image embedding of a crop is computed once.

``min_mask_region_area`` follows sam2 1.1.0: it is passed to the predictor as ``max_hole_area`` and
``max_sprinkle_area``, i.e. background components (holes) and foreground components (sprinkles) of at most that
many pixels *of the low-resolution logits* (``4h x 4w``, 256 x 256 for a 1024 model) are flipped before the
upsampling. The official generator needs its CUDA connected-components op for this and silently skips the step
without it (always on a CPU); here it always runs (OpenCV on the CPU), i.e. the result is that of an official run
where the op works. Note that sam2 1.1.0 never calls its ``postprocess_small_regions`` (the SAM 1 clean-up on the
full-resolution masks); it is available here as :meth:`SAMV2AutomaticMaskGenerator.postprocess_small_regions`.
"""

import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms, box_area
from tqdm import tqdm

from .imagepredictor import SAMV2ImagePredictor, to_rgb_array
from .inputs import flag, numeric_array
from .masks import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    coco_encode_rle,
    decode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from .samv2 import SAMV2

__all__ = ["OUTPUT_MODES", "SAMV2AutomaticMaskGenerator", "decode_segmentation", "encode_masks_as_rle"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# Upper bounds that keep a typo from allocating the point grids / crop lists of a runaway job: 1024 points per side
# is a million prompts per crop, and 8 crop layers are 87381 crops.
MAX_POINTS_PER_SIDE = 1024
MAX_CROP_LAYERS = 8

# Upper bound on the float32 logits materialised at once while upsampling surviving masks to crop resolution.
CPU_CHUNK_BYTES = 128 * 2**20
CUDA_CHUNK_BYTES = 1024 * 2**20


# ----------------------------------------------------------------------------------------------------- RLE helpers
def encode_masks_as_rle(
    masks: torch.Tensor, crop_box: Sequence[int] = None, orig_hw: Optional[Tuple[int, int]] = None
) -> List[Dict[str, Any]]:
    """Uncompressed (COCO-style, column-major) run-length encodings of binary masks, vectorised on their device.

    Args:
        masks: ``N x h x w`` bool tensor, the masks inside ``crop_box``.
        crop_box: ``(x0, y0, x1, y1)`` of the masks in the full image (default: the masks cover the whole image).
        orig_hw: ``(H, W)`` of the full image (default ``(h, w)``); pixels outside the crop are background.

    Returns:
        ``N`` dicts ``{"size": [H, W], "counts": int32 array}``: run lengths in Fortran order, starting with a
        (possibly empty) run of background, exactly as ``pycocotools`` expects them. (int32 halves the memory of
        the RLEs kept until NMS; ragged masks can have tens of thousands of runs.)
    """
    num, height, width = masks.shape
    full_h, full_w = orig_hw if orig_hw is not None else (height, width)
    x0, y0, x1, y1 = crop_box if crop_box is not None else (0, 0, width, height)
    if (x1 - x0, y1 - y0) != (width, height):
        raise ValueError(f"crop_box {list(crop_box)} does not match the {width} x {height} (w x h) masks")
    total = full_h * full_w
    if total >= 2**31:
        raise ValueError(f"images of {full_h} x {full_w} pixels overflow the int32 RLE counts")
    if num == 0:
        return []
    # The full image in column-major order is [x0 * H zeros] + columns x0..x1-1 (full height) + [zeros]. Only the
    # middle part needs a diff; the zero margins add at most one run boundary on each side.
    columns = masks.transpose(1, 2)
    if y0 != 0 or y1 != full_h:
        padded = masks.new_zeros((num, width, full_h))
        padded[:, :, y0:y1] = columns
        columns = padded
    flat = columns.reshape(num, -1)
    change = (flat[:, 1:] != flat[:, :-1]).nonzero()  # K x 2, sorted by mask then position
    per_mask = torch.bincount(change[:, 0], minlength=num).cpu().numpy()
    starts = (change[:, 1] + (1 + x0 * full_h)).cpu().numpy()  # first pixel of each new run, full-image index
    first = flat[:, 0].cpu().numpy()
    last = flat[:, -1].cpu().numpy()
    begin, end = x0 * full_h, x1 * full_h
    offsets = np.concatenate([[0], np.cumsum(per_mask)])
    rles = []
    for i in range(num):
        lead = [begin] if begin > 0 and first[i] else []  # the mask starts at the top of column x0
        tail = [end] if end < total and last[i] else []  # ... and ends at the bottom of column x1 - 1
        bounds = np.concatenate([[0], lead, starts[offsets[i] : offsets[i + 1]], tail, [total]]).astype(np.int64)
        # COCO RLE always starts with a background run, empty when the image starts inside the mask
        counts = np.diff(np.concatenate([[0], bounds] if begin == 0 and first[i] else [bounds])).astype(np.int32)
        rles.append({"size": [full_h, full_w], "counts": counts})
    return rles


def decode_segmentation(segmentation: Union[np.ndarray, Dict[str, Any]]) -> np.ndarray:
    """The ``H x W`` bool mask of a generator record's ``segmentation``, whatever the ``output_mode``.

    Accepts a binary mask, an uncompressed RLE (``counts`` a list or array of run lengths) or a COCO compressed
    RLE (``counts`` a ``str`` / ``bytes``; decoded without pycocotools).
    """
    if isinstance(segmentation, np.ndarray):
        if segmentation.ndim != 2:
            raise ValueError(f"a binary mask must be H x W, got shape {segmentation.shape}")
        return segmentation.astype(bool, copy=False)
    return decode_rle(segmentation)


# ---------------------------------------------------------------------------------------------------- mask records
class _MaskRecords:
    """Per-mask data in batched form: tensors with one row per mask, and the masks themselves as RLEs."""

    def __init__(self, rles: Optional[List[Dict[str, Any]]] = None, **tensors: torch.Tensor) -> None:
        self.rles = rles if rles is not None else []
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        self.tensors[name] = value

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows given by ``keep`` (indices, in that order, or a bool mask)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        self.tensors = {name: value[keep.to(value.device)] for name, value in self.tensors.items()}
        self.rles = [self.rles[i] for i in keep.tolist()]

    @staticmethod
    def concat(parts: Sequence["_MaskRecords"]) -> "_MaskRecords":
        parts = [p for p in parts if len(p) > 0]
        if not parts:
            return _MaskRecords()
        names = parts[0].tensors.keys()
        tensors = {name: torch.cat([p.tensors[name] for p in parts]) for name in names}
        return _MaskRecords([rle for p in parts for rle in p.rles], **tensors)


def _count_above(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """``N x H x W`` logits -> ``N`` int32 counts of pixels above ``threshold`` (a uint8 sum is ~2x faster)."""
    return (logits > threshold).view(torch.uint8).sum((-2, -1), dtype=torch.int32)


# ------------------------------------------------------------------------------------------------------ validation
def _check_number(name: str, value: Any, low: float, high: float = math.inf, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if not isinstance(value, kind) or isinstance(value, bool) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {what} {bounds}, got {value!r}")


def _check_point_grids(point_grids: Sequence[np.ndarray], crop_n_layers: int) -> List[np.ndarray]:
    if not isinstance(point_grids, (list, tuple)):
        raise ValueError("point_grids must be a list of N x 2 arrays (one per crop layer) of points in [0, 1]")
    if len(point_grids) < crop_n_layers + 1:
        raise ValueError(f"point_grids has {len(point_grids)} grids, crop_n_layers={crop_n_layers} needs one per layer")
    grids = []
    for i, grid in enumerate(point_grids):
        grid = numeric_array(grid, f"point_grids[{i}]")
        if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
            raise ValueError(f"point_grids[{i}] must be a non-empty N x 2 array of (x, y), got shape {grid.shape}")
        if not np.all(np.isfinite(grid)) or grid.min() < 0 or grid.max() > 1:
            raise ValueError(f"point_grids[{i}] must hold coordinates normalised to [0, 1]")
        grids.append(grid)
    return grids


def _as_image(image: Union[np.ndarray, Image.Image]) -> np.ndarray:
    """``H x W x 3`` uint8 RGB array; anything else is refused (no silent gray / RGBA conversion)."""
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be an H x W x 3 uint8 RGB numpy array or a PIL image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an H x W x 3 (RGB) array, got shape {image.shape}")
    return to_rgb_array(image)


# ------------------------------------------------------------------------------------------------------- generator
class SAMV2AutomaticMaskGenerator:
    """Generate masks for everything in an image with SAM 2 / SAM 2.1.

    A grid of ``points_per_side ** 2`` single-point prompts (or explicit ``point_grids``) is run through the model
    ``points_per_batch`` points at a time; each point gives ``3`` masks (``1`` without ``multimask_output``).
    Masks are kept when their predicted IoU is above ``pred_iou_thresh`` and their stability score (IoU of the
    masks thresholded at ``mask_threshold +- stability_score_offset``) at least ``stability_score_thresh``; masks
    touching a crop border that is not an image border are dropped; duplicates are removed by box NMS
    (``box_nms_thresh`` within a crop, ``crop_nms_thresh`` across crops, preferring masks from smaller crops).
    With ``crop_n_layers > 0`` the same runs on ``(2 ** i) ** 2`` overlapping crops for layer ``i = 1 ..``, with
    ``crop_n_points_downscale_factor ** i`` times fewer points per side. ``use_m2m`` refines every mask once,
    feeding its low-resolution logits back as a mask prompt. ``min_mask_region_area`` > 0 flips holes and
    sprinkles of at most that many pixels of the low-resolution logits (see the module docstring).

    Model choice, as for :class:`SAMV2ImagePredictor`: one ``use_default_samv2*_{t,s,bplus,l}=True`` flag, or a
    ``samv2_cfg`` dict (with ``ckptpath``), or ``model=``: an already built :class:`SAMV2` or an existing
    :class:`SAMV2ImagePredictor`, whose model is then shared (not loaded again, not moved unless ``device`` is
    given; the predictor's own image state is not touched). ``device`` defaults to the shared model's, else CPU.
    ``onnxdir`` (with ``providers``) runs the model exported by ``ssseg-samv2 export`` on ONNX Runtime instead.

    Args:
        output_mode: ``"binary_mask"`` (``H x W`` bool arrays), ``"uncompressed_rle"`` or ``"coco_rle"``
            (pycocotools-compatible compressed RLE, made without pycocotools). :func:`decode_segmentation` turns any
            of them back into a mask.
        progress: show a progress bar over point batches (and crops).
    """

    def __init__(
        self,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: float = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        samv2_cfg: Optional[Dict[str, Any]] = None,
        use_default_samv2_t: bool = False,
        use_default_samv2_s: bool = False,
        use_default_samv2_bplus: bool = False,
        use_default_samv2_l: bool = False,
        use_default_samv21_t: bool = False,
        use_default_samv21_s: bool = False,
        use_default_samv21_bplus: bool = False,
        use_default_samv21_l: bool = False,
        ckptpath: Optional[str] = None,
        device: Optional[Union[str, torch.device]] = None,
        apply_postprocessing: bool = True,
        model: Optional[Union[SAMV2, SAMV2ImagePredictor]] = None,
        progress: bool = False,
        onnxdir: Optional[str] = None,
        providers: Optional[Sequence[Any]] = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side and point_grids must be given (set the other to None)")
        _check_number("crop_n_layers", crop_n_layers, 0, MAX_CROP_LAYERS, integer=True)
        _check_number("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1, integer=True)
        if points_per_side is not None:
            _check_number("points_per_side", points_per_side, 1, MAX_POINTS_PER_SIDE, integer=True)
            smallest = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
            if smallest < 1:
                raise ValueError(
                    f"points_per_side={points_per_side} leaves no point in crop layer {crop_n_layers} after "
                    f"downscaling by crop_n_points_downscale_factor={crop_n_points_downscale_factor} per layer"
                )
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = _check_point_grids(point_grids, crop_n_layers)
        _check_number("points_per_batch", points_per_batch, 1, integer=True)
        for name, value in [
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
        ]:
            _check_number(name, value, 0.0, 1.0)
        _check_number("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0)
        _check_number("stability_score_offset", stability_score_offset, 0.0)
        _check_number("mask_threshold", mask_threshold, -math.inf)
        _check_number("min_mask_region_area", min_mask_region_area, 0.0)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {output_mode!r}; choose one of {', '.join(OUTPUT_MODES)}")

        if isinstance(model, SAMV2ImagePredictor):
            model = model.model
        # The predictor's own threshold stays at 0: the official generator only changes the holes / sprinkles
        # areas of its predictor, whose components are therefore always split at logit 0.
        self.predictor = SAMV2ImagePredictor(
            samv2_cfg=samv2_cfg,
            use_default_samv2_t=use_default_samv2_t,
            use_default_samv2_s=use_default_samv2_s,
            use_default_samv2_bplus=use_default_samv2_bplus,
            use_default_samv2_l=use_default_samv2_l,
            use_default_samv21_t=use_default_samv21_t,
            use_default_samv21_s=use_default_samv21_s,
            use_default_samv21_bplus=use_default_samv21_bplus,
            use_default_samv21_l=use_default_samv21_l,
            ckptpath=ckptpath,
            device=device,
            model=model,
            max_hole_area=min_mask_region_area,
            max_sprinkle_area=min_mask_region_area,
            apply_postprocessing=apply_postprocessing,
            onnxdir=onnxdir,
            providers=providers,
        )
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = flag(use_m2m, "use_m2m")
        self.multimask_output = flag(multimask_output, "multimask_output")
        self.progress = progress

    @property
    def model(self) -> SAMV2:
        return self.predictor.model

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def generate(self, image: Union[np.ndarray, Image.Image], progress: Optional[bool] = None) -> List[Dict[str, Any]]:
        """Masks of everything in ``image`` (``H x W x 3`` uint8 RGB array, or a PIL image).

        Returns:
            One dict per mask, sorted as the official generator sorts them:

            * ``segmentation``: ``H x W`` bool array, or an RLE dict (``output_mode``);
            * ``area`` (int, pixels); ``bbox``: ``[x, y, w, h]`` of the mask's box (``w``/``h`` measured between
              the first and last mask pixels, as in SAM);
            * ``predicted_iou`` and ``stability_score`` (floats);
            * ``point_coords``: ``[[x, y]]`` the prompt that produced the mask, in image pixels;
            * ``crop_box``: ``[x, y, w, h]`` of the crop the mask was predicted in.
        """
        image = _as_image(image)
        records = self._generate_masks(image, self.progress if progress is None else progress)
        if len(records) == 0:
            return []
        # the official format: counts as a list of Python ints
        rles = [{"size": rle["size"], "counts": rle["counts"].tolist()} for rle in records.rles]
        if self.output_mode == "coco_rle":
            segmentations = [coco_encode_rle(rle) for rle in rles]
        elif self.output_mode == "binary_mask":
            segmentations = [rle_to_mask(rle) for rle in records.rles]
        else:
            segmentations = rles
        # float32 on the CPU, as in the official records (their values are float32 numbers); areas stay integers
        values = {name: tensor.float().cpu().numpy() for name, tensor in records.tensors.items() if name != "areas"}
        values["areas"] = records["areas"].cpu().numpy()
        for name in ("boxes", "crop_boxes"):
            values[name][:, 2:] -= values[name][:, :2]  # XYXY -> XYWH
        return [
            {
                "segmentation": segmentations[i],
                "area": int(values["areas"][i]),
                "bbox": values["boxes"][i].tolist(),
                "predicted_iou": values["iou_preds"][i].item(),
                "point_coords": [values["points"][i].tolist()],
                "stability_score": values["stability_score"][i].item(),
                "crop_box": values["crop_boxes"][i].tolist(),
            }
            for i in range(len(records))
        ]

    __call__ = generate

    # ------------------------------------------------------------------ crops
    def _generate_masks(self, image: np.ndarray, progress: bool) -> _MaskRecords:
        orig_hw = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_hw, self.crop_n_layers, self.crop_overlap_ratio)
        total = sum(math.ceil(len(self.point_grids[layer]) / self.points_per_batch) for layer in layer_idxs)
        bar = tqdm(total=total, disable=not progress, desc="point batches", unit="batch")
        try:
            parts = []
            for i, (crop_box, layer_idx) in enumerate(zip(crop_boxes, layer_idxs)):
                bar.set_postfix_str(f"crop {i + 1}/{len(crop_boxes)}")
                parts.append(self._process_crop(image, crop_box, layer_idx, orig_hw, bar))
        finally:
            bar.close()
        records = _MaskRecords.concat(parts)
        if len(crop_boxes) > 1 and len(records) > 0:
            # Across crops, prefer masks from smaller crops.
            scores = 1 / box_area(records["crop_boxes"]).to(records["boxes"].device)
            keep = batched_nms(
                records["boxes"].float(),
                scores,
                torch.zeros_like(records["boxes"][:, 0]),
                iou_threshold=self.crop_nms_thresh,
            )
            records.filter(keep)
        return records

    def _process_crop(
        self, image: np.ndarray, crop_box: List[int], layer_idx: int, orig_hw: Tuple[int, int], bar: tqdm
    ) -> _MaskRecords:
        x0, y0, x1, y1 = crop_box
        crop_hw = (y1 - y0, x1 - x0)
        num_batches = math.ceil(len(self.point_grids[layer_idx]) / self.points_per_batch)
        if min(crop_hw) <= 0:
            # tiny images (a few pixels) give empty crops in the deeper layers: nothing to predict there
            bar.update(num_batches)
            return _MaskRecords()
        self.predictor.setimage(image[y0:y1, x0:x1, :])
        # the grid in crop pixels (float64, then float32 on the device: the official rounding)
        points = self.point_grids[layer_idx] * np.array(crop_hw, dtype=np.float64)[None, ::-1]
        points = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        parts = []
        for start in range(0, len(points), self.points_per_batch):
            parts.append(self._process_batch(points[start : start + self.points_per_batch], crop_hw, crop_box, orig_hw))
            bar.update(1)
        self.predictor.resetpredictor()
        records = _MaskRecords.concat(parts)
        if len(records) == 0:
            return records
        # Remove duplicates within the crop, best predicted IoU first.
        keep = batched_nms(
            records["boxes"].float(),
            records["iou_preds"],
            torch.zeros_like(records["boxes"][:, 0]),
            iou_threshold=self.box_nms_thresh,
        )
        records.filter(keep)
        records["boxes"] = uncrop_boxes_xyxy(records["boxes"], crop_box)
        records["points"] = uncrop_points(records["points"], crop_box)
        records["crop_boxes"] = torch.tensor([crop_box], device=self.device).repeat(len(records), 1)
        return records

    # ------------------------------------------------------------------ point batches
    def _decode(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: Optional[torch.Tensor],
        multimask_output: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decoder run on the current crop's embedding, without upsampling (that is done for survivors only).

        Args:
            coords: ``B x N x 2`` points in the model input frame; labels: ``B x N``.
            mask_input: ``B x 1 x 4h x 4w`` low-resolution logits or None.

        Returns:
            ``(low_res_logits B x C x 4h x 4w, iou_preds B x C)``, float32, logits not clamped.
        """
        model = self.predictor.model
        features = self.predictor.features
        low_res, iou_preds, _, _ = model.decode_prompts(
            features["image_embed"][-1:],
            [level[-1:] for level in features["high_res_feats"]],
            (coords, labels),
            mask_input,
            multimask_output,
            repeat_image=coords.shape[0] > 1,
        )
        return low_res.float(), iou_preds.float()

    def _process_batch(
        self, points: torch.Tensor, crop_hw: Tuple[int, int], crop_box: List[int], orig_hw: Tuple[int, int]
    ) -> _MaskRecords:
        """Masks of one batch of ``B`` points (``B x 2``, crop pixels) that pass every per-mask filter."""
        in_points = self.predictor.transforms.transform_coords(points, normalize=True, orig_hw=crop_hw)
        labels = torch.ones(len(points), dtype=torch.int, device=points.device)
        low_res, iou_preds = self._decode(in_points[:, None], labels[:, None], None, self.multimask_output)
        masks_per_point = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou_preds = iou_preds.flatten(0, 1)
        points = points.repeat_interleave(masks_per_point, dim=0)
        if self.use_m2m:
            low_res, iou_preds = self._refine_with_m2m(points, crop_hw, low_res)

        keep = torch.arange(len(iou_preds), device=iou_preds.device)
        if self.pred_iou_thresh > 0.0:
            keep = (iou_preds > self.pred_iou_thresh).nonzero().flatten()
        return self._finish_masks(low_res[keep], iou_preds[keep], points[keep], crop_hw, crop_box, orig_hw)

    def _refine_with_m2m(
        self, points: torch.Tensor, crop_hw: Tuple[int, int], low_res: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One more decoder run per mask with its own (clamped) low-res logits as mask prompt; single output.

        The refinement runs ``points_per_batch`` masks at a time, as the official generator does, so that every
        decoder call sees the same batch as there.
        """
        in_points = self.predictor.transforms.transform_coords(points, normalize=True, orig_hw=crop_hw)
        labels = torch.ones(len(points), dtype=torch.int, device=points.device)
        mask_input = torch.clamp(low_res, -32.0, 32.0)[:, None]
        refined, refined_iou = [], []
        for start in range(0, len(points), self.points_per_batch):
            part = slice(start, start + self.points_per_batch)
            logits, iou = self._decode(in_points[part, None], labels[part, None], mask_input[part], False)
            refined.append(logits[:, 0])
            refined_iou.append(iou[:, 0])
        return torch.cat(refined), torch.cat(refined_iou)

    def _finish_masks(
        self,
        low_res: torch.Tensor,
        iou_preds: torch.Tensor,
        points: torch.Tensor,
        crop_hw: Tuple[int, int],
        crop_box: List[int],
        orig_hw: Tuple[int, int],
    ) -> _MaskRecords:
        """Upsample the ``N x 4h x 4w`` logits that passed the IoU filter, filter by stability and crop edges, and
        encode the survivors as RLE, a chunk at a time so that only a few full-size masks exist at once."""
        height, width = crop_hw
        budget = CUDA_CHUNK_BYTES if low_res.is_cuda else CPU_CHUNK_BYTES
        chunk = max(1, budget // (4 * height * width))
        parts = []
        for start in range(0, len(low_res), chunk):
            part = slice(start, start + chunk)
            # holes / sprinkles at low resolution (min_mask_region_area), then bilinear upsampling to the crop
            logits = self.predictor.transforms.postprocess_masks(low_res[part, None], crop_hw)[:, 0]
            inner = _count_above(logits, self.mask_threshold + self.stability_score_offset)
            outer = _count_above(logits, self.mask_threshold - self.stability_score_offset)
            stability = inner / outer  # int32 / int32 -> float32, as the official score
            keep = torch.arange(len(logits), device=logits.device)
            if self.stability_score_thresh > 0.0:
                keep = (stability >= self.stability_score_thresh).nonzero().flatten()
            binary = (logits > self.mask_threshold)[keep]
            del logits
            boxes = batched_mask_to_box(binary)
            inside = (~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_hw[1], orig_hw[0]])).nonzero().flatten()
            if len(inside) < len(keep):
                keep, binary, boxes = keep[inside], binary[inside], boxes[inside]
            if len(keep) == 0:
                continue
            rles = encode_masks_as_rle(binary, crop_box, orig_hw)
            areas = torch.tensor([int(rle["counts"][1::2].sum(dtype=np.int64)) for rle in rles])
            parts.append(
                _MaskRecords(
                    rles,
                    boxes=boxes,
                    iou_preds=iou_preds[part][keep],
                    points=points[part][keep],
                    stability_score=stability[keep],
                    areas=areas.to(boxes.device),
                )
            )
        return _MaskRecords.concat(parts)

    # ------------------------------------------------------------------ SAM 1 style clean-up
    @staticmethod
    def postprocess_small_regions(
        anns: List[Dict[str, Any]], min_area: float, nms_thresh: float
    ) -> List[Dict[str, Any]]:
        """SAM 1's full-resolution clean-up of :meth:`generate` records; never run by :meth:`generate` itself (nor by
        sam2 1.1.0's generator, which defines it but does not call it).

        Fills holes and removes islands of less than ``min_area`` pixels in every mask (keeping the largest island
        if all are small), then reruns box NMS (``nms_thresh``) preferring masks that did not change. Returns the
        kept records, with binary-mask ``segmentation`` and recomputed ``area`` and ``bbox``.
        """
        if len(anns) == 0:
            return []
        masks, unchanged = [], []
        for ann in anns:
            mask, holes = remove_small_regions(decode_segmentation(ann["segmentation"]), min_area, mode="holes")
            mask, islands = remove_small_regions(mask, min_area, mode="islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (holes or islands)))
        boxes = batched_mask_to_box(torch.stack(masks))
        keep = batched_nms(boxes.float(), torch.tensor(unchanged), torch.zeros(len(anns)), iou_threshold=nms_thresh)
        out = []
        for i in keep.tolist():
            x_min, y_min, x_max, y_max = boxes[i].float().tolist()
            bbox = [x_min, y_min, x_max - x_min, y_max - y_min]
            out.append({**anns[i], "segmentation": masks[i].numpy(), "area": int(masks[i].sum()), "bbox": bbox})
        return out
