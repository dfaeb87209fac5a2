"""Typed inference state of :class:`SAMV2VideoPredictor`, and the disk spill that keeps its memory bounded.

The official predictor keeps its session in a dict of about twenty string keys and never lets go of anything: every
frame decoded at ``image_size`` (12 MB per frame at 1024) plus, for every object and tracked frame, a bfloat16 memory
(``mem_dim x S/16 x S/16``, 512 KB at 1024) and float32 low-resolution mask logits (``S/4 x S/4``, 256 KB). Here
the state is a :class:`VideoInferenceState` holding one :class:`ObjectState` per object, the frames come from a
streaming :class:`~.video.FrameSource`, and the per-frame outputs that memory attention can no longer reach are moved
out of memory (see :class:`NonCondOutputs`).

What is kept in memory, and why
-------------------------------
* Conditioning-frame outputs (frames the user prompted): always, in full. Every tracked frame attends to them.
* Non-conditioning outputs (tracked frames) within ``release_radius`` frames of the frame last processed: in full.
  A frame attends to the memories of the ``num_maskmem - 1`` frames before it (every
  ``memory_temporal_stride_for_eval``-th) and to the object pointers of the ``max_obj_ptrs_in_encoder - 1`` frames
  before it, so the radius covers both and propagation never reads the spill.
* Every other tracked frame: its object pointer and object score (about 1 KB per object and frame) stay in memory;
  its mask logits and memory features go to a temporary file (:class:`SpillFile`) and are read back, bit for bit,
  when needed again: a correction click on an old frame (which needs that frame's logits and the memories of the
  frames before it), a propagation that starts in the middle of the video, or the consolidated output of a frame.
  Results are therefore identical with and without the release; only where the bytes live changes. The file lives
  in ``spill_dir`` (default: the system temp folder; put it on disk, not on a RAM-backed tmpfs), is deleted when the
  state is closed or garbage-collected, and reuses the slots of entries that are overwritten or removed.
"""

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Iterator, List, Optional, Tuple

import torch

from .samv2 import FrameOutput
from .video import FrameSource

__all__ = [
    "CachedFeatures",
    "NonCondOutputs",
    "ObjectState",
    "SpillFile",
    "SpillSlot",
    "SpilledOutput",
    "VideoInferenceState",
    "memory_only",
]

# pred_masks of a memory-only FrameOutput: track_step reads just the memory fields of the frames it attends to
NO_MASKS = torch.empty(0)


def memory_only(out: FrameOutput, dtype: Optional[torch.dtype] = None) -> FrameOutput:
    """What memory attention reads of ``out`` (memory, its position encoding, the pointer), the memory cast to
    ``dtype`` when given (memories are stored in reduced precision)."""
    memory = out.maskmem_features
    if memory is not None and dtype is not None:
        memory = memory.to(dtype)
    return FrameOutput(
        pred_masks=NO_MASKS,
        obj_ptr=out.obj_ptr,
        object_score_logits=out.object_score_logits,
        maskmem_features=memory,
        maskmem_pos_enc=out.maskmem_pos_enc,
    )


# ---------------------------------------------------------------------------------------------------------- spill file
@dataclass(frozen=True)
class SpillSlot:
    """Where one tensor lives in a :class:`SpillFile`: its byte range and how to rebuild it."""

    offset: int
    nbytes: int
    dtype: torch.dtype
    shape: Tuple[int, ...]
    device: torch.device


