"""Fixtures of the server tests: apps around the tiny random-weight model, and inputs made in code."""

import contextlib
import io
import threading
import time
import zipfile
from typing import List

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_test_image

pytest.importorskip("fastapi")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def video_frames(num_frames: int = 6, height: int = 64, width: int = 96) -> List[np.ndarray]:
    """Frames of a moving scene: one image shifted a few pixels per frame."""
    base = make_test_image(height, width + 4 * num_frames, seed=3)
    return [np.ascontiguousarray(base[:, 4 * t : 4 * t + width]) for t in range(num_frames)]


def frames_zip(frames: List[np.ndarray], folder: str = "clip/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for t, frame in enumerate(frames):
            archive.writestr(f"{folder}{t:05d}.jpg", jpeg_bytes(frame))
    return buffer.getvalue()


def expect(response, status: int):
    """The response, after checking its status (and, for errors, the one error shape)."""
    body = response.text[:500]
    assert response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {body}"
    if status >= 400:
        data = response.json()
        assert set(data) == {"error"}, f"error body is not {{'error': ...}}: {data}"
        assert data["error"]["status"] == status, f"error.status {data['error']['status']} != HTTP {status}"
        assert isinstance(data["error"]["message"], str) and data["error"]["message"], f"no message: {data}"
        assert "Traceback" not in response.text, f"a traceback reached the client: {body}"
    return response


@pytest.fixture
def make_client(small_model, tmp_path):
    """``make_client(**create_app_options) -> TestClient`` (entered; closed at the end of the test)."""
    from fastapi.testclient import TestClient

    from ssseg.samv2.server import create_app

    clients = []

    def make(raise_server_exceptions: bool = True, **options):
        options.setdefault("workdir", str(tmp_path / f"work{len(clients)}"))
        app = create_app(small_model, model_name="small", **options)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="session")
def small_image() -> np.ndarray:
    return make_test_image(120, 160, seed=1)


def open_image(client, image: np.ndarray, name: str = "image.png") -> dict:
    response = expect(client.post("/api/sessions", files={"file": (name, png_bytes(image), "image/png")}), 201)
    return response.json()


@contextlib.contextmanager
def serve_in_thread(app):
    """Run ``app`` on a real uvicorn server on a free 127.0.0.1 port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
