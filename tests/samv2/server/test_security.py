"""Bad and hostile input: paths out of --data-root, zip slip and zip bombs, oversize uploads, files that are not what
their name says, huge images, malformed JSON, tokens, the session cap and expiry, unexpected errors. Every refusal
is the one JSON error shape, never a 500 or a traceback, and nothing is written outside the server's folders."""

import io
import os
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.samv2.server.conftest import expect, frames_zip, jpeg_bytes, open_image, png_bytes, video_frames


@pytest.fixture
def data_root(tmp_path, small_image):
    """``root/`` with an image, a frame folder and a symlink out; ``secret.png`` beside it, outside."""
    root = tmp_path / "root"
    (root / "sub" / "frames").mkdir(parents=True)
    Image.fromarray(small_image).save(root / "sub" / "cat.png")
    for t, frame in enumerate(video_frames(3)):
        (root / "sub" / "frames" / f"{t:05d}.jpg").write_bytes(jpeg_bytes(frame))
    Image.fromarray(small_image).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    os.symlink(tmp_path, root / "outdir")
    return root


def open_path(client, path):
    return client.post("/api/sessions", json={"path": path})


def test_data_root_paths(make_client, data_root):
    client = make_client(data_root=str(data_root))
    image = expect(open_path(client, "sub/cat.png"), 201).json()
    assert (image["kind"], image["width"], image["height"]) == ("image", 160, 120), image
    video = expect(open_path(client, "sub/frames"), 201).json()
    assert (video["kind"], video["num_frames"]) == ("video", 3), video
    for bad in [
        "../secret.png",
        "sub/../../secret.png",
        "sub/../..",
        str(data_root.parent / "secret.png"),
        "/etc/passwd",
    ]:
        message = expect(open_path(client, bad), 403).json()["error"]["message"]
        assert "--data-root" in message, f"{bad}: message does not say why: {message}"
    assert "symbolic link" in expect(open_path(client, "link.png"), 403).json()["error"]["message"]
    expect(open_path(client, "outdir/secret.png"), 403)
    expect(open_path(client, "sub/missing.png"), 404)
    expect(open_path(client, ""), 422)
    expect(client.post("/api/sessions", json={"file": "sub/cat.png"}), 422)

    listing = expect(client.get("/api/files"), 200).json()
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("sub", "dir")], f"root listing {listing}"
    listing = expect(client.get("/api/files?dir=sub"), 200).json()
    assert [(e["path"], e["type"]) for e in listing["entries"]] == [("sub/frames", "frames"), ("sub/cat.png", "image")]
    expect(client.get("/api/files?dir=../"), 403)
    expect(client.get("/api/files?dir=outdir"), 403)
    expect(client.get("/api/files?dir=nothere"), 404)


def test_no_data_root(client):
    assert "--data-root" in expect(open_path(client, "cat.png"), 403).json()["error"]["message"]
    expect(client.get("/api/files"), 404)


def zip_with(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(client, name, data, content_type="application/octet-stream"):
    return client.post("/api/sessions", files={"file": (name, data, content_type)})


def test_zip_slip_and_links(client, tmp_path):
    frame = jpeg_bytes(video_frames(1)[0])
    for evil in ["../escaped.jpg", "clip/../../escaped.jpg", "/tmp/ssseg_escaped.jpg"]:
        message = expect(upload(client, "clip.zip", zip_with([("00000.jpg", frame), (evil, frame)])), 400).json()
        assert "outside its folder" in message["error"]["message"], f"{evil}: {message}"
    link = zipfile.ZipInfo("00001.jpg")
    link.external_attr = (0o120777 << 16) | 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("00000.jpg", frame)
        archive.writestr(link, "/etc/passwd")
    assert "symbolic link" in expect(upload(client, "clip.zip", buffer.getvalue()), 400).json()["error"]["message"]
    escaped = [p for p in (tmp_path / "escaped.jpg", tmp_path / "work0" / "escaped.jpg") if p.exists()]
    assert not escaped and not os.path.exists("/tmp/ssseg_escaped.jpg"), f"zip entries escaped: {escaped}"
    assert os.listdir(tmp_path / "work0") == [], "refused uploads left files behind"
    expect(upload(client, "clip.zip", zip_with([("notes.txt", b"hello")])), 415)
    expect(upload(client, "clip.zip", zip_with([("00000.jpg", b"not a jpeg")])), 415)
    expect(upload(client, "clip.zip", zip_with([("first.jpg", frame)])), 415)  # not named by an index


def test_size_limits(make_client):
    client = make_client(max_upload_mb=0.25)
    big = os.urandom(400 * 1024)
    message = expect(upload(client, "big.png", big), 413).json()["error"]["message"]
    assert "0.25 MB" in message, f"413 does not name the limit: {message}"

    # without a Content-Length (chunked), the cap is enforced while the body streams
    boundary = "x1x2x3"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'.encode()

    def chunks():
        yield head
        for _ in range(40):
            yield b"\0" * 16384
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/sessions", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    expect(response, 413)

    # a zip bomb: tiny compressed, larger than the cap when extracted
    bomb = zip_with([("00000.jpg", b"\0" * (1 << 20))])
    assert len(bomb) < 20_000, "the test bomb is not small"
    assert "zip bomb" in expect(upload(client, "bomb.zip", bomb), 413).json()["error"]["message"]

    # an image over 100 megapixels (a small PNG: a decompression bomb) is refused from its header
    buffer = io.BytesIO()
    Image.new("1", (12_000, 9_000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 250 * 1024, "the test PNG is not small"
    message = expect(upload(client, "huge.png", buffer.getvalue()), 413).json()["error"]["message"]
    assert "megapixels" in message, f"413 does not say why: {message}"


def test_not_what_the_name_says(client, small_image):
    message = expect(upload(client, "cat.jpg", b"GIF89a? no, just text pretending to be an image"), 415).json()
    assert "cat.jpg" in message["error"]["message"], message
    expect(upload(client, "clip.mp4", os.urandom(4096)), 415)
    expect(upload(client, "empty.png", b""), 415)
    response = client.post("/api/sessions", content=png_bytes(small_image), headers={"content-type": "image/png"})
    expect(response, 415)
    # the content decides, not the name: a PNG named .zip is an image
    assert expect(upload(client, "odd.zip", png_bytes(small_image)), 201).json()["kind"] == "image"


def test_malformed_requests(client, small_image):
    expect(client.post("/api/sessions", content=b'{"path": ', headers={"content-type": "application/json"}), 400)
    expect(client.post("/api/sessions", files={"other": ("a.png", png_bytes(small_image))}), 400)
    sid = open_image(client, small_image)["session_id"]
    url = f"/api/sessions/{sid}/prompts"
    assert (
        "malformed JSON"
        in expect(
            client.post(url, content=b"{'object_id': 1}", headers={"content-type": "application/json"}), 400
        ).json()["error"]["message"]
    )
    expect(client.post(url, content=b"[1, 2]", headers={"content-type": "application/json"}), 422)
    nan = b'{"object_id": 1, "points": [[NaN, 3]], "labels": [1]}'
    expect(client.post(url, content=nan, headers={"content-type": "application/json"}), 422)
    expect(client.get(f"/api/sessions/{sid}/frames/abc"), 422)
    expect(client.get("/api/nothing"), 404)
    expect(client.put(f"/api/sessions/{sid}"), 405)
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [1]}), 200)  # still usable