class SpillFile:
    """An anonymous temporary file holding tensors by value; slots of freed tensors are reused.

    Tensors are written as their raw bytes (bfloat16 included), so a round trip is exact. The file is created on the
    first write and removed by :meth:`close` (or when the object is garbage-collected). Thread-safe.
    """

    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = directory
        self._file = None
        self._lock = threading.Lock()
        self._free: Dict[int, List[int]] = {}  # nbytes -> free offsets of that size
        self._end = 0
        self._in_use = 0

    @property
    def bytes_in_use(self) -> int:
        """Bytes held by live slots."""
        return self._in_use

    @property
    def file_size(self) -> int:
        """Current size of the file in bytes (live slots plus free ones)."""
        return self._end

    def write(self, tensor: torch.Tensor) -> SpillSlot:
        """Copy ``tensor`` into the file and return its slot."""
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        nbytes = int(data.nbytes)
        with self._lock:
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="ssseg-video-state-", dir=self.directory)
            free = self._free.get(nbytes)
            if free:
                offset = free.pop()
            else:
                offset = self._end
                self._end += nbytes
            self._file.seek(offset)
            self._file.write(memoryview(data))
            self._in_use += nbytes
        return SpillSlot(offset, nbytes, tensor.dtype, tuple(tensor.shape), tensor.device)

    def read(self, slot: SpillSlot) -> torch.Tensor:
        """A new tensor with the contents of ``slot``, on the device it was written from."""
        buffer = torch.empty(slot.nbytes, dtype=torch.uint8)
        view = memoryview(buffer.numpy())
        with self._lock:
            if self._file is None:
                raise RuntimeError("the spill file is closed")
            self._file.seek(slot.offset)
            if self._file.readinto(view) != slot.nbytes:
                raise RuntimeError(f"short read from the spill file at offset {slot.offset}")
        return buffer.view(slot.dtype).reshape(slot.shape).to(slot.device)

    def free(self, slot: SpillSlot) -> None:
        """Give the slot back for reuse (its bytes stay until overwritten)."""
        with self._lock:
            self._free.setdefault(slot.nbytes, []).append(slot.offset)
            self._in_use -= slot.nbytes

    def clear(self) -> None:
        """Free every slot and truncate the file."""
        with self._lock:
            self._free.clear()
            self._end = 0
            self._in_use = 0
            if self._file is not None:
                self._file.truncate(0)

    def close(self) -> None:
        """Delete the file; a later write creates a new one."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._free.clear()
            self._end = 0
            self._in_use = 0


@dataclass
class SpilledOutput:
    """A non-conditioning output whose large tensors are in the spill file; the small ones stay in memory."""

    obj_ptr: torch.Tensor  # 1 x C
    object_score_logits: torch.Tensor  # 1 x 1
    pred_masks: SpillSlot  # 1 x 1 x S/4 x S/4 float32 logits
    maskmem_features: Optional[SpillSlot]  # 1 x mem_dim x S/16 x S/16, None when no memory was encoded
    maskmem_pos_enc: Optional[torch.Tensor]  # the state's shared constant


class NonCondOutputs:
    """One object's non-conditioning outputs (frames it was tracked on), ``frame -> FrameOutput``.

    Entries are resident (a :class:`FrameOutput`) or spilled (a :class:`SpilledOutput`) after
    :meth:`release_far_from`. Reading a spilled entry (:meth:`get`, :meth:`get_memory`) returns a transient copy and
    leaves it spilled: such reads are rare (corrections on old frames, propagation starting mid-video).
    """

    def __init__(self, spill: Optional[SpillFile]) -> None:
        self._spill = spill
        self._resident: Dict[int, FrameOutput] = {}
        self._spilled: Dict[int, SpilledOutput] = {}

    def __contains__(self, frame_idx: object) -> bool:
        return frame_idx in self._resident or frame_idx in self._spilled

    def __len__(self) -> int:
        return len(self._resident) + len(self._spilled)

    def __iter__(self) -> Iterator[int]:
        yield from list(self._resident)
        yield from list(self._spilled)

    def keys(self) -> List[int]:
        return sorted(self)

    @property
    def num_resident(self) -> int:
        return len(self._resident)

    def __setitem__(self, frame_idx: int, out: FrameOutput) -> None:
        self.discard(frame_idx)
        self._resident[frame_idx] = out

    def get(self, frame_idx: int) -> Optional[FrameOutput]:
        """The full output (mask logits included), or None when the frame has none."""
        out = self._resident.get(frame_idx)
        if out is not None:
            return out
        spilled = self._spilled.get(frame_idx)
        if spilled is None:
            return None
        memory = None if spilled.maskmem_features is None else self._spill.read(spilled.maskmem_features)
        return FrameOutput(
            pred_masks=self._spill.read(spilled.pred_masks),
            obj_ptr=spilled.obj_ptr,
            object_score_logits=spilled.object_score_logits,
            maskmem_features=memory,
            maskmem_pos_enc=spilled.maskmem_pos_enc,
        )

    def get_memory(self, frame_idx: int, dtype: Optional[torch.dtype] = None) -> Optional[FrameOutput]:
        """What memory attention reads of the frame (see :func:`memory_only`), or None."""
        out = self._resident.get(frame_idx)
        if out is not None:
            return memory_only(out, dtype)
        spilled = self._spilled.get(frame_idx)
        if spilled is None:
            return None
        memory = None if spilled.maskmem_features is None else self._spill.read(spilled.maskmem_features)
        return FrameOutput(
            pred_masks=NO_MASKS,
            obj_ptr=spilled.obj_ptr,
            object_score_logits=spilled.object_score_logits,
            maskmem_features=memory if memory is None or dtype is None else memory.to(dtype),
            maskmem_pos_enc=spilled.maskmem_pos_enc,
        )

    def discard(self, frame_idx: int) -> None:
        """Remove the frame's output if there is one (its spill slots are freed)."""
        self._resident.pop(frame_idx, None)
        spilled = self._spilled.pop(frame_idx, None)
        if spilled is not None:
            self._free(spilled)

    def clear(self) -> None:
        self._resident.clear()
        for spilled in self._spilled.values():
            self._free(spilled)
        self._spilled.clear()

    def release_far_from(self, frame_idx: int, radius: int) -> None:
        """Spill the resident entries more than ``radius`` frames away from ``frame_idx``."""
        if self._spill is None:
            return
        for t in [t for t in self._resident if abs(t - frame_idx) > radius]:
            out = self._resident.pop(t)
            self._spilled[t] = SpilledOutput(
                obj_ptr=out.obj_ptr.clone(),  # a copy, so that no batched tensor is kept alive by a view of it
                object_score_logits=out.object_score_logits.clone(),
                pred_masks=self._spill.write(out.pred_masks),
                maskmem_features=None if out.maskmem_features is None else self._spill.write(out.maskmem_features),
                maskmem_pos_enc=out.maskmem_pos_enc,
            )

    def _free(self, spilled: SpilledOutput) -> None:
        self._spill.free(spilled.pred_masks)
        if spilled.maskmem_features is not None:
            self._spill.free(spilled.maskmem_features)


