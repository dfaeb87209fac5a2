"""What a session is opened from, checked before anything decodes it.

* Uploads stream to disk; the size cap is enforced while the body arrives (a ``Content-Length`` above it is refused
  before a byte is read), so an oversize upload never fills memory or disk.
* The type is sniffed from the bytes, never from the name: a zip, an image PIL can read, or a video OpenCV can
  decode; anything else is 415. Images above :data:`MAX_PIXELS` (including decompression bombs: small files that
  claim huge sizes) are refused from their header, before their pixels are decoded.
* Zips of JPEG frames are extracted flat into the session folder: entries that are absolute, contain ``..`` or are
  symlinks are refused (zip slip), and the extracted bytes are counted against the cap (zip bombs).
* Paths under ``--data-root`` are relative; ``..``, absolute paths and symlinks that resolve outside the root are
  403.
"""

import os
import re
import shutil
import stat
import zipfile
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import numpy as np

from ssseg.samv2.server.errors import APIError

MAX_PIXELS = 100_000_000  # images and video frames above 100 megapixels are refused
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file itself
MAX_ZIP_ENTRIES = 100_000
JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------------ uploads
async def _capped(stream: AsyncIterator[bytes], limit: int, max_mb: float) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise APIError(413, f"upload too large: more than the server's limit of {max_mb:g} MB (--max-upload-mb)")
        yield chunk


async def receive_upload(request, folder: str, max_bytes: int) -> Tuple[str, str]:
    """Stream the multipart field ``file`` of ``request`` into ``folder``; returns ``(original name, path)``.

    Raises :class:`APIError` 413 as soon as the body exceeds ``max_bytes`` (plus multipart overhead), 400 when there
    is no ``file`` field or the body is not valid multipart.
    """
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    max_mb = max_bytes / 2**20
    limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"upload too large: {int(declared) / 2**20:.1f} MB; the limit is {max_mb:g} MB")
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit, max_mb), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise APIError(400, f"malformed multipart upload: {error}") from None
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile):
            raise APIError(400, "multipart upload without a 'file' field; send the image, video or zip as 'file'")
        name = os.path.basename((upload.filename or "upload").replace("\\", "/")) or "upload"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:]
        path = os.path.join(folder, "upload_" + name)
        upload.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out, CHUNK)
        if os.path.getsize(path) > max_bytes:
            raise APIError(413, f"upload too large: the file is over the limit of {max_mb:g} MB")
        if os.path.getsize(path) == 0:
            raise APIError(415, f"uploaded file '{name}' is empty; expected an image, a video or a zip of JPEG frames")
        return upload.filename or name, path
    finally:
        await form.close()