def test_token(make_client):
    client = make_client(token="s3cret")
    assert "missing token" in expect(client.get("/api/health"), 401).json()["error"]["message"]
    expect(client.get("/api/health", headers={"Authorization": "Bearer wrong"}), 401)
    expect(client.get("/api/health", headers={"Authorization": "s3cret"}), 401)
    expect(client.post("/api/sessions", json={"path": "x"}), 401)
    expect(client.get("/api/sessions/abc/frames/0"), 401)
    good = expect(client.get("/api/health", headers={"Authorization": "Bearer s3cret"}), 200).json()
    assert good["auth"] is True, good
    page = client.get("/")  # the page itself needs no token (it asks for it)
    assert page.status_code != 401, f"GET / needs the token: {page.status_code}"


def test_session_cap_and_expiry(make_client, small_image):
    client = make_client(max_sessions=2)
    first = open_image(client, small_image)["session_id"]
    open_image(client, small_image)
    message = expect(upload(client, "a.png", png_bytes(small_image)), 503).json()["error"]["message"]
    assert "--max-sessions" in message, message
    expect(client.delete(f"/api/sessions/{first}"), 204)
    open_image(client, small_image)  # room again

    client = make_client(max_sessions=1, session_ttl=0.3)
    sid = open_image(client, small_image)["session_id"]
    time.sleep(0.6)
    expect(client.get(f"/api/sessions/{sid}"), 404)  # idle longer than the TTL: expired
    assert expect(client.get("/api/sessions"), 200).json()["sessions"] == [], "expired sessions still listed"
    open_image(client, small_image)  # its place is free again


def test_unexpected_errors_are_one_line(make_client, small_image, monkeypatch):
    from ssseg.samv2.server import engine

    client = make_client(raise_server_exceptions=False)
    sid = open_image(client, small_image)["session_id"]

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail\nTraceback (most recent call last): ...")

    monkeypatch.setattr(engine, "image_prompt", broken)
    response = expect(client.post(f"/api/sessions/{sid}/prompts", json={"object_id": 1, "box": [1, 1, 9, 9]}), 500)
    assert "secret internal detail" not in response.text, f"internal detail reached the client: {response.text}"
    monkeypatch.undo()
    expect(client.post(f"/api/sessions/{sid}/prompts", json={"object_id": 1, "box": [1, 1, 9, 9]}), 200)


def test_frames_zip_upload_flattens(client):
    clip = video_frames(3)
    created = expect(upload(client, "clip.zip", frames_zip(clip, folder="deep/er/")), 201).json()
    frame = client.get(f"/api/sessions/{created['session_id']}/frames/2")
    decoded = np.asarray(Image.open(io.BytesIO(expect(frame, 200).content)).convert("RGB")).astype(int)
    errors = [float(np.abs(decoded - c).mean()) for c in clip]
    assert int(np.argmin(errors)) == 2, f"frame 2 of the zip looks like frame {int(np.argmin(errors))}: {errors}"
