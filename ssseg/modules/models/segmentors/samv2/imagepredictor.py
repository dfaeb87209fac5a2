"""Prompt-based image segmentation: compute an image embedding once, then predict masks from points/boxes/masks."""

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .build import selectmodel
from .inputs import flag, numeric_array
from .samv2 import SAMV2
from .transforms import SAMV2Transforms

ImageLike = Union[np.ndarray, Image.Image]


def to_rgb_array(image: ImageLike, what: str = "image") -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB array from a numpy array (HxW, HxWx1, HxWx3, HxWx4) or a PIL image."""
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            # PIL's RGB conversion clips such values at 255, which would give a silently white image
            raise ValueError(
                f"{what} is a {image.mode} (16/32-bit) PIL image; scale it to 8 bits first, e.g. "
                f"Image.fromarray((np.asarray(img) / 257).astype(np.uint8)) for 16-bit"
            )
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{what} is empty: size {image.size}")
        return np.array(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{what} must be a numpy array (H x W x 3, uint8 RGB) or a PIL image, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must have dtype uint8 with values in [0, 255], got dtype {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be H x W x 3 (RGB), H x W (gray) or H x W x 4 (RGBA), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


class SAMV2ImagePredictor:
    """Predict object masks in an image from point, box and mask prompts.

    Exactly one model choice: ``use_default_samv2_{t,s,bplus,l}=True`` (SAM 2 weights),
    ``use_default_samv21_{t,s,bplus,l}=True`` (SAM 2.1 weights), ``samv2_cfg={...}`` (a config dict, with
    ``ckptpath``), or an already built ``model=`` shared with other predictors. ``ckptpath`` (file or URL)
    overrides where the weights come from. ``device`` ('cpu', 'cuda'): where a new model is built (default CPU); a
    given ``model`` stays where it is unless ``device`` is set.
    ``onnxdir=DIR`` instead runs a model exported by ``ssseg-samv2 export`` on ONNX Runtime (``providers``: its
    execution providers, CPU by default), with the same host code (see docs/export.md).

    Postprocessing of the low-resolution logits, before upsampling: background regions of at most
    ``max_hole_area`` pixels are filled and foreground regions of at most ``max_sprinkle_area`` pixels removed.
    """

    def __init__(
        self,
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
        model: Optional[SAMV2] = None,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        apply_postprocessing: bool = True,
        onnxdir: Optional[str] = None,
        providers: Optional[Sequence[Any]] = None,
    ) -> None:
        self.model = selectmodel(
            model=model,
            samv2_cfg=samv2_cfg,
            ckptpath=ckptpath,
            device=device,
            apply_postprocessing=apply_postprocessing,
            onnxdir=onnxdir,
            providers=providers,
            use_default_samv2_t=use_default_samv2_t,
            use_default_samv2_s=use_default_samv2_s,
            use_default_samv2_bplus=use_default_samv2_bplus,
            use_default_samv2_l=use_default_samv2_l,
            use_default_samv21_t=use_default_samv21_t,
            use_default_samv21_s=use_default_samv21_s,
            use_default_samv21_bplus=use_default_samv21_bplus,
            use_default_samv21_l=use_default_samv21_l,
        )
        self.mask_threshold = mask_threshold
        self.transforms = SAMV2Transforms(
            resolution=self.model.image_size,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )
        # feature sizes of the three levels used by the decoder: strides 4, 8 and 16 of the backbone
        side = self.model.image_size // self.model.backbone_stride
        self.bb_feat_sizes = [(side * 4, side * 4), (side * 2, side * 2), (side, side)]
        self.resetpredictor()

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ images
    def resetpredictor(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.features: Optional[Dict[str, Any]] = None
        self.orig_hw: List[Tuple[int, int]] = []
        self.is_image_set = False
        self.is_batch = False

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> Dict[str, Any]:
        """Image embedding (``B x C x h x w``) and the two high-resolution levels of a ``B x 3 x S x S`` batch."""
        return self.model.embed_image(images.to(self.device))

    def setimage(self, image: ImageLike) -> None:
        """Compute the embedding of one image (``H x W x 3`` uint8 RGB array or PIL image; gray/RGBA converted)."""
        image = to_rgb_array(image)
        self.resetpredictor()
        self.features = self.embed(self.transforms(image)[None])
        self.orig_hw = [image.shape[:2]]
        self.is_image_set = True

    def setimagebatch(self, image_list: Sequence[ImageLike]) -> None:
        """Compute the embeddings of a list of images, for :meth:`predictbatch`."""
        if not isinstance(image_list, (list, tuple)) or len(image_list) == 0:
            raise ValueError(
                "setimagebatch expects image_list to be a non-empty list of images (H x W x 3 uint8 RGB arrays), "
                f"got {'an empty list' if isinstance(image_list, (list, tuple)) else type(image_list).__name__}"
            )
        images = [to_rgb_array(img, what=f"image_list[{i}]") for i, img in enumerate(image_list)]
        self.resetpredictor()
        self.features = self.embed(self.transforms.forward_batch(images))
        self.orig_hw = [img.shape[:2] for img in images]
        self.is_image_set = True
        self.is_batch = True

    def getimageembedding(self) -> torch.Tensor:
        """The ``B x C x h x w`` embedding of the current image(s) (``1 x 256 x 64 x 64`` for one 1024 image)."""
        if not self.is_image_set:
            raise RuntimeError("no image is set: call setimage(image) before getimageembedding()")
        return self.features["image_embed"]

    # ------------------------------------------------------------------ prompts
    def prepare_prompts(
        self,
        point_coords: Optional[np.ndarray],
        point_labels: Optional[np.ndarray],
        box: Optional[np.ndarray],
        mask_input: Optional[np.ndarray],
        normalize_coords: bool,
        img_idx: int,
    ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Validate prompts and move them to the model's input frame: ``(coords B x N x 2, labels B x N,
        boxes B x 2 x 2, mask_input B x 1 x 4h x 4w)``."""
        height, width = self.orig_hw[img_idx]
        coords = labels = boxes = masks = None
        if point_coords is not None or point_labels is not None:
            if point_coords is None:
                raise ValueError("point_labels were given without point_coords")
            if point_labels is None:
                raise ValueError("point_coords were given without point_labels (1 = foreground, 0 = background)")
            coords = torch.as_tensor(numeric_array(point_coords, "point_coords"), dtype=torch.float, device=self.device)
            label_values = numeric_array(point_labels, "point_labels")
            if not np.all(np.isin(label_values, (-1, 0, 1, 2, 3))):  # checked before the int cast can wrap
                raise ValueError("point_labels must be 1 (foreground), 0 (background) or -1 (padding)")
            labels = torch.as_tensor(label_values, dtype=torch.int, device=self.device)
            if coords.ndim not in (2, 3) or coords.shape[-1] != 2:
                raise ValueError(
                    f"point_coords must be N x 2 or B x N x 2 (x, y) pixels, got shape {tuple(coords.shape)}"
                )
            if labels.shape != coords.shape[:-1]:
                raise ValueError(
                    f"point_labels must have one label per point: shape {tuple(coords.shape[:-1])}, "
                    f"got {tuple(labels.shape)}"
                )
            if not torch.all((labels >= -1) & (labels <= 3)):
                raise ValueError("point_labels must be 1 (foreground), 0 (background) or -1 (padding)")
            # [0, 1] without normalize_coords (as the video predictor checks); also keeps huge values from
            # overflowing float32 into inf
            limit_w, limit_h = (width, height) if normalize_coords else (1.0, 1.0)
            outside = (
                (coords[..., 0] < 0) | (coords[..., 0] > limit_w) | (coords[..., 1] < 0) | (coords[..., 1] > limit_h)
            )
            if torch.any(outside):
                frame = (
                    f"the {width} x {height} (W x H) image" if normalize_coords else "[0, 1] (normalize_coords=False)"
                )
                raise ValueError(f"point_coords lie outside {frame}: {coords[outside].tolist()[:8]}")
            coords = self.transforms.transform_coords(coords, normalize=normalize_coords, orig_hw=(height, width))
            if coords.ndim == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            boxes = torch.as_tensor(numeric_array(box, "box"), dtype=torch.float, device=self.device)
            if boxes.shape[-1:] != (4,) or boxes.ndim > 2:
                raise ValueError(f"box must be 4 values (x0, y0, x1, y1) or B x 4, got shape {tuple(boxes.shape)}")
            boxes2d = boxes.reshape(-1, 4)
            if torch.any(boxes2d[:, 2] < boxes2d[:, 0]) or torch.any(boxes2d[:, 3] < boxes2d[:, 1]):
                raise ValueError(f"box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {boxes2d.tolist()}")
            limit_w, limit_h = (width, height) if normalize_coords else (1.0, 1.0)
            off = (boxes2d[:, 2] < 0) | (boxes2d[:, 3] < 0) | (boxes2d[:, 0] > limit_w) | (boxes2d[:, 1] > limit_h)
            if torch.any(off):
                frame = (
                    f"the {width} x {height} (W x H) image" if normalize_coords else "[0, 1] (normalize_coords=False)"
                )
                raise ValueError(f"box lies entirely outside {frame}: {boxes2d[off].tolist()[:8]}")
            if not torch.all(torch.isfinite(boxes)):  # finite in float64 but beyond float32's range
                raise ValueError(f"box values are too large: {boxes2d.tolist()[:8]}")
            boxes = self.transforms.transform_boxes(boxes, normalize=normalize_coords, orig_hw=(height, width))
        if mask_input is not None:
            masks = torch.as_tensor(numeric_array(mask_input, "mask_input"), dtype=torch.float, device=self.device)
            if masks.ndim == 3:
                masks = masks[None]
            expected = self.model.mask_input_size
            if masks.ndim != 4 or masks.shape[1] != 1 or tuple(masks.shape[-2:]) != tuple(expected):
                raise ValueError(
                    f"mask_input must be 1 x {expected[0]} x {expected[1]} (or B x 1 x ...) low-resolution logits "
                    f"as returned by predict, got shape {tuple(masks.shape)}"
                )
            if not torch.all(torch.isfinite(masks)):  # finite in float64 but beyond float32's range
                raise ValueError("mask_input values are too large for float32 logits")
        if coords is not None and boxes is not None and coords.shape[0] != boxes.reshape(-1, 2, 2).shape[0]:
            raise ValueError(
                f"{coords.shape[0]} point sets and {boxes.reshape(-1, 2, 2).shape[0]} boxes: counts must match "
                "(point_coords B x N x 2 with box B x 4)"
            )
        return coords, labels, boxes, masks

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict from prompts already in the model input frame.

        Returns ``(masks B x C x H x W, scores B x C, low_res_logits B x C x 4h x 4w)``; masks are boolean unless
        ``return_logits``; low-resolution logits are clamped to [-32, 32] so that they can be fed back as mask input.
        """
        if not self.is_image_set:
            raise RuntimeError("no image is set: call setimage(image) (or setimagebatch) before predicting")
        points = None if point_coords is None else (point_coords, point_labels)
        if boxes is not None:
            # a box is two points labelled 2 (top-left) and 3 (bottom-right), placed before the clicks
            box_coords = boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).repeat(box_coords.size(0), 1)
            if points is None:
                points = (box_coords, box_labels)
            else:
                points = (torch.cat([box_coords, points[0]], dim=1), torch.cat([box_labels, points[1]], dim=1))
        low_res, scores, _, _ = self.model.decode_prompts(
            self.features["image_embed"][img_idx].unsqueeze(0),
            [level[img_idx].unsqueeze(0) for level in self.features["high_res_feats"]],
            points,
            mask_input,
            multimask_output,
            repeat_image=points is not None and points[0].shape[0] > 1,
        )
        masks = self.transforms.postprocess_masks(low_res, self.orig_hw[img_idx])
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, low_res

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for the current image.

        Args:
            point_coords: ``N x 2`` (x, y) pixel coordinates, or ``B x N x 2`` for B prompts at once.
            point_labels: ``N`` (or ``B x N``) labels: 1 foreground, 0 background.
            box: ``4`` (x0, y0, x1, y1) pixels, or ``B x 4`` boxes.
            mask_input: ``1 x 256 x 256`` low-resolution logits from a previous call (or ``B x 1 x 256 x 256``).
            multimask_output: three candidate masks instead of one (best for a single ambiguous click).
            return_logits: return logits instead of boolean masks.
            normalize_coords: coordinates are in pixels of the original image (else of the model input).

        Returns:
            ``(masks C x H x W, scores C, low_res_logits C x 256 x 256)`` with C = 3 or 1; with B prompts each has a
            leading ``B`` axis.
        """
        if not self.is_image_set:
            raise RuntimeError("no image is set: call setimage(image) before predict()")
        multimask_output = flag(multimask_output, "multimask_output")
        return_logits, normalize_coords = (
            flag(return_logits, "return_logits"),
            flag(normalize_coords, "normalize_coords"),
        )
        prompts = self.prepare_prompts(point_coords, point_labels, box, mask_input, normalize_coords, img_idx=-1)
        masks, scores, low_res = self.predict_torch(*prompts, multimask_output, return_logits=return_logits)
        return tuple(x.squeeze(0).float().cpu().numpy() for x in (masks, scores, low_res))

    def predictbatch(
        self,
        point_coords_batch: Optional[Sequence[np.ndarray]] = None,
        point_labels_batch: Optional[Sequence[np.ndarray]] = None,
        box_batch: Optional[Sequence[np.ndarray]] = None,
        mask_input_batch: Optional[Sequence[np.ndarray]] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
        """:meth:`predict` on each image of :meth:`setimagebatch`, with one prompt entry per image.

        Returns lists (one item per image) of masks, scores and low-resolution logits.
        """
        if not self.is_image_set or not self.is_batch:
            raise RuntimeError("no image batch is set: call setimagebatch(list_of_images) before predictbatch()")
        multimask_output = flag(multimask_output, "multimask_output")
        return_logits, normalize_coords = (
            flag(return_logits, "return_logits"),
            flag(normalize_coords, "normalize_coords"),
        )
        num_images = len(self.orig_hw)
        for name, values in [
            ("point_coords_batch", point_coords_batch),
            ("point_labels_batch", point_labels_batch),
            ("box_batch", box_batch),
            ("mask_input_batch", mask_input_batch),
        ]:
            if values is None:
                continue
            try:
                count = len(values)
            except TypeError:
                raise TypeError(f"{name} must be a list with one entry per image, got {values!r:.80}") from None
            if count != num_images:
                raise ValueError(f"{name} has {count} entries but {num_images} images are set")
        outputs = ([], [], [])
        for i in range(num_images):
            prompts = self.prepare_prompts(
                *(
                    None if values is None else values[i]
                    for values in (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)
                ),
                normalize_coords,
                img_idx=i,
            )
            result = self.predict_torch(*prompts, multimask_output, return_logits=return_logits, img_idx=i)
            for store, x in zip(outputs, result):
                store.append(x.squeeze(0).float().cpu().numpy())
        return outputs

    # the official sam2 names
    set_image = setimage
    set_image_batch = setimagebatch
    predict_batch = predictbatch
    get_image_embedding = getimageembedding
    reset_predictor = resetpredictor