# -------------------------------------------------------------------------------------------------------------- state
@dataclass
class ObjectState:
    """Inputs and outputs of one object (the official ``*_per_obj[obj_idx]`` entries, gathered in one place).

    Outputs are per-object slices (batch size 1): ``pred_masks`` 1 x 1 x S/4 x S/4 low-resolution logits (after hole
    filling), ``obj_ptr`` 1 x C, ``object_score_logits`` 1 x 1, ``maskmem_features`` 1 x mem_dim x S/16 x S/16 in the
    predictor's memory dtype (None until the memory is encoded), ``maskmem_pos_enc`` the state's shared constant.
    """

    obj_id: Hashable
    non_cond_outputs: NonCondOutputs
    # frame -> {"point_coords": 1 x P x 2 float32 in model input pixels, "point_labels": 1 x P int32}
    point_inputs: Dict[int, Dict[str, torch.Tensor]] = field(default_factory=dict)
    # frame -> 1 x 1 x S x S float mask
    mask_inputs: Dict[int, torch.Tensor] = field(default_factory=dict)
    # outputs of frames with prompts: attended to by every tracked frame
    cond_outputs: Dict[int, FrameOutput] = field(default_factory=dict)
    # outputs of the latest clicks / masks, merged into the outputs above when propagation starts
    temp_cond_outputs: Dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond_outputs: Dict[int, FrameOutput] = field(default_factory=dict)
    # frames that have an output from tracking or prompts -> whether they were tracked in reverse
    frames_tracked: Dict[int, bool] = field(default_factory=dict)

    def temp_outputs(self, is_cond: bool) -> Dict[int, FrameOutput]:
        return self.temp_cond_outputs if is_cond else self.temp_non_cond_outputs

    def latest_output(self, frame_idx: int, is_cond: bool) -> Optional[FrameOutput]:
        """The most recent output on a frame: the temporary one of that kind, else a conditioning, else a tracked
        one (the official lookup order)."""
        out = self.temp_outputs(is_cond).get(frame_idx)
        if out is None:
            out = self.cond_outputs.get(frame_idx)
        if out is None:
            out = self.non_cond_outputs.get(frame_idx)
        return out

    def clear(self) -> None:
        """Forget every input and output (the object itself stays)."""
        self.point_inputs.clear()
        self.mask_inputs.clear()
        self.cond_outputs.clear()
        self.non_cond_outputs.clear()
        self.temp_cond_outputs.clear()
        self.temp_non_cond_outputs.clear()
        self.frames_tracked.clear()