# ------------------------------------------------------------------------------------------------ sniffing
def sniff(path: str, name: str) -> str:
    """``"zip"``, ``"image"``, ``"video"`` or ``"frames"`` (a folder) from the content; 415 for anything else."""
    if os.path.isdir(path):
        return "frames"
    if zipfile.is_zipfile(path):
        return "zip"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_pixels(image.size[0], image.size[1], name)
            return "image"
    except Image.DecompressionBombError as error:
        raise APIError(413, f"image '{name}' refused as a decompression bomb: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    if _opens_as_video(path):
        return "video"
    raise APIError(
        415, f"'{name}' is not an image, a video or a zip of JPEG frames that this server can read (content checked)"
    )


def _opens_as_video(path: str) -> bool:
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return False
        ok, frame = capture.read()
        return bool(ok) and frame is not None and frame.size > 0
    finally:
        capture.release()


def check_pixels(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise APIError(
            413,
            f"'{name}' is {width} x {height} = {width * height / 1e6:.1f} megapixels; the limit is "
            f"{MAX_PIXELS / 1e6:g} megapixels",
        )


def load_image(path: str, name: str) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB array; the size is checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            check_pixels(image.size[0], image.size[1], name)
            return np.array(image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise APIError(413, f"image '{name}' refused as a decompression bomb: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise APIError(415, f"cannot decode image '{name}': {error}") from None


# ------------------------------------------------------------------------------------------------ zips
def _safe_member(info: zipfile.ZipInfo) -> Optional[str]:
    """The flat file name of a JPEG entry, None for entries to skip; 400 for entries that would escape."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise APIError(400, f"zip entry '{info.filename}' would be written outside its folder (zip slip); refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise APIError(400, f"zip entry '{info.filename}' is a symbolic link; links are not accepted")
    base = name.rsplit("/", 1)[-1]
    if info.is_dir() or not base.endswith(JPEG_SUFFIXES) or base.startswith("."):
        return None
    return base


def extract_zip(path: str, folder: str, max_bytes: int, name: str) -> str:
    """Extract the ``<index>.jpg`` frames of a zip flat into ``folder/frames``; returns that folder.

    The extracted bytes are counted as they are written (a zip's declared sizes can lie) against ``max_bytes``.
    """
    from PIL import Image

    out = os.path.join(folder, "frames")
    os.makedirs(out, exist_ok=True)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise APIError(415, f"'{name}' is not a readable zip: {error}") from None
    total, count, size = 0, 0, None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_ENTRIES:
            raise APIError(413, f"zip '{name}' has {len(members)} entries; the limit is {MAX_ZIP_ENTRIES}")
        for info in members:
            base = _safe_member(info)
            if base is None:
                continue
            target = os.path.join(out, base)
            if os.path.exists(target):
                raise APIError(400, f"zip '{name}' holds two frames named '{base}' (in different folders)")
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise APIError(
                                413,
                                f"zip '{name}' expands to more than {max_bytes / 2**20:g} MB (--max-upload-mb); "
                                "refused as a possible zip bomb",
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as error:
                raise APIError(415, f"cannot extract '{info.filename}' from zip '{name}': {error}") from None
            try:
                with Image.open(target) as image:
                    check_pixels(image.size[0], image.size[1], f"{name}:{info.filename}")
                    if image.format != "JPEG":
                        raise APIError(415, f"zip entry '{info.filename}' is named like a JPEG but is not one")
                    if size is not None and image.size != size:
                        raise APIError(
                            415, f"zip entry '{info.filename}' is {image.size} (W, H) but the first frame is {size}"
                        )
                    size = image.size
            except (OSError, ValueError) as error:
                raise APIError(415, f"zip entry '{info.filename}' is not a readable JPEG: {error}") from None
            count += 1
    if count == 0:
        raise APIError(415, f"zip '{name}' holds no JPEG frames; expected files named '<index>.jpg' (00000.jpg, ...)")
    return out


# ------------------------------------------------------------------------------------------------ --data-root
def resolve_data_path(data_root: Optional[str], relative: str, what: str = "path") -> str:
    """``relative`` resolved under ``data_root``; 403 for absolute paths, ``..`` and symlinks leading outside, 404
    for paths that do not exist."""
    if not data_root:
        raise APIError(403, "this server has no --data-root; start it with --data-root DIR to open files by path")
    if not isinstance(relative, str):
        raise APIError(422, f"{what} must be a string relative to --data-root")
    if "\x00" in relative:  # os.path would raise ValueError (a 500) on it
        raise APIError(400, f"{what} {relative!r} contains a NUL character; give a path relative to --data-root")
    text = relative.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or os.path.isabs(relative):
        raise APIError(403, f"{what} '{relative}' is absolute; give a path relative to --data-root")
    if ".." in text.split("/"):
        raise APIError(403, f"{what} '{relative}' leads outside --data-root ('..' is not allowed)")
    root = os.path.realpath(data_root)
    full = os.path.realpath(os.path.join(root, text))
    if full != root and not full.startswith(root + os.sep):
        raise APIError(403, f"{what} '{relative}' leads outside --data-root (through a symbolic link)")
    if not os.path.exists(full):
        raise APIError(404, f"{what} '{relative}' does not exist under --data-root")
    return full


def _entry_type(path: str, name: str) -> Optional[str]:
    if os.path.isdir(path):
        try:
            with os.scandir(path) as entries:
                for i, entry in enumerate(entries):
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix in JPEG_SUFFIXES and stem.isdigit():
                        return "frames"
                    if i > 200:
                        break
        except OSError:
            return None
        return "dir"
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    if lower.endswith(VIDEO_SUFFIXES):
        return "video"
    return None


def list_data_dir(data_root: Optional[str], relative: str) -> Dict[str, Any]:
    """The folders, frame folders, images, videos and zips in one folder of ``--data-root`` (by name; symlinks that
    lead outside the root are left out)."""
    if not data_root:
        raise APIError(404, "this server has no --data-root, so there are no files to list")
    relative = relative.strip("/")
    folder = resolve_data_path(data_root, relative, "dir") if relative else os.path.realpath(data_root)
    if not os.path.isdir(folder):
        raise APIError(404, f"dir '{relative}' is not a folder under --data-root")
    root = os.path.realpath(data_root)
    entries: List[Dict[str, Any]] = []
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        full = os.path.join(folder, name)
        real = os.path.realpath(full)
        if real != root and not real.startswith(root + os.sep):
            continue
        kind = _entry_type(real, name)
        if kind is None:
            continue
        rel = f"{relative}/{name}" if relative else name
        size = 0 if os.path.isdir(real) else os.path.getsize(real)
        entries.append({"name": name, "path": rel, "type": kind, "size": size})
    entries.sort(key=lambda e: (e["type"] not in ("dir", "frames"), e["name"]))  # folders first
    return {"dir": relative, "entries": entries}
