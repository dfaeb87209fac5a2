"""Deterministic random SAM 2 / SAM 2.1 weights that exercise every code path.

No real checkpoint is available where the tests run, and plain random initialisation makes SAM 2 degenerate: object
scores come out negative (every video mask becomes the "no object" placeholder), mask logits hover around the
threshold, zero-initialised parameters hide the code that uses them, and the memory read-out is a near-uniform average.
The rules in ``/work/shared/notes/random-weights.md`` fix this; they are implemented here, keyed on state-dict names
so that the same weights load into the reference implementation and into ours.

Measuring with the official predictors showed that the notes' rules alone still leave the image masks degenerate
(each mask token's area fixed at ~97% / ~70% / ~5% of the image whatever the prompt; best masks of different prompts
with IoU up to 0.99), so three more treatments are applied to the mask decoder:

- the hypernetworks' last Linear is double-centred (:func:`_center`), removing a large prompt-independent offset;
- the q/k weights of its token self-attention and token-to-image attentions are scaled (``DECODER_QK_SCALE``);
- the learned tokens are drawn with std ``TOKEN_STD`` instead of 1, so the point's positional encoding weighs more.

With them the best masks of eight clicks cover 9-66% of the image with a mean pairwise IoU of ~0.27 (SAM 2.1 tiny).

Every entry gets its own generator, seeded from ``(seed, crc32(key))``. Values are drawn in float64 from uniform
variates only and cast to float32 once, so they depend on the key, its shape and the seed, and not on key order,
thread count or the library's normal-sampling kernels. Entries that SAM 2 and SAM 2.1 share therefore get identical
values. The one extra input is the depth of an MLP (to find its *last* layer), read from the reference's key set.
"""

import hashlib
import math
import os
import re
import tempfile
import zlib
from typing import Dict, Mapping, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "BIAS_RANGE",
    "HYPERNET_LAST_SCALE",
    "IOU_HEAD_LAST_SCALE",
    "LAYERNORM_BIAS_RANGE",
    "LAYERNORM_WEIGHT_RANGE",
    "MEMATTN_QKV_SCALE",
    "OBJ_SCORE_LAST_BIAS",
    "UPSCALING_TAP_PULL",
    "VISIBLE_RANGE",
    "WEIGHT_GAIN",
    "DECODER_QK_SCALE",
    "TOKEN_STD",
    "random_state_dict",
    "state_dict_digest",
    "write_random_checkpoint",
]

# ----------------------------------------------------------------------------------------------------------------------
# Tuned constants. They were checked with the official SAM 2 / SAM 2.1 tiny image and video predictors on a synthetic
# image (see tests/samv2/test_randomweights.py); change them only together with those checks.
# ----------------------------------------------------------------------------------------------------------------------
# Linear / conv weights: uniform with std WEIGHT_GAIN / sqrt(fan_in), so that every layer maps O(1) to O(1).
WEIGHT_GAIN = 1.0
# Biases of linear / conv layers: uniform in [-BIAS_RANGE, BIAS_RANGE].
BIAS_RANGE = 0.1
# LayerNorm affine parameters: visibly different from the identity (1, 0) so that a missing or misplaced norm shows.
LAYERNORM_WEIGHT_RANGE = (0.75, 1.25)
LAYERNORM_BIAS_RANGE = 0.1
# Last bias of the object-score MLP: positive logits, otherwise every video frame is "no object".
OBJ_SCORE_LAST_BIAS = 4.0
# Last Linear of each hypernetwork MLP (after centring, see _center): mask logits get a std of ~8-13 on the tiny
# models and ~2% of the pixels within 0.5 of the threshold. The notes' x3 was measured without centring, which removes
# much of the logits' magnitude (std ~4-6 at x3). Larger values sharpen masks further but also amplify the absolute
# float noise of refined (mask-input) logits, which AMG's stability scores compare at a 1e-3 tolerance.
HYPERNET_LAST_SCALE = 6.0
# Last Linear of the IoU head: predicted IoUs spread instead of all sitting near sigmoid(0).
IOU_HEAD_LAST_SCALE = 3.0
# Fraction by which each 2x2 ConvTranspose2d kernel of the mask upscaling is pulled towards its mean; random taps
# would otherwise stamp a 4x4-periodic grid on every mask.
UPSCALING_TAP_PULL = 0.9
# q/k/v weights of memory attention's cross-attention: sharper attention, so tracked logits depend on the memories.
MEMATTN_QKV_SCALE = 3.0
# Parameters that are zero (or ~0) at official init get values with magnitude in this range and a random sign.
VISIBLE_RANGE = (0.3, 0.5)
# Beyond the notes (measured on the official tiny models; see the module docstring):
# q/k weights of the mask decoder's token self-attention and token-to-image attentions. Sharper attention lets the
# prompt reach the mask tokens; with plain weights every prompt gets nearly the same masks.
DECODER_QK_SCALE = 3.0
# Std of the learned tokens (point / mask / IoU / object-score tokens, no-mask embedding). Official init is N(0, 1);
# 0.5 lets the point's positional encoding (entries in [-1, 1]) weigh more than the shared token content.
TOKEN_STD = 0.5

