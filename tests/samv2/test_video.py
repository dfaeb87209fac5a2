"""Tests for the streaming frame sources of the video predictor (``samv2/video.py``)."""

import gc
import os
import threading

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.modules.models.segmentors.samv2.video import FrameSource, open_frames


def make_frames(num_frames: int, height: int = 64, width: int = 96, seed: int = 0) -> list:
    """RGB uint8 frames: a gradient, a moving square and noise, so that every frame differs."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(num_frames):
        frame = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, (40 * t) % 256)], -1)
        side = max(1, min(height, width) // 4)
        x0, y0 = (5 * t) % (width - side + 1), (3 * t) % (height - side + 1)
        frame[y0 : y0 + side, x0 : x0 + side] = (255, 40, 40)
        frame = frame + rng.integers(-12, 13, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_jpeg_folder(folder, frames, names=None) -> list:
    """Save ``frames`` as JPEGs (``<i>.jpg`` unless ``names`` given) and return the pixels decoded back."""
    os.makedirs(folder, exist_ok=True)
    decoded = []
    for i, frame in enumerate(frames):
        path = os.path.join(folder, names[i] if names else f"{i}.jpg")
        Image.fromarray(frame).save(path, format="JPEG", quality=90)
        decoded.append(np.array(Image.open(path).convert("RGB")))
    return decoded


def write_video(path, frames, fourcc: str) -> list:
    """Encode ``frames`` with OpenCV and return the RGB frames decoded back sequentially (the codec is lossy)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (width, height))
    if not writer.isOpened():
        pytest.skip(f"OpenCV cannot encode {fourcc} here")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    capture, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return decoded


def assert_same_frames(source: FrameSource, reference: FrameSource, order) -> None:
    for idx in order:
        assert torch.equal(source[idx], reference[idx]), f"frame {idx} differs"


@pytest.mark.parametrize(
    "image_size, mean, std",
    [(48, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), (160, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))],
)
def test_jpeg_folder_matches_official_loader(tmp_path, image_size, mean, std):
    misc = pytest.importorskip("sam2.utils.misc")
    frames = make_frames(12, height=75, width=101)  # odd size: exercises the resize in both directions
    write_jpeg_folder(tmp_path, frames)
    expected, height, width = misc.load_video_frames_from_jpg_images(
        str(tmp_path), image_size, True, img_mean=mean, img_std=std, compute_device=torch.device("cpu")
    )
    source = open_frames(str(tmp_path), image_size, img_mean=mean, img_std=std)
    assert (len(source), source.video_height, source.video_width) == (12, height, width)
    for idx in range(12):
        frame = source[idx]
        assert frame.dtype == torch.float32 and frame.shape == (3, image_size, image_size)
        assert torch.equal(frame, expected[idx]), f"frame {idx} is not bit-identical to the official loader"


def test_jpeg_folder_orders_by_numeric_index(tmp_path):
    # Frame i is a flat grey of level 20 * i, so its position in the sequence is easy to read back.
    frames = [np.full((16, 24, 3), 20 * i, dtype=np.uint8) for i in range(12)]
    names = [f"{i}.jpg" for i in range(12)]
    names[3], names[7] = "3.jpeg", "7.JPG"  # mixed suffixes are all accepted
    write_jpeg_folder(tmp_path, frames, names)
    (tmp_path / "notes.txt").write_text("not a frame")
    Image.fromarray(frames[0]).save(tmp_path / "99.png")  # not a JPEG suffix: ignored, like the official loader
    source = open_frames(tmp_path, 32)  # os.PathLike works too
    assert len(source) == 12
    levels = [int(round(source.frame_rgb(i).mean())) for i in range(12)]
    assert levels == [20 * i for i in range(12)]  # lexicographic order would put 10.jpg and 11.jpg after 1.jpg


