"""Property-based tests of the server's JSON bodies: any JSON value (wrong types, missing / extra fields, NaN-like
strings, huge or negative numbers, points outside the frame, wrong list lengths) sent to the prompts, propagate and
everything endpoints and as the path of ``POST /api/sessions`` gives no 5xx; every error has the one error shape
with a one-line message and no traceback; and after a bad request the session answers a valid click with exactly
the mask a fresh session gives."""

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from ssseg.modules.models.segmentors.samv2.masks import decode_rle
from tests.samv2.server.conftest import frames_zip, open_image, video_frames

CLICK = {"object_id": 1, "points": [[60.0, 50.0]], "labels": [1]}
SCALE = max(4, settings.default.max_examples // 2)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "NaN", "nan", "Infinity", "-inf", "1e309", "1", "0x10", "a\nb", "é"]),
    st.sampled_from([0, -1, 1, 2, 255, 256, 10**20, 1e300, -5.5]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
points = st.one_of(
    st.lists(st.lists(st.one_of(st.floats(-500, 500), json_scalars), min_size=0, max_size=3), max_size=3),
    json_values,
)


prompt_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "frame": st.one_of(st.integers(-2, 3), json_values),
            "object_id": st.one_of(st.integers(-1, 300), json_values),
            "points": points,
            "labels": st.one_of(st.lists(st.integers(-1, 3), max_size=3), json_values),
            "box": st.one_of(st.lists(st.floats(-500, 500), min_size=3, max_size=5), json_values),
            "clear_old": json_values,
            "multimask": json_values,
            "extra": json_values,
        },
    ),
    json_values,
)
propagate_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "start_frame": st.one_of(st.integers(-2, 4), json_values),
            "direction": st.one_of(st.sampled_from(["both", "forward", "backward", "sideways"]), json_values),
            "max_frames": st.one_of(st.integers(-2, 4), json_values),
            "extra": json_values,
        },
    ),
    json_values,
)
# the generator's cost grows with points_per_side and crop layers: keep those small (or invalid)
small_sides = st.sampled_from([1, 2, 0, -1, "2", None, 2.5, 10**30, "NaN", [2]])
option_names = [
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "min_mask_region_area",
    "points_per_batch",
    "output_mode",
    "use_m2m",
    "crop_n_layers",
    "bogus",
]
everything_bodies = st.one_of(
    st.builds(
        lambda side, name, value: {"points_per_side": side, name: value},
        small_sides,
        st.sampled_from(option_names),
        st.one_of(st.sampled_from([0, 1, -1, 0.5, 10**30]), json_values),
    ),
    json_values,
)
path_bodies = st.one_of(
    st.fixed_dictionaries({"path": st.one_of(st.text(max_size=8), json_values)}, optional={"extra": json_values}),
    json_values,
)


def assert_not_5xx(response) -> None:
    body = response.text[:300]
    assert response.status_code < 500, f"HTTP {response.status_code}: {body}"
    if response.status_code >= 300:
        data = response.json()
        assert isinstance(data, dict) and set(data) == {"error"}, f"error body is not {{'error': ...}}: {body}"
        error = data["error"]
        assert isinstance(error, dict) and set(error) == {"status", "message"}, f"error is not status+message: {body}"
        assert error["status"] == response.status_code, f"error.status {error['status']} != {response.status_code}"
        message = error["message"]
        assert isinstance(message, str) and message.strip(), f"empty message: {body}"
        assert "\n" not in message, f"message is not one line: {message!r}"
        assert "Traceback" not in response.text and 'File "' not in response.text, f"a traceback: {body}"


def click_mask(client, sid) -> np.ndarray:
    response = client.post(f"/api/sessions/{sid}/prompts", json=CLICK)
    assert response.status_code == 200, f"the valid click failed: HTTP {response.status_code} {response.text[:300]}"
    (entry,) = [o for o in response.json()["objects"] if o["object_id"] == 1]
    return decode_rle(entry["mask"])


def video_session(client) -> str:
    files = {"file": ("clip.zip", frames_zip(video_frames(2, 64, 96)), "application/zip")}
    response = client.post("/api/sessions", files=files)
    assert response.status_code == 201, f"video upload: HTTP {response.status_code} {response.text[:300]}"
    return response.json()["session_id"]


@pytest.fixture(scope="module")
def image():
    from tests.conftest import make_test_image

    return make_test_image(96, 128, seed=1)


def run_property(client, make_session, endpoint, body):
    """Send ``body``; then the session must answer the valid click exactly as a fresh session does."""
    sid = make_session()
    response = client.post(f"/api/sessions/{sid}/{endpoint}", json=body)
    assert_not_5xx(response)
    if response.status_code >= 300:
        want = click_mask(client, make_session())
        got = click_mask(client, sid)
        assert np.array_equal(got, want), f"after a rejected {endpoint} body the click mask differs from a fresh one"


@settings(max_examples=2 * SCALE)
@given(body=prompt_bodies)
def test_prompts_any_body(make_client, image, body):
    client = make_client()
    run_property(client, lambda: open_image(client, image)["session_id"], "prompts", body)


@settings(max_examples=SCALE)
@given(body=propagate_bodies)
def test_propagate_any_body(make_client, body):
    client = make_client()
    run_property(client, lambda: video_session(client), "propagate", body)


@settings(max_examples=SCALE)
@given(body=everything_bodies)
def test_everything_any_body(make_client, image, body):
    client = make_client()
    run_property(client, lambda: open_image(client, image)["session_id"], "everything", body)


@pytest.fixture
def data_root(tmp_path, image):
    """A data root with an image, a folder of frames and a file that is not media."""
    from PIL import Image

    root = tmp_path / "root"
    (root / "frames").mkdir(parents=True)
    Image.fromarray(image).save(root / "a.png")
    for t, frame in enumerate(video_frames(2, 64, 96)):
        Image.fromarray(frame).save(root / "frames" / f"{t:05d}.jpg")
    (root / "notes.txt").write_text("not an image")
    return str(root)


paths = st.one_of(
    st.sampled_from(["a.png", "frames", "notes.txt", "../a.png", "/etc/passwd", "frames/../a.png", ".", "a.png\x00"]),
    st.text(max_size=8),
)


@settings(max_examples=2 * SCALE)
@given(body=st.one_of(path_bodies, st.fixed_dictionaries({"path": paths})))
def test_open_path_any_body(make_client, data_root, image, body):
    client = make_client(data_root=data_root)
    response = client.post("/api/sessions", json=body)
    assert_not_5xx(response)
    if response.status_code >= 300:  # the server still opens a valid path and answers a click on it
        sid = client.post("/api/sessions", json={"path": "a.png"}).json()["session_id"]
        want = click_mask(client, open_image(client, image)["session_id"])
        assert np.array_equal(click_mask(client, sid), want), "after a rejected path the click mask differs"


def test_error_message_quoting_a_client_path_stays_one_line(make_client, data_root):
    """Found by test_open_path_any_body: a path with a newline was echoed into a two-line error message, and one
    with a NUL character was a 500 (ValueError from os.path)."""
    client = make_client(data_root=data_root)
    for path in ("\n", "a\r\nb.png", "x\x00y", "../\n"):
        response = client.post("/api/sessions", json={"path": path})
        assert response.status_code in (400, 403, 404), f"path {path!r}: HTTP {response.status_code} {response.text}"
        assert_not_5xx(response)
        message = response.json()["error"]["message"]
        assert repr(path)[1:-1] in message, f"path {path!r}: message {message!r} does not quote it escaped"