_INT32 = 2**32

# Leaf names of parameters that are zero / near zero at the official init (CXBlock's layer-scale ``gamma`` is 1e-6).
_VISIBLE_LEAVES = frozenset(
    {
        "pos_embed",
        "pos_embed_window",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_mem_pos_enc",
        "no_obj_ptr",
        "no_obj_embed_spatial",
        "gamma",
    }
)
# nn.Embedding tables used as learned tokens (official init N(0, 1)); drawn N(0, TOKEN_STD^2).
_TOKEN_RE = re.compile(
    r"(?:^|\.)(?:point_embeddings\.\d+|not_a_point_embed|no_mask_embed|iou_token|mask_tokens|obj_score_token)\.weight$"
)
_GAUSSIAN_RE = re.compile(r"(?:^|\.)positional_encoding_gaussian_matrix$")
# LayerNorms: every ``norm*`` module, plus the LayerNorm2d entries of the small conv Sequentials, whose names are only
# indices (conv, norm, act, conv, norm, act, ...).
_NORM_RE = re.compile(
    r"(?:(?:^|\.)norm[^.]*"
    r"|(?:^|\.)mask_downscaling\.(?:1|4)"
    r"|(?:^|\.)output_upscaling\.1"
    r"|(?:^|\.)mask_downsampler\.encoder\.(?:1|4|7|10))\.(?:weight|bias)$"
)
# The transposed convolutions of the mask decoder's upscaling (weight layout in x out x kh x kw).
_CONV_TRANSPOSE_RE = re.compile(r"(?:^|\.)output_upscaling\.(?:0|3)\.weight$")
_DECODER_QK_RE = re.compile(
    r"(?:^|\.)sam_mask_decoder\.transformer\."
    r"(?:layers\.\d+\.(?:self_attn|cross_attn_token_to_image)|final_attn_token_to_image)\.[qk]_proj\.weight$"
)
_MEMATTN_QKV_RE = re.compile(r"(?:^|\.)memory_attention\.layers\.\d+\.cross_attn_image\.[qkv]_proj\.weight$")
# MLP layers: ``<prefix>.layers.<i>.(weight|bias)``.
_MLP_LAYER_RE = re.compile(r"^(?P<prefix>.*)\.layers\.(?P<idx>\d+)\.(?:weight|bias)$")
_OBJ_SCORE_RE = re.compile(r"(?:^|\.)pred_obj_score_head$")
_HYPERNET_RE = re.compile(r"(?:^|\.)output_hypernetworks_mlps\.\d+$")
_IOU_HEAD_RE = re.compile(r"(?:^|\.)iou_prediction_head$")


