"""Memory frame selection against the official rules."""

import random

import pytest

from ssseg.modules.models.segmentors.samv2.memoryselection import recent_memory_frames, select_closest_cond_frames


def test_select_closest_cond_frames_matches_official():
    from sam2.modeling.sam2_utils import select_closest_cond_frames as official

    rng = random.Random(0)
    for _ in range(300):
        frames = {t: f"out{t}" for t in rng.sample(range(60), rng.randint(1, 12))}
        frame_idx, limit = rng.randint(0, 59), rng.choice([-1, 2, 3, 5])
        ours = select_closest_cond_frames(frame_idx, frames, limit)
        theirs = official(frame_idx, frames, limit)
        # same frames in the same order (the order of memories and pointers fed to the attention)
        assert [list(d.items()) for d in ours] == [list(d.items()) for d in theirs]
    with pytest.raises(ValueError, match=">= 2"):
        select_closest_cond_frames(5, {1: 1, 2: 2, 3: 3}, 1)


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("reverse", [False, True])
def test_recent_memory_frames(stride, reverse):
    positions = recent_memory_frames(20, num_maskmem=7, stride=stride, reverse=reverse)
    assert [t for t, _ in positions] == [1, 2, 3, 4, 5, 6]
    step = 1 if reverse else -1
    assert positions[-1][1] == 20 + step  # the adjacent frame
    if stride == 1:
        assert [f for _, f in positions] == [20 + step * k for k in range(6, 0, -1)]
    else:
        # every stride-th frame for the older ones
        assert all(f % stride == 0 for _, f in positions[:-1])