@dataclass
class CachedFeatures:
    """Backbone output of the most recently encoded frame (the official predictor caches exactly one)."""

    frame_idx: int
    backbone_out: Dict[str, Any]


@dataclass(eq=False)
class VideoInferenceState:
    """Everything :class:`SAMV2VideoPredictor` knows about one video session.

    Create it with :meth:`SAMV2VideoPredictor.initstate`. Objects keep the order in which they were first prompted;
    that order is the model-side object index and the order of every returned mask batch.
    """

    frames: FrameSource
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device  # where the model runs
    storage_device: torch.device  # where memories and mask logits are kept (CPU with offload_state_to_cpu)
    offload_video_to_cpu: bool
    offload_state_to_cpu: bool
    # non-conditioning outputs farther than this from the last processed frame leave memory (None: never)
    release_radius: Optional[int]
    spill: Optional[SpillFile]
    objects: Dict[Hashable, ObjectState] = field(default_factory=OrderedDict)
    cached_features: Optional[CachedFeatures] = None
    # the memory position encoding is the same for every frame and object: one 1 x mem_dim x h x w copy
    maskmem_pos_enc: Optional[torch.Tensor] = None

    @property
    def obj_ids(self) -> List[Hashable]:
        """Object ids in model order."""
        return list(self.objects)

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    def object_list(self) -> List[ObjectState]:
        return list(self.objects.values())

    def add_object(self, obj_id: Hashable) -> ObjectState:
        """The object's state, created on first use (objects may be added at any time, also after tracking)."""
        obj = self.objects.get(obj_id)
        if obj is None:
            obj = ObjectState(obj_id=obj_id, non_cond_outputs=NonCondOutputs(self.spill))
            self.objects[obj_id] = obj
        return obj

    def release_far_from(self, frame_idx: int) -> None:
        """Move tracked outputs that memory attention around ``frame_idx`` cannot reach out of memory."""
        if self.release_radius is None:
            return
        for obj in self.objects.values():
            obj.non_cond_outputs.release_far_from(frame_idx, self.release_radius)

    def spilled_bytes(self) -> int:
        """Bytes of outputs currently held in the spill file."""
        return 0 if self.spill is None else self.spill.bytes_in_use

    def close(self) -> None:
        """Release the frame source and the spill file; the state cannot be used afterwards."""
        for obj in self.objects.values():
            obj.clear()
        self.objects.clear()
        self.cached_features = None
        if self.spill is not None:
            self.spill.close()
        self.frames.close()


def spill_dir_or_default(spill_dir: Optional[str]) -> Optional[str]:
    """Check a user-given spill folder (None: the system temp folder)."""
    if spill_dir is not None and not os.path.isdir(spill_dir):
        raise FileNotFoundError(f"spill_dir '{spill_dir}' is not an existing folder")
    return spill_dir