def _mix32(value: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection on uint32 that spreads nearby seeds over all bits."""
    value &= 0xFFFFFFFF
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & 0xFFFFFFFF
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & 0xFFFFFFFF
    return value ^ (value >> 16)


def _generator(key: str, seed: int) -> torch.Generator:
    """A CPU generator private to ``(key, seed)``.

    torch's CPU generator (mt19937) keeps only the low 32 bits of its seed, so seed and key are folded into 32 bits:
    crc32 of the key XOR a hash of the seed (for seed 0 this is just crc32 of the key).
    """
    gen = torch.Generator(device="cpu")
    gen.manual_seed(zlib.crc32(key.encode("utf-8")) ^ _mix32(seed))
    return gen


def _uniform(gen: torch.Generator, shape: Tuple[int, ...], low: float, high: float) -> torch.Tensor:
    """float64 uniform variates in ``[low, high)``."""
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _normal(gen: torch.Generator, shape: Tuple[int, ...]) -> torch.Tensor:
    """float64 standard normals by Box-Muller, built on uniform variates so no normal-sampling kernel is involved."""
    n = math.prod(shape)
    u = torch.rand((2, n), generator=gen, dtype=torch.float64)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[0]))  # 1 - u lies in (0, 1], so the log is finite
    return (radius * torch.cos(2.0 * math.pi * u[1])).reshape(shape)


def _visible(gen: torch.Generator, shape: Tuple[int, ...]) -> torch.Tensor:
    """Magnitudes in VISIBLE_RANGE with random signs: no element is close to zero."""
    n = math.prod(shape)
    u = torch.rand((2, n), generator=gen, dtype=torch.float64)
    low, high = VISIBLE_RANGE
    magnitude = low + (high - low) * u[0]
    sign = torch.where(u[1] < 0.5, -1.0, 1.0).to(torch.float64)
    return (sign * magnitude).reshape(shape)


def _fan_in(key: str, shape: Tuple[int, ...]) -> int:
    """Inputs feeding one output unit: in_features for Linear, in_channels/groups * kh * kw for Conv.

    A stride-2, kernel-2 ConvTranspose2d (``in x out x 2 x 2``) feeds each output pixel from exactly one tap per input
    channel, so its fan-in is ``in``, not what torch's generic rule computes.
    """
    if _CONV_TRANSPOSE_RE.search(key):
        return shape[0]
    return math.prod(shape[1:])


def _fan_in_weight(gen: torch.Generator, key: str, shape: Tuple[int, ...]) -> torch.Tensor:
    std = WEIGHT_GAIN / math.sqrt(max(_fan_in(key, shape), 1))
    bound = math.sqrt(3.0) * std  # a uniform on [-b, b] has std b / sqrt(3)
    return _uniform(gen, shape, -bound, bound)


def _pull_taps(weight: torch.Tensor) -> torch.Tensor:
    """Pull each kernel towards its spatial mean, then rescale so its output keeps the pre-pull magnitude.

    The mean of 4 iid taps has 1/2 their std, so without the rescale each upscaling stage would halve the signal.
    """
    mean = weight.mean(dim=(-2, -1), keepdim=True)
    pulled = mean + (1.0 - UPSCALING_TAP_PULL) * (weight - mean)
    kernel = weight.shape[-2] * weight.shape[-1]
    # Variance of a pulled tap: var(mean) + (1 - pull)^2 * var(deviation) with var(mean) = var / k and
    # var(deviation) = var * (k - 1) / k.
    keep = math.sqrt(1.0 / kernel + (1.0 - UPSCALING_TAP_PULL) ** 2 * (kernel - 1) / kernel)
    return pulled / keep


def _center(value: torch.Tensor) -> torch.Tensor:
    """Remove the row and column means of a Linear weight (the mean of a bias).

    Used on the hypernetworks' last Linear. Its input (after ReLU) and the upscaled mask features it is dotted with
    (after GELU) both have positive means; with an uncentred weight their product is a large per-token constant that
    fixes each mask's area whatever the prompt (one token ~97% of the image, another ~5%). Double centring cancels it.
    """
    if value.dim() == 2:
        return value - value.mean(0, keepdim=True) - value.mean(1, keepdim=True) + value.mean()
    return value - value.mean()


def _mlp_last_layers(keys: Sequence[str]) -> Dict[str, int]:
    """Deepest layer index of every ``<prefix>.layers.<i>`` MLP among ``keys``."""
    last: Dict[str, int] = {}
    for key in keys:
        match = _MLP_LAYER_RE.match(key)
        if match:
            prefix, idx = match.group("prefix"), int(match.group("idx"))
            last[prefix] = max(idx, last.get(prefix, -1))
    return last


def _is_norm(key: str, shape: Tuple[int, ...], shapes: Mapping[str, Tuple[int, ...]]) -> bool:
    """Whether ``key`` is a LayerNorm weight or bias.

    Name patterns cover SAM 2; as a safety net a 1-D ``.weight`` (no Linear/Conv/Embedding weight is 1-D) and the bias
    next to it are treated as a norm too.
    """
    if _NORM_RE.search(key):
        return True
    if key.endswith(".weight"):
        return len(shape) == 1
    if key.endswith(".bias"):
        sibling = shapes.get(key[: -len(".bias")] + ".weight")
        return sibling is not None and len(sibling) == 1
    return False


def _draw(key: str, shape: Tuple[int, ...], shapes: Mapping[str, Tuple[int, ...]], last: Dict[str, int], seed: int):
    """The float64 value of one entry; see the module docstring for the rules."""
    gen = _generator(key, seed)
    leaf = key.rsplit(".", 1)[-1]
    if _GAUSSIAN_RE.search(key):
        return _normal(gen, shape)  # random Fourier features: the official init is N(0, 1) * scale (1.0)
    if leaf in _VISIBLE_LEAVES:
        return _visible(gen, shape)
    if _TOKEN_RE.search(key):
        return TOKEN_STD * _normal(gen, shape)
    if _is_norm(key, shape, shapes):
        if key.endswith(".bias"):
            return _uniform(gen, shape, -LAYERNORM_BIAS_RANGE, LAYERNORM_BIAS_RANGE)
        return _uniform(gen, shape, *LAYERNORM_WEIGHT_RANGE)

    is_bias = key.endswith(".bias") or len(shape) < 2
    value = _uniform(gen, shape, -BIAS_RANGE, BIAS_RANGE) if is_bias else _fan_in_weight(gen, key, shape)
    if _CONV_TRANSPOSE_RE.search(key) and len(shape) == 4:
        value = _pull_taps(value)
    if _MEMATTN_QKV_RE.search(key):
        value = value * MEMATTN_QKV_SCALE
    if _DECODER_QK_RE.search(key):
        value = value * DECODER_QK_SCALE

    # Special treatment of the *last* layer of three heads.
    match = _MLP_LAYER_RE.match(key)
    if match and int(match.group("idx")) == last.get(match.group("prefix")):
        prefix = match.group("prefix")
        if _OBJ_SCORE_RE.search(prefix) and is_bias:
            value = value + OBJ_SCORE_LAST_BIAS
        elif _HYPERNET_RE.search(prefix):
            value = _center(value) * HYPERNET_LAST_SCALE
        elif _IOU_HEAD_RE.search(prefix):
            value = value * IOU_HEAD_LAST_SCALE
    return value


def _as_shape(key: str, value: object) -> Tuple[int, ...]:
    """The shape of a reference entry (a tensor or a shape), validated."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (torch.Size, tuple, list)) and all(isinstance(d, int) and d >= 0 for d in value):
        return tuple(value)
    raise TypeError(
        f"reference entry {key!r} is a {type(value).__name__} ({value!r:.80}); expected a torch.Tensor or a "
        "torch.Size / sequence of non-negative ints"
    )


def random_state_dict(
    reference: Union[Mapping[str, torch.Tensor], Mapping[str, torch.Size]], seed: int = 0
) -> Dict[str, torch.Tensor]:
    """Deterministic random weights for every entry of ``reference``.

    Args:
        reference: a state dict (``model.state_dict()``) or a mapping from key to shape. Only keys and shapes are used;
            non-floating tensors (e.g. integer buffers) are copied unchanged.
        seed: a non-negative integer below 2**32.

    Returns:
        A new state dict of float32 CPU tensors with the same keys (in the same order) and shapes. The value of each
        entry depends only on its key, its shape, ``seed`` and the depth of the MLP it belongs to.

    Raises:
        TypeError: ``reference`` is not a mapping of str to tensors / shapes.
        ValueError: ``seed`` is out of range.
    """
    if isinstance(reference, nn.Module):
        raise TypeError(
            "random_state_dict expects a state dict or a key -> shape mapping, got an nn.Module; "
            "pass model.state_dict() instead"
        )
    if not isinstance(reference, Mapping):
        raise TypeError(f"reference must be a mapping of key -> tensor or shape, got {type(reference).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _INT32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    for key in reference:
        if not isinstance(key, str):
            raise TypeError(f"state dict keys must be str, got {key!r} ({type(key).__name__})")

    shapes = {key: _as_shape(key, value) for key, value in reference.items()}
    last = _mlp_last_layers(list(shapes))
    out: Dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        ref = reference[key]
        if isinstance(ref, torch.Tensor) and not (ref.is_floating_point() or ref.is_complex()):
            out[key] = ref.detach().to("cpu", copy=True)
            continue
        out[key] = _draw(key, shape, shapes, last, seed).to(torch.float32).contiguous()
    return out


def state_dict_digest(sd: Mapping[str, torch.Tensor]) -> str:
    """sha256 hex digest over the sorted keys, their shapes and their values as float32 bytes.

    Independent of key order and of the tensors' device, dtype (for floating tensors) and memory layout. Non-floating
    tensors are hashed with their dtype and raw bytes.
    """
    if not isinstance(sd, Mapping):
        raise TypeError(f"state_dict_digest expects a mapping of key -> tensor, got {type(sd).__name__}")
    digest = hashlib.sha256()
    for key in sorted(sd):
        value = sd[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, expected a torch.Tensor")
        tensor = value.detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
            tag = "f32"
        else:
            tag = str(tensor.dtype)
        digest.update(key.encode("utf-8") + b"\0")
        digest.update(f"{tag}{tuple(tensor.shape)}".encode("ascii") + b"\0")
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_random_checkpoint(
    model_or_sd: Union[nn.Module, Mapping[str, torch.Tensor], Mapping[str, torch.Size]],
    path: Union[str, os.PathLike],
    seed: int = 0,
) -> str:
    """Write ``{'model': random_state_dict(...)}`` (the official checkpoint layout) to ``path``.

    The file is written to a temporary name in the same folder and moved into place, so a reader never sees a
    half-written checkpoint. Returns the path as a str.
    """
    reference = model_or_sd.state_dict() if isinstance(model_or_sd, nn.Module) else model_or_sd
    sd = random_state_dict(reference, seed=seed)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"model": sd}, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
