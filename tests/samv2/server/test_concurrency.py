"""A propagation on a real uvicorn server: other sessions keep being answered while it runs, a second one is 409,
``cancel`` stops it, and a client that disconnects mid-stream stops it too."""

import json
import threading
import time

import httpx
import pytest

from ssseg.samv2.server import create_app
from tests.samv2.server.conftest import frames_zip, png_bytes, serve_in_thread, video_frames

NUM_FRAMES = 12


@pytest.fixture(scope="module")
def long_clip_zip():
    return frames_zip(video_frames(NUM_FRAMES))


def check(response, status):
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:300]}"
    return response


def open_video(http, data) -> str:
    sid = check(http.post("/api/sessions", files={"file": ("clip.zip", data, "application/zip")}), 201).json()
    sid = sid["session_id"]
    check(http.post(f"/api/sessions/{sid}/prompts", json={"object_id": 1, "points": [[40, 30]], "labels": [1]}), 200)
    return sid


def wait_idle(http, sid, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while check(http.get(f"/api/sessions/{sid}"), 200).json()["propagating"]:
        assert time.monotonic() < deadline, f"session {sid} still propagating after {timeout} s"
        time.sleep(0.05)


def tracked_frames(http, sid):
    return [
        t for t in range(NUM_FRAMES) if check(http.get(f"/api/sessions/{sid}/frames/{t}/masks"), 200).json()["objects"]
    ]


def test_propagation_does_not_block_and_stops(small_model, small_image, long_clip_zip, tmp_path):
    app = create_app(small_model, model_name="small", workdir=str(tmp_path / "work"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        video = open_video(http, long_clip_zip)
        image = check(http.post("/api/sessions", files={"file": ("a.png", png_bytes(small_image))}), 201).json()
        lines, first_line = [], threading.Event()

        def consume():
            with httpx.Client(base_url=url, timeout=60) as other:
                with other.stream("POST", f"/api/sessions/{video}/propagate", json={"direction": "forward"}) as r:
                    for line in r.iter_lines():
                        lines.append(json.loads(line))
                        first_line.set()

        reader = threading.Thread(target=consume)
        reader.start()
        assert first_line.wait(60), "no frame streamed within 60 s"
        # while it runs: a second propagation and a change of that session are 409 ...
        check(http.post(f"/api/sessions/{video}/propagate", json={}), 409)
        busy = {"object_id": 1, "points": [[10, 10]], "labels": [1]}
        check(http.post(f"/api/sessions/{video}/prompts", json=busy), 409)
        # ... while other sessions' clicks, frame fetches and the health check are answered before it ends
        click = {"object_id": 1, "points": [[60, 50]], "labels": [1]}
        assert check(http.post(f"/api/sessions/{image['session_id']}/prompts", json=click), 200).json()["objects"]
        check(http.get(f"/api/sessions/{video}/frames/5"), 200)
        check(http.get("/api/health"), 200)
        assert check(http.get(f"/api/sessions/{video}"), 200).json()["propagating"], (
            "the propagation ended before the other requests were answered: they were not served alongside it"
        )
        assert check(http.post(f"/api/sessions/{video}/cancel"), 200).json() == {"cancelled": True}
        reader.join(60)
        assert lines[-1]["done"] is True and lines[-1]["cancelled"] is True, f"last line {lines[-1]}"
        assert lines[-1]["frames"] == len(lines) - 1 < NUM_FRAMES, f"cancel did not stop it: {lines[-1]}"
        wait_idle(http, video)
        assert check(http.post(f"/api/sessions/{video}/cancel"), 200).json() == {"cancelled": False}
        check(http.post(f"/api/sessions/{video}/prompts", json=busy), 200)  # usable again

        # a client that goes away mid-stream cancels the propagation
        fresh = open_video(http, long_clip_zip)
        with http.stream("POST", f"/api/sessions/{fresh}/propagate", json={"direction": "forward"}) as response:
            first = json.loads(next(response.iter_lines()))
            assert first["frame"] == 0, f"first streamed line {first}"
        wait_idle(http, fresh)
        done = tracked_frames(http, fresh)
        assert len(done) < NUM_FRAMES, f"tracking went on to every frame after the client left: {done}"

        # deleting a session mid-propagation stops it and ends the stream
        with http.stream("POST", f"/api/sessions/{fresh}/propagate", json={"start_frame": 0}) as response:
            lines = response.iter_lines()
            assert json.loads(next(lines))["frame"] == 0, "first streamed line"
            check(http.delete(f"/api/sessions/{fresh}"), 204)
            rest = [json.loads(line) for line in lines]
        assert rest and rest[-1]["done"] and rest[-1]["cancelled"], f"stream after delete: {rest[-3:]}"
        check(http.get(f"/api/sessions/{fresh}"), 404)
