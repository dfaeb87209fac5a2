"""Frame readers: original-resolution RGB frames by index from a JPEG folder, a video file or in-memory arrays.

:func:`open_reader` picks the reader for a source; :class:`~.video.FrameSource` adds resizing, normalisation,
caching and prefetching on top.
"""

import logging
import os
import re
import threading
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "FramesLike",
    "FrameReader",
    "JpegFolderReader",
    "VideoFileReader",
    "ArrayReader",
    "jpeg_frame_paths",
    "open_reader",
]

logger = logging.getLogger(__name__)

FramesLike = Union[str, os.PathLike, Sequence[np.ndarray], np.ndarray]

JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
# Forward gaps up to this many frames are bridged by decoding and dropping frames instead of seeking: for codecs
# with long GOPs a seek decodes from the previous keyframe anyway, and short skips are far cheaper this way.
MAX_GRAB_GAP = 32


class FrameReader:
    """Decodes original-resolution RGB frames by index. Subclasses set ``height``, ``width`` and ``length``."""

    # True when consecutive indices are much cheaper to decode in ascending order than one by one (video files).
    sequential = False
    height: int
    width: int
    length: int

    def read(self, idx: int) -> Image.Image:
        """Return frame ``idx`` as an RGB PIL image of the original size."""
        return Image.fromarray(self.read_rgb(idx))

    def read_rgb(self, idx: int) -> np.ndarray:
        """Return frame ``idx`` as a writable ``H x W x 3`` uint8 RGB array."""
        return np.array(self.read(idx))

    def describe(self, idx: Optional[int] = None) -> str:
        raise NotImplementedError

    def close(self) -> None:  # only the video reader holds an OS resource
        pass


def jpeg_frame_paths(folder: str) -> List[str]:
    """The paths of the ``<index>.jpg`` frames in ``folder``, ordered by their numeric index (``2.jpg`` before
    ``10.jpg``). Files with other suffixes are ignored, as by the official loader.

    Raises:
        ValueError: no JPEG frames, a JPEG whose name is not a number, or two JPEGs with the same index.
    """
    indexed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix not in JPEG_SUFFIXES or not entry.is_file():
                continue
            if re.fullmatch(r"[0-9]+", stem) is None:
                raise ValueError(
                    f"JPEG frame '{entry.path}' is not named by a numeric frame index; expected every "
                    f"JPEG in '{folder}' to be named '<index>.jpg' (e.g. 00000.jpg, 1.jpg, 10.jpg)"
                )
            indexed.append((int(stem), entry.path))
    if not indexed:
        raise ValueError(
            f"no JPEG frames found in folder '{folder}'; expected files named '<index>.jpg' "
            f"(suffixes {', '.join(JPEG_SUFFIXES)})"
        )
    indexed.sort()
    for (index_a, path_a), (index_b, path_b) in zip(indexed, indexed[1:]):
        if index_a == index_b:
            raise ValueError(f"JPEG frames '{path_a}' and '{path_b}' both have frame index {index_a}")
    return [path for _, path in indexed]


