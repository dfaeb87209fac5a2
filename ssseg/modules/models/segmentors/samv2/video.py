"""Streaming frame sources for the SAM 2 video predictor.

The official predictor decodes and normalises every frame up front (about 12 MB per frame at 1024 x 1024), which
does not scale to long videos. :func:`open_frames` instead returns a :class:`FrameSource`, a sequence-like object
that decodes frames on demand, keeps a small cache of normalised frames and, optionally, prefetches the next few
frames in a background thread in the direction of recent access. Memory is therefore bounded by ``cache_size``
frames whatever the video length. The cache evicts the frame farthest behind the current position first (then the
farthest ahead): unlike plain LRU, this never drops prefetched frames before they are used.

Sources (identical pixels give identical tensors): a folder of ``<index>.jpg`` frames ordered by numeric index, a
video file decoded by ``cv2.VideoCapture`` without writing JPEGs to disk, or in-memory RGB uint8 frames. Every frame
is converted like the official JPEG path: PIL ``convert("RGB")``, ``resize((S, S))`` with PIL's default filter for
RGB images (bicubic), ``/ 255`` in float64, a cast to float32, then ``(x - mean) / std`` in float32.
"""

import logging
import operator
import threading
import weakref
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .framereaders import FrameReader, FramesLike, open_reader

__all__ = ["FrameSource", "open_frames"]

logger = logging.getLogger(__name__)


class _Prefetcher:
    """Background thread that asks its :class:`FrameSource` to decode frames near the latest access.

    Only a weak reference to the source is held, so an unreferenced source can be collected; its finalizer stops the
    thread. Requests are coalesced: the thread always serves the most recent one.
    """

    def __init__(self, source_ref: "weakref.ref[FrameSource]") -> None:
        self._source_ref = source_ref
        self._cond = threading.Condition()
        self._request: Optional[Tuple[int, int]] = None
        self._stopped = False
        self._idle = True
        self._thread = threading.Thread(target=self._run, name="ssseg-frame-prefetch", daemon=True)
        self._thread.start()

    def request(self, idx: int, direction: int) -> None:
        with self._cond:
            self._request = (idx, direction)
            self._idle = False
            self._cond.notify_all()

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every request so far has been served; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle or self._stopped, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._request is not None or self._stopped)
                if self._stopped:
                    return
                idx, direction = self._request
                self._request = None
            source = self._source_ref()
            if source is None:
                return
            try:
                source._prefetch_around(idx, direction)
            except Exception:
                # Prefetching is best effort: the main thread decodes the frame itself and raises the real error.
                logger.debug("prefetch near frame %d failed", idx, exc_info=True)
            source = None
            with self._cond:
                if self._request is None:
                    self._idle = True
                    self._cond.notify_all()


