"""The prompts file of ``ssseg-samv2 video``: valid files load, every malformed one names the entry and the rule."""

import json

import numpy as np
import pytest
from PIL import Image

from ssseg.samv2.prompts import PromptsError, load_prompts


def write(tmp_path, data, name="prompts.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_valid_file_loads_every_prompt_kind(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    path = write(
        tmp_path,
        {
            "objects": [
                {"id": 1, "frame": 0, "points": [[10, 20], [30, 40]], "labels": [1, 0]},
                {"id": 2, "frame": 3, "box": [1, 2, 30, 40]},
                {"id": 2, "frame": 5, "box": [1, 2, 30, 40], "points": [[5, 6]], "labels": [1]},
                {"id": 3, "frame": 1, "mask": "m.png"},
            ]
        },
    )
    prompts = load_prompts(path, num_frames=6)
    assert [(p.obj_id, p.frame) for p in prompts] == [(1, 0), (2, 3), (2, 5), (3, 1)]
    assert prompts[0].points.dtype == np.float32 and prompts[0].points.shape == (2, 2)
    assert prompts[0].labels.tolist() == [1, 0] and prompts[0].box is None
    assert prompts[1].box.tolist() == [1, 2, 30, 40] and prompts[1].points is None
    assert prompts[2].box is not None and prompts[2].points.shape == (1, 2)
    assert prompts[3].mask.dtype == bool and prompts[3].mask.sum() == 6


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"frame": 0, "box": [0, 0, 1, 1]}, r"objects\[0\]: missing 'id'"),
        ({"id": 1, "box": [0, 0, 1, 1]}, r"objects\[0\]: missing 'frame'"),
        ({"id": 0, "frame": 0, "box": [0, 0, 1, 1]}, r"objects\[0\]\.id: must be an integer in 1\.\.255"),
        ({"id": 256, "frame": 0, "box": [0, 0, 1, 1]}, r"1\.\.255"),
        ({"id": "a", "frame": 0, "box": [0, 0, 1, 1]}, r"\.id: must be an integer"),
        ({"id": 1, "frame": -1, "box": [0, 0, 1, 1]}, r"\.frame: must be an integer >= 0"),
        ({"id": 1, "frame": 1.5, "box": [0, 0, 1, 1]}, r"\.frame: must be an integer >= 0"),
        ({"id": 1, "frame": 0}, r"give 'points' with 'labels', a 'box', or a 'mask'"),
        ({"id": 1, "frame": 0, "points": [[1, 2]]}, r"'points' and 'labels' go together"),
        ({"id": 1, "frame": 0, "labels": [1]}, r"'points' and 'labels' go together"),
        ({"id": 1, "frame": 0, "points": [[1, 2]], "labels": [1, 1]}, r"\.labels: expected 1 labels"),
        ({"id": 1, "frame": 0, "points": [[1, 2, 3]], "labels": [1]}, r"\.points: expected a non-empty list"),
        ({"id": 1, "frame": 0, "points": [], "labels": []}, r"\.points: expected a non-empty list"),
        ({"id": 1, "frame": 0, "points": [["a", 2]], "labels": [1]}, r"\.points: expected a list of \[x, y\]"),
        ({"id": 1, "frame": 0, "points": [[1, 2]], "labels": [2]}, r"\.labels: must be 1 \(foreground\) or 0"),
        ({"id": 1, "frame": 0, "box": [5, 0, 1, 1]}, r"\.box: needs x1 >= x0"),
        ({"id": 1, "frame": 0, "box": [0, 0, 1]}, r"\.box: expected \[x0, y0, x1, y1\]"),
        ({"id": 1, "frame": 0, "mask": "nothere.png"}, r"\.mask: cannot read mask image"),
        ({"id": 1, "frame": 0, "mask": "m.png", "box": [0, 0, 1, 1]}, r"cannot be combined"),
        ({"id": 1, "frame": 0, "bx": [0, 0, 1, 1]}, r"unknown key\(s\) \['bx'\]"),
        ([1, 0], r"objects\[0\]: expected an object"),
    ],
)
def test_malformed_entries_name_the_entry(tmp_path, entry, message):
    path = write(tmp_path, {"objects": [entry]})
    with pytest.raises(PromptsError, match=message) as info:
        load_prompts(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps([{"id": 1}]), r'expected \{"objects": \[\.\.\.\]\}'),
        (json.dumps({"objects": []}), "'objects' is empty"),
    ],
)
def test_malformed_files(tmp_path, content, message):
    with pytest.raises(PromptsError, match=message):
        load_prompts(write(tmp_path, content))


def test_frame_range_duplicates_and_missing_file(tmp_path):
    entry = {"id": 1, "frame": 4, "box": [0, 0, 1, 1]}
    with pytest.raises(PromptsError, match=r"objects\[0\]\.frame: 4 is out of range for a video of 4 frames"):
        load_prompts(write(tmp_path, {"objects": [entry]}), num_frames=4)
    with pytest.raises(PromptsError, match=r"objects\[1\]: object 1 already has a prompt on frame 4"):
        load_prompts(write(tmp_path, {"objects": [entry, entry]}))
    with pytest.raises(PromptsError, match="prompts file not found"):
        load_prompts(str(tmp_path / "none.json"))
