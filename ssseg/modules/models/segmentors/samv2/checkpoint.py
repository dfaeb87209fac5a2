"""Finding, downloading and loading SAM 2 / SAM 2.1 checkpoints.

Downloads are cached (torch hub's ``checkpoints`` folder, or ``$SSSEG_CACHE_DIR``) and atomic: the file is streamed
into a temporary file next to its final path and moved into place only once complete, so an interrupted download never
leaves a truncated checkpoint behind to be loaded later. Loading uses ``torch.load(weights_only=True)`` and turns every
failure (missing file, not a checkpoint, keys or shapes that do not match the model) into one clear error message.
"""

import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn

__all__ = [
    "CKPT_URLS",
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointMismatchError",
    "InvalidCheckpointError",
    "cache_dir",
    "describe_state_dict",
    "download_checkpoint",
    "load_checkpoint",
    "load_state_dict_file",
    "resolve_checkpoint",
]

_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SIZES = ("tiny", "small", "base_plus", "large")

CKPT_URLS: Dict[str, str] = {
    **{f"sam2_hiera_{size}": f"{_SAM2_BASE}sam2_hiera_{size}.pt" for size in _SIZES},
    **{f"sam2.1_hiera_{size}": f"{_SAM21_BASE}sam2.1_hiera_{size}.pt" for size in _SIZES},
}
"""The official checkpoints, keyed by their file name without ``.pt``."""

ENV_CACHE_DIR = "SSSEG_CACHE_DIR"
_URL_SCHEMES = ("http", "https", "file")
_CHUNK = 1 << 20
_TIMEOUT_S = 60
_MAX_LISTED = 10

PathOrUrl = Union[str, "os.PathLike[str]"]


class CheckpointError(RuntimeError):
    """Base class of this module's errors."""


class CheckpointDownloadError(CheckpointError):
    """A checkpoint could not be downloaded (offline, HTTP error, truncated transfer, unwritable cache).

    ``url``, ``path`` (where the file was to be cached) and ``reason`` are kept, so that a caller in another
    language (the command line) can say how to point at a local copy in its own terms with :meth:`explain`.
    """

    def __init__(self, url: str, path: str, reason: str) -> None:
        self.url, self.path, self.reason = url, path, reason
        super().__init__(self.explain("pass ckptpath='{file}'"))

    def explain(self, use_local: str) -> str:
        """The message, with ``use_local`` (e.g. ``"pass --ckpt {file}"``; ``{file}`` becomes a placeholder path)
        as the way to use a local copy."""
        name = os.path.basename(self.path)
        return (
            f"could not download the checkpoint {self.url}: {self.reason}.\n"
            f"To use it without a download here, fetch it by hand on a machine with internet access "
            f"(e.g. `curl -L -o {name} {self.url}`) and either place it at {self.path} "
            f"or {use_local.format(file=f'/path/to/{name}')} to use that local file."
        )