class JpegFolderReader(FrameReader):
    """Frames stored as ``<index>.jpg`` files in one folder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.paths = jpeg_frame_paths(folder)
        self.length = len(self.paths)
        try:
            with Image.open(self.paths[0]) as image:  # reads the header only; pixels are decoded on access
                self.width, self.height = image.size
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read JPEG frame '{self.paths[0]}': {error}") from error

    def read(self, idx: int) -> Image.Image:
        path = self.paths[idx]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise RuntimeError(f"cannot read JPEG frame '{path}': {error}") from error

    def describe(self, idx: Optional[int] = None) -> str:
        return f"JPEG folder '{self.folder}'" if idx is None else f"JPEG frame '{self.paths[idx]}'"


class VideoFileReader(FrameReader):
    """Frames decoded from a video file with OpenCV; sequential reads avoid seeking."""

    sequential = True

    def __init__(self, path: str) -> None:
        self.path = path
        # cv2.VideoCapture is not thread-safe and keeps a read position, so every access goes through this lock.
        self._lock = threading.Lock()
        self._capture = self._open()
        first = self._decode_next()
        if first is None:
            self._capture.release()
            raise ValueError(f"video file '{path}' has no decodable frames")
        self._next_pos = 1
        self.height, self.width = first.shape[:2]
        self.length = self._count_frames(int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))

    def _open(self) -> "cv2.VideoCapture":
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            capture.release()
            raise ValueError(
                f"cannot open video file '{self.path}': OpenCV could not decode it (expected a video such as "
                "mp4/avi/mov/mkv, a folder of JPEG frames, or in-memory RGB frames)"
            )
        return capture

    def _decode_next(self) -> Optional[np.ndarray]:
        """Decode the frame at the read position as RGB, or return None at the end of the stream."""
        ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _count_frames(self, reported: int) -> int:
        """Check the container's frame count and fall back to a full scan when it is wrong or missing."""
        if reported > 1:
            # The count is exact when frame `reported - 1` decodes and nothing follows it.
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, reported - 1)
            if self._decode_next() is not None and not self._capture.grab():
                self._next_pos = -1
                return reported
        elif reported == 1 and not self._capture.grab():
            self._next_pos = -1
            return 1
        logger.info("frame count of '%s' is unreliable (%d reported); counting frames", self.path, reported)
        self._capture.release()
        self._capture = self._open()
        count = 0
        while self._capture.grab():
            count += 1
        self._next_pos = count
        return count

    def read_rgb(self, idx: int) -> np.ndarray:
        with self._lock:
            if self._capture is None:
                raise RuntimeError(f"video file '{self.path}' has been closed")
            gap = idx - self._next_pos
            if 0 < gap <= MAX_GRAB_GAP and self._next_pos >= 0:
                for _ in range(gap):
                    if not self._capture.grab():
                        break
            elif gap != 0 or self._next_pos < 0:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, idx)
            frame = self._decode_next()
            if frame is None:
                self._next_pos = -1  # the position is unknown now, so the next read seeks
                raise RuntimeError(f"failed to decode frame {idx} of video file '{self.path}'")
            self._next_pos = idx + 1
            return frame

    def describe(self, idx: Optional[int] = None) -> str:
        return f"video file '{self.path}'" if idx is None else f"frame {idx} of video file '{self.path}'"

    def close(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None


class ArrayReader(FrameReader):
    """In-memory RGB uint8 frames; the caller's arrays are referenced, not copied."""

    def __init__(self, frames: Union[Sequence[np.ndarray], np.ndarray]) -> None:
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"in-memory frames must be a T x H x W x 3 array, got shape {tuple(frames.shape)}")
        if len(frames) == 0:
            raise ValueError("in-memory frames are empty; expected at least one H x W x 3 uint8 RGB frame")
        first_shape = None
        for i, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray):
                raise TypeError(f"in-memory frame {i} is a {type(frame).__name__}; expected a numpy array")
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(
                    f"in-memory frame {i} has dtype {frame.dtype} and shape {tuple(frame.shape)}; "
                    "expected an H x W x 3 uint8 RGB array"
                )
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise ValueError(
                    f"in-memory frame {i} has shape {tuple(frame.shape)} but frame 0 has {tuple(first_shape)}; "
                    "all frames must have the same size"
                )
        self.frames = frames
        self.length = len(frames)
        self.height, self.width = first_shape[:2]

    def read(self, idx: int) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self.frames[idx]))

    def read_rgb(self, idx: int) -> np.ndarray:
        return np.array(self.frames[idx])

    def describe(self, idx: Optional[int] = None) -> str:
        return "in-memory frames" if idx is None else f"in-memory frame {idx}"


def open_reader(source: FramesLike) -> FrameReader:
    """The reader for ``source``: a JPEG folder, a video file, a list of ``H x W x 3`` uint8 RGB arrays or one
    ``T x H x W x 3`` array.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        TypeError: ``source`` has an unsupported type.
        ValueError: the source is empty or malformed (see the readers).
    """
    if isinstance(source, FrameReader):  # a reader of its own kind (e.g. the live stream's latest frames)
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            return JpegFolderReader(path)
        if os.path.isfile(path):
            return VideoFileReader(path)
        raise FileNotFoundError(
            f"video source '{path}' does not exist; expected a folder of JPEG frames or a video file"
        )
    if isinstance(source, (list, tuple, np.ndarray)):
        return ArrayReader(source)
    raise TypeError(
        f"unsupported video source of type {type(source).__name__}; expected a path to a JPEG folder or a video "
        "file, a list of H x W x 3 uint8 RGB arrays, or a T x H x W x 3 uint8 array"
    )
