"""Export a SAM 2 model to four ONNX graphs and the ``config.json`` the host code needs (see docs/export.md)."""

import contextlib
import json
import os
import time
import warnings
from typing import Any, Callable, Dict, Iterator, Optional

import torch

from ssseg.modules.models.segmentors.samv2 import onnxbackend as spec
from ssseg.modules.models.segmentors.samv2.memoryattention import RoPEAttention
from ssseg.modules.models.segmentors.samv2.samv2 import SAMV2
from ssseg.modules.utils.optional import import_optional

from .wrappers import ImageEncoderGraph, MemoryAttentionGraph, MemoryEncoderGraph, PromptDecoderGraph

DEFAULT_OPSET = 18


@contextlib.contextmanager
def real_rope(model: SAMV2) -> Iterator[None]:
    """Rotate with real cos / sin in the memory attention while exporting (complex tensors do not export)."""
    modules = [m for m in model.modules() if isinstance(m, RoPEAttention)]
    for module in modules:
        module.real_rotation = True
    try:
        yield
    finally:
        for module in modules:
            del module.real_rotation  # back to the class default (complex rotation)


def example_inputs(model: SAMV2) -> Dict[str, Dict[str, torch.Tensor]]:
    """Inputs the graphs are traced with: 2 prompt sets of 3 points, 3 memory frames, 4 object pointers, 2 objects
    (no size 0 or 1, which the exporter would fix)."""
    gen = torch.Generator().manual_seed(0)
    size, side = model.image_size, model.image_size // model.backbone_stride
    c, d = model.hidden_dim, model.mem_dim
    batch, frames, ptrs = 2, 3, 4
    return {
        "image_encoder": {"image": torch.randn(1, 3, size, size, generator=gen)},
        "prompt_decoder": {
            "image_embed": torch.randn(1, c, side, side, generator=gen),
            "high_res_feats_0": torch.randn(1, c // 8, side * 4, side * 4, generator=gen),
            "high_res_feats_1": torch.randn(1, c // 4, side * 2, side * 2, generator=gen),
            "point_coords": torch.rand(batch, 3, 2, generator=gen) * size,
            "point_labels": torch.tensor([[1, 0, 1], [2, 3, 1]], dtype=torch.int32),
            "mask_input": torch.randn(batch, 1, side * 4, side * 4, generator=gen),
            "has_mask_input": torch.ones(1),
        },
        "memory_attention": {
            "curr": torch.randn(side * side, batch, c, generator=gen),
            "curr_pos": torch.randn(side * side, batch, c, generator=gen),
            "maskmem_features": torch.randn(frames, batch, d, side, side, generator=gen),
            "maskmem_pos_enc": torch.randn(frames, batch, d, side, side, generator=gen),
            "maskmem_tpos_index": torch.tensor([model.num_maskmem - 1, 0, 1])[:frames],
            "obj_ptrs": torch.randn(ptrs, batch, c, generator=gen),
            "obj_ptr_rel_pos": torch.rand(ptrs, generator=gen),
        },
        "memory_encoder": {
            "pix_feat": torch.randn(batch, c, side, side, generator=gen),
            "mask_for_mem": torch.rand(batch, 1, size, size, generator=gen),
            "object_score_logits": torch.tensor([[1.0], [-1.0]]),
        },
    }


def dynamic_shapes() -> Dict[str, Dict[str, Any]]:
    """Dynamic axes of every graph (by input name): prompt sets, points, objects, memory frames, pointers."""
    Dim = torch.export.Dim
    prompts, points = Dim("num_prompts"), Dim("num_points")
    objects, frames, ptrs = Dim("num_objects"), Dim("num_memories"), Dim("num_obj_ptrs", min=0)
    return {
        "image_encoder": None,
        "prompt_decoder": {
            "image_embed": None,
            "high_res_feats_0": None,
            "high_res_feats_1": None,
            "point_coords": {0: prompts, 1: points},
            "point_labels": {0: prompts, 1: points},
            "mask_input": {0: prompts},
            "has_mask_input": None,
        },
        "memory_attention": {
            "curr": {1: objects},
            "curr_pos": {1: objects},
            "maskmem_features": {0: frames, 1: objects},
            "maskmem_pos_enc": {0: frames, 1: objects},
            "maskmem_tpos_index": {0: frames},
            "obj_ptrs": {0: ptrs, 1: objects},
            "obj_ptr_rel_pos": {0: ptrs},
        },
        "memory_encoder": {"pix_feat": {0: objects}, "mask_for_mem": {0: objects}, "object_score_logits": {0: objects}},
    }


GRAPHS = {
    "image_encoder": (ImageEncoderGraph, spec.IMAGE_ENCODER_INPUTS, spec.IMAGE_ENCODER_OUTPUTS),
    "prompt_decoder": (PromptDecoderGraph, spec.PROMPT_DECODER_INPUTS, spec.PROMPT_DECODER_OUTPUTS),
    "memory_attention": (MemoryAttentionGraph, spec.MEMORY_ATTENTION_INPUTS, spec.MEMORY_ATTENTION_OUTPUTS),
    "memory_encoder": (MemoryEncoderGraph, spec.MEMORY_ENCODER_INPUTS, spec.MEMORY_ENCODER_OUTPUTS),
}


def host_config(model: SAMV2, name: str, apply_postprocessing: bool, opset: int) -> Dict[str, Any]:
    """``config.json``: the model options the host code reads and its few small learned tensors."""
    state = model.state_dict()
    tensors = {}
    for key in spec.HOST_TENSORS:
        if key in state:
            value = state[key].detach().float().cpu()
            tensors[key] = {"shape": list(value.shape), "data": value.flatten().tolist()}
    options = {}
    for key in spec.HOST_OPTIONS:
        value = getattr(model, key)
        options[key] = value if isinstance(value, (bool, int, float)) else float(value)
    return {
        "format_version": spec.FORMAT_VERSION,
        "model": name,
        "opset": opset,
        "apply_postprocessing": apply_postprocessing,
        "mask_input_size": list(model.mask_input_size),
        "feature_side": model.image_size // model.backbone_stride,
        "files": dict(spec.FILES),
        "options": options,
        "tensors": tensors,
    }


def export_model(
    model: SAMV2,
    out_dir: str,
    name: str = "custom",
    opset: int = DEFAULT_OPSET,
    apply_postprocessing: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, float]:
    """Write the four graphs (each checked with ``onnx.checker``) and ``config.json`` to ``out_dir``.

    ``model`` must be an eval-mode CPU float32 SAMV2 built with the same ``apply_postprocessing`` (the decoder's
    dynamic multimask fallback is traced into the graph). Returns the seconds each part took.
    """
    onnx = import_optional("onnx", "onnx", "ssseg-samv2 export")
    import_optional("onnxscript", "onnx", "ssseg-samv2 export")
    if not model.use_high_res_features_in_sam or model.num_maskmem == 0:
        raise ValueError("the export covers SAM 2 models with high-resolution features and a memory (all variants)")
    if not model.directly_add_no_mem_embed:
        raise ValueError("the export needs directly_add_no_mem_embed (set in every official config)")
    model = model.eval()
    os.makedirs(out_dir, exist_ok=True)
    inputs, shapes = example_inputs(model), dynamic_shapes()
    times = {}
    with real_rope(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for part, (graph_cls, input_names, output_names) in GRAPHS.items():
            start = time.perf_counter()
            path = os.path.join(out_dir, spec.FILES[part])
            torch.onnx.export(
                graph_cls(model),
                tuple(inputs[part].values()),
                path,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=None if shapes[part] is None else tuple(shapes[part].values()),
                external_data=False,
                verbose=False,
            )
            onnx.checker.check_model(path, full_check=True)
            times[part] = time.perf_counter() - start
            if log is not None:
                log(f"{spec.FILES[part]}: {times[part]:.1f} s")
    config = host_config(model, name, apply_postprocessing, opset)
    with open(os.path.join(out_dir, spec.CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1)
    return times