class InvalidCheckpointError(CheckpointError):
    """A file is not a checkpoint: torch cannot read it, or it holds no state dict."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


class _Mismatch(NamedTuple):
    missing: List[str]
    unexpected: List[str]
    shapes: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]  # key, checkpoint shape, model shape


def cache_dir() -> str:
    """Folder that downloaded checkpoints are cached in.

    ``$SSSEG_CACHE_DIR`` when set, else torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``, itself
    governed by ``$TORCH_HOME``).
    """
    override = os.environ.get(ENV_CACHE_DIR)
    if override:
        return os.path.abspath(os.path.expanduser(override))
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _is_url(value: str) -> bool:
    return urllib.parse.urlparse(value).scheme.lower() in _URL_SCHEMES


def _file_name(url: str) -> str:
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name or name in (".", ".."):
        raise ValueError(f"cannot tell a file name from the URL {url!r}; expected a URL that ends in a file name")
    return name


def download_checkpoint(url: str, dst_dir: Optional[PathOrUrl] = None, progress: bool = True) -> str:
    """Download ``url`` into ``dst_dir`` (default: :func:`cache_dir`) once, and return the local path.

    If the file is already there it is returned without any network access. Otherwise the data is streamed into a
    temporary file in the same folder and moved to the final name with :func:`os.replace` only when complete, so a
    half-written checkpoint is never found at the final path. ``http(s)://`` and ``file://`` URLs are supported.

    Raises:
        ValueError: ``url`` is not an http(s) / file URL.
        CheckpointDownloadError: the download failed; the message names the URL and how to get the file by hand.
    """
    if not isinstance(url, str) or not _is_url(url):
        raise ValueError(f"expected an http://, https:// or file:// URL, got {url!r}")
    folder = os.path.abspath(os.fspath(dst_dir)) if dst_dir is not None else cache_dir()
    final_path = os.path.join(folder, _file_name(url))
    if os.path.isfile(final_path):
        return final_path

    tmp_path = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(final_path)}.", suffix=".part")
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_path, final_path)
        tmp_path = None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors too
        raise CheckpointDownloadError(url, final_path, _reason(exc)) from exc
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)
    return final_path


def _reason(exc: BaseException) -> str:
    """A short human-readable cause: 'HTTP 404 Not Found', 'Network is unreachable', ..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _stream(url: str, out, progress: bool) -> None:
    """Copy ``url`` into the open file ``out``; a transfer shorter than the announced length is an error."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, os.path.basename(urllib.parse.urlparse(url).path), progress)
        received = 0
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise OSError(f"the transfer stopped after {received} of {total} bytes")


def _progress_bar(total: Optional[int], name: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional: no bar, same download
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name)


def resolve_checkpoint(path_or_url: PathOrUrl, dst_dir: Optional[PathOrUrl] = None, progress: bool = True) -> str:
    """Turn a local path, a URL or an official checkpoint name (a key of :data:`CKPT_URLS`) into a local file path.

    URLs and names are downloaded (once) with :func:`download_checkpoint`; a local path must exist.

    Raises:
        FileNotFoundError: a local path that does not exist or is not a file.
        CheckpointDownloadError: a URL that could not be downloaded.
    """
    if not isinstance(path_or_url, (str, os.PathLike)):
        raise TypeError(f"expected a checkpoint path, URL or name, got {type(path_or_url).__name__}")
    value = os.fspath(path_or_url)
    if value in CKPT_URLS:
        return download_checkpoint(CKPT_URLS[value], dst_dir=dst_dir, progress=progress)
    if _is_url(value):
        return download_checkpoint(value, dst_dir=dst_dir, progress=progress)
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(
            f"checkpoint file {path} {what}; expected a local .pt file, an http(s):// or file:// URL, or one of "
            f"the official names {sorted(CKPT_URLS)}"
        )
    return path


def load_state_dict_file(path: PathOrUrl) -> Dict[str, torch.Tensor]:
    """Read a state dict from a checkpoint file, on the CPU and with ``weights_only=True`` (no arbitrary pickles).

    Accepts the official layout ``{'model': state_dict}`` (also ``{'state_dict': ...}``) and a bare state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InvalidCheckpointError: the file is not a torch checkpoint, or holds something other than a state dict.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError, zip errors...)
        hint = ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            hint = " It holds pickled Python objects besides tensors, which weights_only=True refuses to run."
        raise InvalidCheckpointError(
            f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).{hint}"
            " Expected a file written by torch.save holding {'model': state_dict} or a bare state dict."
        ) from exc
    return _extract_state_dict(obj, path)