@pytest.mark.parametrize("fourcc, suffix", [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_video_file_matches_decoded_frames(tmp_path, fourcc, suffix):
    path = tmp_path / f"clip{suffix}"
    decoded = write_video(path, make_frames(40), fourcc)
    assert len(decoded) == 40
    reference = open_frames(decoded, 64, prefetch=0)
    source = open_frames(str(path), 64, cache_size=9, prefetch=4)
    assert (len(source), source.video_height, source.video_width) == (40, 64, 96)
    rng = np.random.default_rng(1)
    # Forward, backward and random order exercise the sequential fast path, the seek and the grab-forward path.
    order = list(range(40)) + list(range(39, -1, -1)) + list(rng.permutation(40)) + [5, 9, 30, 31, 2]
    assert_same_frames(source, reference, order)
    for idx in (0, 17, 39, 3):
        assert np.array_equal(source.frame_rgb(idx), decoded[idx])
    source.close()


def test_in_memory_frames_match_jpeg_folder(tmp_path):
    decoded = write_jpeg_folder(tmp_path, make_frames(6, height=50, width=70))
    folder = open_frames(str(tmp_path), 64, prefetch=0)
    memory = open_frames(decoded, 64, prefetch=0)
    stacked = open_frames(np.stack(decoded), 64, prefetch=0)
    assert (memory.video_height, memory.video_width) == (folder.video_height, folder.video_width) == (50, 70)
    assert_same_frames(memory, folder, range(6))
    assert_same_frames(stacked, folder, range(6))
    assert np.array_equal(memory.frame_rgb(2), folder.frame_rgb(2))
    assert [tuple(frame.shape) for frame in memory] == [(3, 64, 64)] * 6  # iterates in order, stops at the end


@pytest.mark.parametrize("kind", ["folder", "memory"])
def test_random_and_reverse_access_with_prefetch(tmp_path, kind):
    frames = make_frames(30, height=40, width=56)
    if kind == "folder":
        frames = write_jpeg_folder(tmp_path, frames)
    reference = open_frames(frames, 32, prefetch=0)
    source = open_frames(str(tmp_path) if kind == "folder" else frames, 32, cache_size=7, prefetch=3)
    rng = np.random.default_rng(2)
    assert_same_frames(source, reference, list(range(29, -1, -1)) + list(rng.permutation(30)) + [-1, -30])
    assert torch.equal(source[-1], source[29])


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_cache_stays_bounded_on_long_videos(direction):
    frames = np.random.default_rng(3).integers(0, 256, (1200, 8, 8, 3), dtype=np.uint8)
    source = open_frames(frames, 16, cache_size=8, prefetch=3)
    order = range(1200) if direction == "forward" else range(1199, -1, -1)
    for idx in order:
        source[idx]
        assert source.cache_info()["size"] <= 8
    assert source.wait_prefetch(timeout=10)
    info = source.cache_info()
    assert info["size"] <= 8 and info["maxsize"] == 8
    # Prefetched frames are never evicted before use, so each frame is decoded exactly once.
    assert info["decoded"] == 1200
    assert info["hits"] + info["misses"] == 1200  # how many are hits depends on thread timing


@pytest.mark.parametrize("direction", [1, -1])
def test_stale_prefetch_request_skips_frames_already_read(direction):
    # A prefetch thread that falls behind (a loaded machine) serves a request for a frame the reader has long passed;
    # the frames after it were read and evicted already, and must not be decoded a second time.
    frames = np.random.default_rng(4).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    source = open_frames(frames, 16, cache_size=8, prefetch=3)
    order = range(20) if direction > 0 else range(39, 19, -1)
    for idx in order:
        source[idx]
    assert source.wait_prefetch(timeout=10)
    decoded = source.cache_info()["decoded"]
    stale = 2 if direction > 0 else 37
    assert stale not in source.cache_info()["cached"]
    source._prefetch_around(stale, direction)
    assert source.cache_info()["decoded"] == decoded


def test_reverse_video_reads_blocks_instead_of_seeking_every_frame(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, make_frames(48), "MJPG")
    source = open_frames(str(path), 32, cache_size=8, prefetch=4)  # the video predictor's defaults
    seeks = []
    capture = source._reader._capture
    original_set = capture.set

    class CountingCapture:
        def __getattr__(self, name):
            return getattr(capture, name)

        def set(self, prop, value):
            seeks.append(value)
            return original_set(prop, value)

    source._reader._capture = CountingCapture()
    for idx in range(47, -1, -1):
        source[idx]
        # Stands in for the model, which is much slower than decoding, so that the prefetcher keeps ahead.
        assert source.wait_prefetch(timeout=10)
    assert source.cache_info()["decoded"] == 48
    assert len(seeks) <= 48 // 4 + 4


def test_concurrent_access_from_several_threads():
    frames = make_frames(40, height=24, width=32)
    reference = [open_frames(frames, 32, prefetch=0)[i] for i in range(40)]
    source = open_frames(frames, 32, cache_size=6, prefetch=2)
    errors = []

    def worker(seed):
        try:
            for idx in np.random.default_rng(seed).integers(0, 40, 200):
                if not torch.equal(source[int(idx)], reference[idx]):
                    errors.append(f"frame {idx} differs")
        except Exception as error:  # surfaced in the main thread below
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert source.cache_info()["size"] <= 6


def test_device_and_frame_rgb():
    frames = make_frames(3, height=20, width=30)
    source = open_frames(frames, 16, device="meta")
    assert source[1].device.type == "meta" and source[1].shape == (3, 16, 16)
    rgb = source.frame_rgb(2)
    assert rgb.dtype == np.uint8 and rgb.shape == (20, 30, 3) and np.array_equal(rgb, frames[2])
    rgb[:] = 0  # a copy: the caller's frames are untouched
    assert frames[2].any()


def test_close_and_garbage_collection_stop_the_prefetch_thread():
    frames = make_frames(5, height=8, width=8)
    with open_frames(frames, 8, prefetch=2) as source:
        source[0]
        thread = source._prefetcher._thread
    thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        source[0]
    source = open_frames(frames, 8, prefetch=2)
    source[0]
    thread = source._prefetcher._thread
    del source
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(ValueError, match=r"no JPEG frames found in folder .*" + tmp_path.name):
        open_frames(str(tmp_path), 32)


def test_missing_path_is_an_error(tmp_path):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        open_frames(str(missing), 32)


def test_non_numeric_frame_name_is_an_error(tmp_path):
    write_jpeg_folder(tmp_path, make_frames(3, 8, 8), ["0.jpg", "1.jpg", "frame_2.jpg"])
    with pytest.raises(ValueError, match="frame_2.jpg"):
        open_frames(str(tmp_path), 32)


def test_duplicate_frame_index_is_an_error(tmp_path):
    write_jpeg_folder(tmp_path, make_frames(2, 8, 8), ["1.jpg", "001.jpeg"])
    with pytest.raises(ValueError, match="frame index 1"):
        open_frames(str(tmp_path), 32)


def test_unreadable_video_is_an_error(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError, match="broken.mp4"):
        open_frames(str(path), 32)


def test_corrupt_or_mismatched_jpeg_fails_on_access_naming_the_file(tmp_path):
    write_jpeg_folder(tmp_path, make_frames(3, 16, 16))
    (tmp_path / "1.jpg").write_bytes(b"garbage")
    Image.fromarray(make_frames(1, 20, 20)[0]).save(tmp_path / "2.jpg")
    source = open_frames(str(tmp_path), 32, prefetch=0)
    with pytest.raises(RuntimeError, match="1.jpg"):
        source[1]
    with pytest.raises(ValueError, match="2.jpg.*same size"):
        source[2]


def test_index_out_of_range_is_an_index_error():
    source = open_frames(make_frames(4, 8, 8), 16)
    with pytest.raises(IndexError, match="frame index 4 is out of range .* 4 frames"):
        source[4]
    with pytest.raises(IndexError, match="-5"):
        source.frame_rgb(-5)
    with pytest.raises(TypeError, match="integer"):
        source[1.5]


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "empty"),
        ([np.zeros((8, 8, 3), np.float32)], "uint8"),
        ([np.zeros((8, 8), np.uint8)], "H x W x 3"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], "same size"),
        (np.zeros((8, 8, 3), np.uint8), "T x H x W x 3"),
    ],
)
def test_bad_in_memory_frames_are_errors(frames, message):
    with pytest.raises(ValueError, match=message):
        open_frames(frames, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 16, "cache_size": 0}, "cache_size"),
        ({"image_size": 16, "cache_size": 8, "prefetch": 8}, "prefetch"),
        ({"image_size": 16, "img_mean": (0.5, 0.5)}, "img_mean"),
        ({"image_size": 16, "img_std": (0.5, 0.0, 0.5)}, "img_std"),
    ],
)
def test_bad_arguments_are_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        open_frames(make_frames(2, 8, 8), **kwargs)


def test_unsupported_source_type_is_an_error():
    with pytest.raises(TypeError, match="unsupported video source"):
        open_frames(42, 16)