class FrameSource:
    """Sequence of normalised video frames, decoded lazily with a bounded cache.

    ``source[idx]`` returns a ``3 x S x S`` float32 tensor on ``device`` where ``S`` is ``image_size``; negative
    indices count from the end; iteration yields the frames in order. On CPU the tensor is the cached one, so treat it
    as read-only. Use :func:`open_frames` to build one. Indexing is thread-safe; a background thread may prefetch.

    Attributes:
        video_height: height of the original frames in pixels.
        video_width: width of the original frames in pixels.
        image_size: side ``S`` of the square model input.
        device: device of the returned tensors.
    """

    def __init__(
        self,
        reader: FrameReader,
        image_size: int,
        img_mean: Sequence[float],
        img_std: Sequence[float],
        cache_size: int,
        prefetch: int,
        device: Union[str, torch.device],
    ) -> None:
        self._reader = reader
        self.image_size = image_size
        self.video_height = reader.height
        self.video_width = reader.width
        self.device = torch.device(device)
        self._lut = _normalisation_table(img_mean, img_std)
        self._cache_size = cache_size
        self._prefetch = prefetch
        # One condition guards the cache, the set of frames being decoded and the statistics.
        self._cond = threading.Condition()
        self._cache: Dict[int, torch.Tensor] = {}
        self._pending: set = set()
        self._stats = {"hits": 0, "misses": 0, "decoded": 0, "evicted": 0}
        self._last_idx: Optional[int] = None
        self._direction = 1
        self._closed = False
        self._prefetcher: Optional[_Prefetcher] = None
        if prefetch > 0:
            self._prefetcher = _Prefetcher(weakref.ref(self))
        # Runs on close() or garbage collection, whichever comes first; holds no reference to self.
        self._finalizer = weakref.finalize(self, _shutdown, self._prefetcher, reader)

    def __len__(self) -> int:
        return self._reader.length

    def __repr__(self) -> str:
        return (
            f"FrameSource({self._reader.describe()}, frames={len(self)}, video_size=({self.video_height}, "
            f"{self.video_width}), image_size={self.image_size}, cache_size={self._cache_size}, "
            f"prefetch={self._prefetch}, device={self.device})"
        )

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the prefetch thread, release the video file and drop the cache."""
        self._closed = True
        self._finalizer()
        with self._cond:
            self._cache.clear()

    def __getitem__(self, idx: int) -> torch.Tensor:
        """Return frame ``idx`` normalised for the model as a ``3 x S x S`` float32 tensor on ``self.device``."""
        idx = self._check_index(idx)
        with self._cond:
            # The position and direction are updated first: eviction of older frames depends on them.
            last, self._last_idx = self._last_idx, idx
            if last is not None and idx != last:
                self._direction = 1 if idx > last else -1
            # Prefetch only while access is sequential (or on the first access): after a random jump the frames
            # around it are unlikely to be wanted, and decoding them would only delay the next read.
            sequential = last is None or abs(idx - last) <= 1
            direction = self._direction
        frame = self._get_cached_or_decode(idx)
        if self._prefetcher is not None and sequential:
            self._prefetcher.request(idx, direction)
        return frame.to(self.device)

    def frame_rgb(self, idx: int) -> np.ndarray:
        """Return frame ``idx`` at its original resolution as an ``H x W x 3`` uint8 RGB array (for overlays)."""
        idx = self._check_index(idx)
        return self._reader.read_rgb(idx)

    def cache_info(self) -> dict:
        """Return cache statistics: ``size`` (frames held now), ``maxsize``, ``hits``, ``misses``, ``decoded``
        (frames decoded so far, prefetch included), ``evicted`` and ``cached`` (the held indices, sorted)."""
        with self._cond:
            info = dict(self._stats)
            info.update(size=len(self._cache), maxsize=self._cache_size, cached=sorted(self._cache))
        return info

    def wait_prefetch(self, timeout: Optional[float] = None) -> bool:
        """Block until the background prefetch has caught up; return False on timeout. Mainly for tests."""
        return True if self._prefetcher is None else self._prefetcher.wait_idle(timeout)

    def _check_index(self, idx: int) -> int:
        if self._closed:
            raise RuntimeError(f"frame source on {self._reader.describe()} is closed")
        try:
            idx = operator.index(idx)
        except TypeError:
            raise TypeError(f"frame index must be an integer, got {type(idx).__name__}") from None
        num_frames = len(self)
        if not -num_frames <= idx < num_frames:
            raise IndexError(
                f"frame index {idx} is out of range for {self._reader.describe()} with {num_frames} frames "
                f"(valid: 0..{num_frames - 1}, or negative from the end)"
            )
        return idx + num_frames if idx < 0 else idx

    def _get_cached_or_decode(self, idx: int) -> torch.Tensor:
        with self._cond:
            while True:
                frame = self._cache.get(idx)
                if frame is not None:
                    self._stats["hits"] += 1
                    return frame
                if idx not in self._pending:
                    self._pending.add(idx)
                    self._stats["misses"] += 1
                    break
                # Another thread is decoding this frame: wait for it rather than decoding it twice.
                self._cond.wait()
        return self._decode_into_cache(idx)

    def _decode_into_cache(self, idx: int) -> torch.Tensor:
        """Decode frame ``idx`` (already marked pending by the caller) and insert it into the cache."""
        try:
            frame = self._decode(idx)
        except BaseException:
            with self._cond:
                self._pending.discard(idx)
                self._cond.notify_all()
            raise
        with self._cond:
            self._pending.discard(idx)
            self._stats["decoded"] += 1
            if not self._closed:
                self._cache[idx] = frame
                while len(self._cache) > self._cache_size:
                    del self._cache[self._eviction_victim()]
                    self._stats["evicted"] += 1
            self._cond.notify_all()
        return frame

    def _eviction_victim(self) -> int:
        """Pick the cached frame to drop: the farthest behind the direction of travel, else the farthest ahead."""
        last = self._last_idx if self._last_idx is not None else 0
        return max(self._cache, key=lambda i: ((i - last) * self._direction < 0, abs(i - last)))

    def _decode(self, idx: int) -> torch.Tensor:
        image = self._reader.read(idx)
        if image.size != (self.video_width, self.video_height):
            raise ValueError(
                f"{self._reader.describe(idx)} is {image.size[0]}x{image.size[1]} (WxH) but the first frame is "
                f"{self.video_width}x{self.video_height}; all frames of a video must have the same size"
            )
        # PIL's default filter for RGB images is bicubic; the official loader relies on that default, name it here.
        resized = np.asarray(image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC))
        out = np.empty((3, self.image_size, self.image_size), dtype=np.float32)
        for channel in range(3):
            np.take(self._lut[channel], resized[..., channel], out=out[channel])
        return torch.from_numpy(out)

    def _prefetch_around(self, idx: int, direction: int) -> None:
        """Decode up to ``prefetch`` uncached frames after ``idx`` (or before it when ``direction`` < 0)."""
        num_frames, count = len(self), self._prefetch
        if direction >= 0:
            window = range(idx + 1, min(num_frames, idx + count + 1))
        else:
            window = range(max(0, idx - count), idx)
        with self._cond:
            missing = [i for i in window if i not in self._cache and i not in self._pending]
        if not missing:
            return
        if direction >= 0:
            order = missing
        elif self._reader.sequential:
            # Backwards through a video, decode a block ascending after one seek instead of seeking for every frame.
            # The block reaches below the window, so it is sized to fit in the cache next to the window and the
            # current frame; otherwise its lowest frames would be evicted before use.
            top = missing[-1]
            block = min(count, self._cache_size - count)
            order = list(range(max(0, top - block + 1), top + 1))
        else:
            order = missing[::-1]  # nearest first
        for i in order:
            if self._closed:
                return
            with self._cond:
                # The request may be stale: if the reader has reached or passed this frame since, it was read
                # already, and decoding it again would only push a wanted frame out of the cache.
                passed = self._last_idx is not None and (i - self._last_idx) * self._direction <= 0
                if passed or i in self._cache or i in self._pending:
                    continue
                self._pending.add(i)
            self._decode_into_cache(i)


def _shutdown(prefetcher: Optional[_Prefetcher], reader: FrameReader) -> None:
    if prefetcher is not None:
        prefetcher.stop()
    reader.close()


def _normalisation_table(img_mean: Sequence[float], img_std: Sequence[float]) -> np.ndarray:
    """Return a ``3 x 256`` float32 table mapping each uint8 value of each channel to its normalised value.

    The official loader computes ``uint8 / 255.0`` in float64, stores it in a float32 tensor and then subtracts the
    mean and divides by the std in float32. Every step is element-wise and IEEE-rounded, so evaluating it once per
    possible byte value and looking the results up is bit-identical, and about 4x faster than the arithmetic.
    """
    values = torch.from_numpy(np.arange(256, dtype=np.uint8) / 255.0).to(torch.float32)
    mean = torch.tensor(img_mean, dtype=torch.float32)[:, None]
    std = torch.tensor(img_std, dtype=torch.float32)[:, None]
    return ((values[None, :] - mean) / std).numpy()


def _check_int(name: str, value: int, low: int, high: Optional[int] = None, rule: str = "") -> int:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}] ({rule})"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def _check_stats(name: str, values: Sequence[float]) -> Tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of 3 numbers (one per RGB channel), got {values!r}") from None
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(values)}")
    return values


def open_frames(
    source: FramesLike,
    image_size: int,
    img_mean: Sequence[float] = (0.485, 0.456, 0.406),
    img_std: Sequence[float] = (0.229, 0.224, 0.225),
    cache_size: int = 16,
    prefetch: int = 4,
    device: Union[str, torch.device] = "cpu",
) -> FrameSource:
    """Open a video for streaming, normalised access by the video predictor.

    Args:
        source: a folder of JPEG frames named ``<index>.jpg`` (ordered numerically, so ``2.jpg`` precedes
            ``10.jpg``), a video file decodable by ``cv2.VideoCapture``, a list of ``H x W x 3`` uint8 RGB arrays, or
            one ``T x H x W x 3`` uint8 RGB array.
        image_size: side ``S`` of the square model input; frames are resized to ``S x S``.
        img_mean: per-channel mean subtracted after scaling pixels to [0, 1].
        img_std: per-channel std divided by after subtracting the mean.
        cache_size: most normalised frames held in memory (each takes ``12 * S * S`` bytes).
        prefetch: frames decoded ahead in a background thread in the direction of recent access; 0 disables it.
            Must be smaller than ``cache_size``; backwards through a video file, ``cache_size >= 2 * prefetch``
            lets the prefetcher read blocks of ``prefetch`` frames per seek.
        device: device of the tensors returned by indexing (the cache itself stays on CPU).

    Returns:
        A :class:`FrameSource` of ``T`` frames; ``source[t]`` is a ``3 x S x S`` float32 tensor.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: the folder holds no JPEG frames or a non-numeric name, the video cannot be decoded, frames are
            empty or malformed, or an argument is out of range.
        TypeError: ``source`` or an argument has an unsupported type.
    """
    image_size = _check_int("image_size", image_size, 1)
    img_mean = _check_stats("img_mean", img_mean)
    img_std = _check_stats("img_std", img_std)
    if any(s == 0 for s in img_std):
        raise ValueError(f"img_std must not contain zeros, got {img_std}")
    cache_size = _check_int("cache_size", cache_size, 1)
    # The cache must hold the prefetched frames next to the current one, or they would evict each other unused.
    prefetch = _check_int("prefetch", prefetch, 0, cache_size - 1, "prefetch < cache_size")
    device = torch.device(device)

    reader = open_reader(source)
    return FrameSource(reader, image_size, img_mean, img_std, cache_size, prefetch, device)