def _extract_state_dict(obj: object, path: str) -> Dict[str, torch.Tensor]:
    expected = "expected {'model': state_dict} (the official layout) or a bare state dict of str -> Tensor"
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise InvalidCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict; {expected}")
    if not obj:
        raise InvalidCheckpointError(f"{path} holds an empty dict; {expected}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        first = bad[0]
        raise InvalidCheckpointError(
            f"{path} is not a state dict: {len(bad)} of its {len(obj)} entries are not str -> Tensor "
            f"(e.g. {first!r} -> {type(obj[first]).__name__}); {expected}"
        )
    return dict(obj)


_VARIANTS = {
    (96, 12): "Hiera-T (tiny)",
    (96, 16): "Hiera-S (small)",
    (112, 24): "Hiera-B+ (base_plus)",
    (144, 48): "Hiera-L (large)",
}
_BLOCK_RE = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")


def describe_state_dict(sd: Mapping[str, object]) -> str:
    """Name the SAM 2 variant a state dict (or key -> shape mapping) looks like, e.g. ``'SAM 2.1 Hiera-T (tiny)'``.

    SAM 2.1 is told from SAM 2 by the entries it added (``no_obj_embed_spatial``, ``obj_ptr_tpos_proj``); the size by
    the trunk's embedding width and block count. Anything else is described by its tensor count.
    """
    patch = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    width = tuple(patch.shape)[0] if hasattr(patch, "shape") else (patch[0] if patch is not None else None)
    blocks = {int(m.group(1)) for m in map(_BLOCK_RE.match, sd) if m}
    if width is None or not blocks:
        return f"a state dict of {len(sd)} tensors (not recognisably SAM 2)"
    family = "SAM 2.1" if "no_obj_embed_spatial" in sd or "obj_ptr_tpos_proj.weight" in sd else "SAM 2"
    size = _VARIANTS.get((width, max(blocks) + 1), f"Hiera with width {width} and {max(blocks) + 1} blocks")
    return f"{family} {size}, {len(sd)} tensors"


def _compare(checkpoint: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> _Mismatch:
    missing = [k for k in expected if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in expected]
    shapes = [
        (k, tuple(checkpoint[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in checkpoint and tuple(checkpoint[k].shape) != tuple(expected[k].shape)
    ]
    return _Mismatch(missing, unexpected, shapes)


def _listing(title: str, items: List[str], note: str = "") -> str:
    shown = "\n".join(f"    {item}" for item in items[:_MAX_LISTED])
    more = f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"  {title} ({len(items)}){note}:\n{shown}{more}"


def _mismatch_message(source: str, model: nn.Module, mismatch: _Mismatch, ckpt_desc: str, model_desc: str) -> str:
    parts = [f"checkpoint {source} does not match the model {type(model).__name__}:"]
    if mismatch.missing:
        parts.append(_listing("missing keys", mismatch.missing, ", in the model but not in the checkpoint"))
    if mismatch.unexpected:
        parts.append(_listing("unexpected keys", mismatch.unexpected, ", in the checkpoint but not in the model"))
    if mismatch.shapes:
        rows = [f"{k}: checkpoint {list(c)} vs model {list(m)}" for k, c, m in mismatch.shapes]
        parts.append(_listing("shape mismatches", rows))
    parts.append(
        f"Hint: is this a checkpoint of a different SAM 2 variant? The checkpoint looks like {ckpt_desc}; "
        f"the model expects {model_desc}. Pick the config that matches the checkpoint (or the checkpoint that "
        "matches the config)."
    )
    return "\n".join(parts)


def load_checkpoint(
    model: nn.Module, path_or_url: PathOrUrl, strict: bool = True, progress: bool = True
) -> "torch.nn.modules.module._IncompatibleKeys":
    """Load a checkpoint (local path, URL or official name) into ``model``.

    With ``strict=True`` every key must match; with ``strict=False`` missing and unexpected keys are allowed (and
    returned), but a shape mismatch is still an error.

    Returns:
        torch's ``(missing_keys, unexpected_keys)`` named tuple.

    Raises:
        CheckpointMismatchError: keys or shapes do not match; the message lists the first few of each with counts and
            says which SAM 2 variant the checkpoint and the model look like.
        FileNotFoundError, CheckpointDownloadError, InvalidCheckpointError: see :func:`resolve_checkpoint` and
            :func:`load_state_dict_file`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_checkpoint expects an nn.Module, got {type(model).__name__}")
    path = resolve_checkpoint(path_or_url, progress=progress)
    checkpoint = load_state_dict_file(path)
    expected = model.state_dict()
    mismatch = _compare(checkpoint, expected)
    if mismatch.shapes or (strict and (mismatch.missing or mismatch.unexpected)):
        message = _mismatch_message(
            path, model, mismatch, describe_state_dict(checkpoint), describe_state_dict(expected)
        )
        raise CheckpointMismatchError(message)
    return model.load_state_dict(checkpoint, strict=strict)
