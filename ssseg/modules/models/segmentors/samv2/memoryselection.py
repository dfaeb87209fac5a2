"""Which past frames the memory attention of a frame sees: conditioning frames and recent non-conditioning ones."""

from typing import Any, Dict, List, Tuple


def select_closest_cond_frames(
    frame_idx: int, cond_outputs: Dict[int, Any], max_cond_frames: int
) -> Tuple[Dict[int, Any], Dict[int, Any]]:
    """Split the conditioning frames into the ``max_cond_frames`` temporally closest ones and the rest.

    The closest frame before ``frame_idx`` and the closest at or after it are always kept; the remaining slots go to
    the frames nearest in time. ``max_cond_frames == -1`` keeps them all.
    """
    if max_cond_frames == -1 or len(cond_outputs) <= max_cond_frames:
        return cond_outputs, {}
    if max_cond_frames < 2:
        raise ValueError(f"max_cond_frames_in_attn must be -1 or >= 2, got {max_cond_frames}")
    before = [t for t in cond_outputs if t < frame_idx]
    after = [t for t in cond_outputs if t >= frame_idx]
    chosen = ([max(before)] if before else []) + ([min(after)] if after else [])
    others = sorted((t for t in cond_outputs if t not in chosen), key=lambda t: abs(t - frame_idx))
    chosen += others[: max_cond_frames - len(chosen)]
    selected = {t: cond_outputs[t] for t in chosen}
    unselected = {t: v for t, v in cond_outputs.items() if t not in selected}
    return selected, unselected


def recent_memory_frames(frame_idx: int, num_maskmem: int, stride: int, reverse: bool) -> List[Tuple[int, int]]:
    """``(t_pos, frame index)`` of the ``num_maskmem - 1`` recent memories of ``frame_idx``.

    ``t_pos = num_maskmem - 1`` is the previous frame (the next one when tracking in reverse); the others are taken
    every ``stride`` frames before it, ``t_pos = 1`` the farthest.
    """
    frames = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos  # frames before the current one
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        frames.append((t_pos, prev))
    return frames
