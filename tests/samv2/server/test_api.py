"""The JSON API against the predictors called directly on the same model: clicks, refinement, multimask,
propagation, "everything" and the exports decode back to exactly what the predictors give."""

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import (
    SAMV2AutomaticMaskGenerator,
    SAMV2ImagePredictor,
    SAMV2VideoPredictor,
)
from ssseg.modules.models.segmentors.samv2.masks import decode_rle
from ssseg.samv2.videocmd import index_map
from tests.samv2.server.conftest import expect, frames_zip, jpeg_bytes, open_image, video_frames


def mask_of(entry) -> np.ndarray:
    return decode_rle(entry["mask"])


def assert_same_mask(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: mask shape {got.shape} != {want.shape}"
    differ = int((got != want).sum())
    assert differ == 0, f"{what}: {differ} of {want.size} pixels differ (areas {int(got.sum())} vs {int(want.sum())})"
    assert want.sum() > 0, f"{what}: the expected mask is empty, so the comparison proves nothing"


def test_health(client):
    data = expect(client.get("/api/health"), 200).json()
    assert data["status"] == "ok" and data["model"] == "small" and data["device"] == "cpu", f"health: {data}"
    assert data["sessions"] == 0 and data["max_sessions"] == 8 and data["auth"] is False, f"health: {data}"


def test_image_session_lifecycle(client, small_image):
    created = open_image(client, small_image, "cat.png")
    assert created["kind"] == "image" and created["num_frames"] == 1, f"created: {created}"
    assert (created["width"], created["height"]) == (160, 120), f"size: {created}"
    sid = created["session_id"]
    listed = expect(client.get("/api/sessions"), 200).json()["sessions"]
    assert [s["session_id"] for s in listed] == [sid], f"listed: {listed}"
    frame = expect(client.get(f"/api/sessions/{sid}/frames/0"), 200)
    assert frame.headers["content-type"] == "image/jpeg", f"frame content type {frame.headers['content-type']}"
    decoded = np.asarray(Image.open(io.BytesIO(frame.content)).convert("RGB")).astype(int)
    assert decoded.shape == small_image.shape, f"frame JPEG shape {decoded.shape} != {small_image.shape}"
    assert np.abs(decoded - small_image).mean() < 6, "frame JPEG does not show the uploaded image"
    expect(client.get(f"/api/sessions/{sid}/frames/1"), 404)
    expect(client.delete(f"/api/sessions/{sid}"), 204)
    expect(client.get(f"/api/sessions/{sid}"), 404)
    expect(client.get(f"/api/sessions/{sid}/frames/0"), 404)
    assert expect(client.get("/api/sessions"), 200).json()["sessions"] == [], "deleted session still listed"


def test_clicks_equal_predict_with_refinement(client, small_model, small_image):
    sid = open_image(client, small_image)["session_id"]
    predictor = SAMV2ImagePredictor(model=small_model)
    predictor.setimage(small_image)
    points, labels = [[60.0, 50.0]], [1]

    # first click, three candidates: the tutorial's multimask call
    body = {"object_id": 3, "points": points, "labels": labels, "multimask": True}
    got = expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()
    masks, scores, logits = predictor.predict(np.array(points), np.array(labels), multimask_output=True)
    (entry,) = got["objects"]
    assert len(entry["candidates"]) == 3, f"multimask gave {len(entry['candidates'])} candidates"
    for i, candidate in enumerate(entry["candidates"]):
        assert_same_mask(mask_of(candidate), masks[i] > 0, f"candidate {i}")
        assert candidate["score"] == pytest.approx(float(scores[i]), abs=1e-6), f"candidate {i} score"
    best = int(np.argmax(scores))
    assert_same_mask(mask_of(entry), masks[best] > 0, "object mask (best candidate)")
    ys, xs = np.nonzero(masks[best] > 0)
    assert entry["area"] == len(ys), f"area {entry['area']} != {len(ys)}"
    assert entry["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()], f"bbox {entry['bbox']}"

    # second click (background), appended: earlier clicks + the previous low-res logits as mask input
    body = {"object_id": 3, "points": [[20.0, 100.0]], "labels": [0], "clear_old": False}
    got = expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()
    masks2, scores2, _ = predictor.predict(
        np.array(points + [[20.0, 100.0]]),
        np.array([1, 0]),
        mask_input=logits[best][None],
        multimask_output=False,
    )
    assert_same_mask(mask_of(got["objects"][0]), masks2[0] > 0, "refined mask")
    assert got["objects"][0]["score"] == pytest.approx(float(scores2[0]), abs=1e-6), "refined score"
    assert "candidates" not in got["objects"][0], "single-mask answer carries candidates"

    # a box for a second object, fresh; both objects are answered
    body = {"object_id": 5, "box": [10, 10, 90, 70]}
    got = expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()
    masks3, _, _ = predictor.predict(box=np.array([10, 10, 90, 70]), multimask_output=False)
    assert [e["object_id"] for e in got["objects"]] == [3, 5], f"objects {got['objects']}"
    assert_same_mask(mask_of(got["objects"][1]), masks3[0] > 0, "box mask")

    details = expect(client.get(f"/api/sessions/{sid}"), 200).json()
    prompts = {o["object_id"]: o["prompts"] for o in details["objects"]}
    assert prompts[3] == [{"frame": 0, "points": points + [[20.0, 100.0]], "labels": [1, 0], "box": None}], prompts
    assert prompts[5][0]["box"] == [10, 10, 90, 70], f"box prompt {prompts[5]}"
    masks_now = expect(client.get(f"/api/sessions/{sid}/frames/0/masks"), 200).json()["objects"]
    assert_same_mask(mask_of(masks_now[0]), masks2[0] > 0, "GET masks of object 3")

    # clearing object 3's prompts removes its mask; deleting object 5 removes it
    cleared = expect(client.delete(f"/api/sessions/{sid}/frames/0/prompts?object_id=3"), 200).json()
    assert [e["object_id"] for e in cleared["objects"]] == [5], f"after clearing 3: {cleared}"
    expect(client.delete(f"/api/sessions/{sid}/objects/5"), 204)
    expect(client.delete(f"/api/sessions/{sid}/objects/5"), 404)
    expect(client.delete(f"/api/sessions/{sid}/frames/0/prompts?object_id=9"), 404)
    assert expect(client.get(f"/api/sessions/{sid}/frames/0/masks"), 200).json()["objects"] == []


def test_image_prompt_errors(client, small_image):
    sid = open_image(client, small_image)["session_id"]
    url = f"/api/sessions/{sid}/prompts"
    message = expect(client.post(url, json={"object_id": 1, "points": [[500, 5]], "labels": [1]}), 400).json()
    assert "outside the 160 x 120" in message["error"]["message"], f"not the predictor's message: {message}"
    message = expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [1, 1]}), 400).json()
    assert "one label per point" in message["error"]["message"], f"not the predictor's message: {message}"
    expect(client.post(url, json={"object_id": 1, "box": [50, 50, 10, 10]}), 400)
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [2]}), 400)
    expect(client.post(url, json={"object_id": 1}), 400)  # nothing to segment from
    expect(client.post(url, json={"object_id": 0, "points": [[5, 5]], "labels": [1]}), 422)
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5, 5]], "labels": [1]}), 422)
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [1], "clear_old_points": 1}), 422)
    expect(client.post(url, json={"frame": 1, "object_id": 1, "points": [[5, 5]], "labels": [1]}), 404)
    expect(client.post("/api/sessions/nope/prompts", json={"object_id": 1, "points": [[5, 5]], "labels": [1]}), 404)
    # the session is still usable after every refusal
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [1]}), 200)
    expect(client.post(f"/api/sessions/{sid}/propagate", json={}), 400)  # videos only


def test_everything_equals_generator(client, small_model, small_image):
    sid = open_image(client, small_image)["session_id"]
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    got = expect(client.post(f"/api/sessions/{sid}/everything", json=options), 200).json()
    records = SAMV2AutomaticMaskGenerator(model=small_model, output_mode="binary_mask", **options).generate(small_image)
    records.sort(key=lambda r: -r["area"])
    assert len(got["annotations"]) == len(records) > 1, f"{len(got['annotations'])} vs {len(records)} masks"
    for i, (annotation, record) in enumerate(zip(got["annotations"], records)):
        assert_same_mask(decode_rle(annotation["segmentation"]), record["segmentation"], f"annotation {i}")
        assert annotation["predicted_iou"] == pytest.approx(record["predicted_iou"], abs=1e-6), f"iou {i}"
    message = expect(client.post(f"/api/sessions/{sid}/everything", json={"points_per_side": 0}), 400).json()
    assert "points_per_side" in message["error"]["message"], f"not the generator's message: {message}"
    expect(client.post(f"/api/sessions/{sid}/everything", json={"points_per_sid": 4}), 422)


def test_image_exports_decode_to_the_masks(client, small_image):
    sid = open_image(client, small_image, "shapes.png")["session_id"]
    url = f"/api/sessions/{sid}/prompts"
    a = expect(client.post(url, json={"object_id": 1, "points": [[60, 50]], "labels": [1]}), 200).json()
    b = expect(client.post(url, json={"object_id": 7, "box": [100, 60, 150, 110]}), 200).json()
    expect(client.patch(f"/api/sessions/{sid}/objects/7", json={"name": "box thing"}), 200)
    mask1, mask7 = mask_of(a["objects"][0]), mask_of(b["objects"][1])
    coco = expect(client.get(f"/api/sessions/{sid}/export?format=coco"), 200)
    assert "shapes_coco.json" in coco.headers["content-disposition"], coco.headers
    data = coco.json()
    assert data["images"] == [{"id": 1, "file_name": "shapes.png", "width": 160, "height": 120, "frame_index": 0}]
    assert {c["id"]: c["name"] for c in data["categories"]} == {1: "object 1", 7: "box thing"}, data["categories"]
    by_category = {a["category_id"]: a for a in data["annotations"]}
    assert_same_mask(decode_rle(by_category[1]["segmentation"]), mask1, "COCO object 1")
    assert_same_mask(decode_rle(by_category[7]["segmentation"]), mask7, "COCO object 7")
    davis = expect(client.get(f"/api/sessions/{sid}/export?format=davis"), 200)
    assert davis.headers["content-type"] == "application/zip", davis.headers
    with zipfile.ZipFile(io.BytesIO(davis.content)) as archive:
        assert archive.namelist() == ["00000.png"], archive.namelist()
        png = Image.open(io.BytesIO(archive.read("00000.png")))
    assert png.mode == "P", f"DAVIS PNG mode {png.mode}"
    ids = np.asarray(png)
    assert_same_mask(ids == 7, mask7, "DAVIS object 7 (higher id wins)")
    assert_same_mask(ids == 1, mask1 & ~mask7, "DAVIS object 1")
    expect(client.get(f"/api/sessions/{sid}/export?format=voc"), 400)


# ---------------------------------------------------------------------------------------------------- videos
@pytest.fixture(scope="module")
def clip():
    return video_frames(6)


def direct_video(small_model, clip, tmp_path, prompts):
    """Masks per frame from SAMV2VideoPredictor on the same JPEG bytes: the click's, then tracked both ways."""
    folder = tmp_path / "direct"
    folder.mkdir()
    for t, frame in enumerate(clip):
        (folder / f"{t:05d}.jpg").write_bytes(jpeg_bytes(frame))
    predictor = SAMV2VideoPredictor(model=small_model, device=None)
    state = predictor.initstate(str(folder))
    clicks = []
    for frame, obj, points, labels in prompts:
        points, labels = np.array(points), np.array(labels)
        _, ids, logits = predictor.addnewpointsorbox(state, frame, obj, points=points, labels=labels)
        clicks.append({int(k): (logits[i, 0] > 0).numpy() for i, k in enumerate(ids)})
    tracked = {}
    start = min(p[0] for p in prompts)
    for reverse in (False, True):
        for t, ids, logits in predictor.propagateinvideo(state, start_frame_idx=start, reverse=reverse):
            tracked[t] = ({int(k): (logits[i, 0] > 0).numpy() for i, k in enumerate(ids)}, index_map(ids, logits))
    state.close()
    return clicks, tracked


def open_clip(client, clip):
    response = client.post("/api/sessions", files={"file": ("clip.zip", frames_zip(clip), "application/zip")})
    return expect(response, 201).json()


def test_video_click_and_propagation_equal_the_predictor(client, small_model, clip, tmp_path):
    created = open_clip(client, clip)
    assert (created["kind"], created["num_frames"], created["width"], created["height"]) == ("video", 6, 96, 64)
    sid = created["session_id"]
    prompts = [(2, 1, [[30.0, 30.0]], [1]), (2, 4, [[70.0, 20.0], [60.0, 50.0]], [1, 0])]
    clicks, tracked = direct_video(small_model, clip, tmp_path, prompts)
    for i, (frame, obj, points, labels) in enumerate(prompts):
        body = {"frame": frame, "object_id": obj, "points": points, "labels": labels}
        got = expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()
        assert got["frame"] == frame and [e["object_id"] for e in got["objects"]] == sorted(clicks[i]), got["frame"]
        for entry in got["objects"]:
            assert_same_mask(mask_of(entry), clicks[i][entry["object_id"]], f"click {i} object {entry['object_id']}")
            assert entry["score"] is None, "video entries have no score"

    response = expect(client.post(f"/api/sessions/{sid}/propagate", json={"direction": "both"}), 200)
    assert response.headers["content-type"].startswith("application/x-ndjson"), response.headers
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line.get("frame") for line in lines[:-1]] == [2, 3, 4, 5, 1, 0], f"frame order {lines}"
    assert lines[-1] == {"done": True, "frames": 6, "cancelled": False}, f"last line {lines[-1]}"
    for line in lines[:-1]:
        want, _ = tracked[line["frame"]]
        for entry in line["objects"]:
            what = f"frame {line['frame']} object {entry['object_id']}"
            assert_same_mask(mask_of(entry), want[entry["object_id"]], what)

    # exports: COCO decodes to the tracked masks, DAVIS to the index maps (highest logit wins)
    data = expect(client.get(f"/api/sessions/{sid}/export?format=coco"), 200).json()
    assert [im["file_name"] for im in data["images"]] == [f"{t:05d}.jpg" for t in range(6)], data["images"]
    assert sorted(c["id"] for c in data["categories"]) == [1, 4], data["categories"]
    for annotation in data["annotations"]:
        want, _ = tracked[annotation["image_id"] - 1]
        got_mask = decode_rle(annotation["segmentation"])
        assert_same_mask(got_mask, want[annotation["category_id"]], f"COCO annotation {annotation['id']}")
    assert len(data["annotations"]) == sum(int(m.any()) for w, _ in tracked.values() for m in w.values())
    davis = expect(client.get(f"/api/sessions/{sid}/export?format=davis"), 200)
    with zipfile.ZipFile(io.BytesIO(davis.content)) as archive:
        assert archive.namelist() == [f"{t:05d}.png" for t in range(6)], archive.namelist()
        for t in range(6):
            ids = np.asarray(Image.open(io.BytesIO(archive.read(f"{t:05d}.png"))))
            assert np.array_equal(ids, tracked[t][1]), f"DAVIS frame {t}: {(ids != tracked[t][1]).sum()} pixels differ"

    # a later frame's masks, the session's prompts, then an object removed everywhere
    later = expect(client.get(f"/api/sessions/{sid}/frames/5/masks"), 200).json()
    assert_same_mask(mask_of(later["objects"][0]), tracked[5][0][1], "GET masks frame 5")
    details = expect(client.get(f"/api/sessions/{sid}"), 200).json()
    assert [o["object_id"] for o in details["objects"]] == [1, 4], details
    assert details["objects"][1]["prompts"] == [{"frame": 2, "points": prompts[1][2], "labels": [1, 0], "box": None}]
    expect(client.delete(f"/api/sessions/{sid}/objects/4"), 204)
    later = expect(client.get(f"/api/sessions/{sid}/frames/5/masks"), 200).json()
    assert [e["object_id"] for e in later["objects"]] == [1], f"object 4 still on frame 5: {later}"
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/sessions/{sid}/export?format=davis").content)) as archive:
        ids = np.asarray(Image.open(io.BytesIO(archive.read("00005.png"))))
    assert 4 not in np.unique(ids), "removed object 4 still in the DAVIS map"
    assert_same_mask(ids == 1, tracked[5][0][1], "DAVIS frame 5 after removing object 4")


def test_video_errors_and_clearing(client, clip):
    sid = open_clip(client, clip)["session_id"]
    url = f"/api/sessions/{sid}/prompts"
    expect(client.post(f"/api/sessions/{sid}/propagate", json={}), 400)  # nothing to track yet
    message = expect(client.post(url, json={"frame": 0, "object_id": 1, "points": [[200, 5]], "labels": [1]}), 400)
    assert "outside" in message.json()["error"]["message"], message.json()
    expect(client.post(url, json={"frame": 6, "object_id": 1, "points": [[5, 5]], "labels": [1]}), 404)
    expect(client.post(url, json={"object_id": 1, "points": [[5, 5]], "labels": [1], "multimask": True}), 400)
    expect(client.post(f"/api/sessions/{sid}/everything", json={}), 400)
    got = expect(client.post(url, json={"frame": 1, "object_id": 2, "points": [[40, 30]], "labels": [1]}), 200).json()
    assert got["objects"][0]["area"] > 0, "the click gave an empty mask"
    expect(client.post(f"/api/sessions/{sid}/propagate", json={"start_frame": 9}), 404)
    expect(client.post(f"/api/sessions/{sid}/propagate", json={"direction": "sideways"}), 422)
    expect(client.delete(f"/api/sessions/{sid}/frames/1/prompts?object_id=3"), 404)
    expect(client.delete(f"/api/sessions/{sid}/objects/3"), 404)
    expect(client.get(f"/api/sessions/{sid}/frames/6"), 404)
    frame = expect(client.get(f"/api/sessions/{sid}/frames/3"), 200)
    assert Image.open(io.BytesIO(frame.content)).size == (96, 64), "frame 3 JPEG size"
    cleared = expect(client.delete(f"/api/sessions/{sid}/frames/1/prompts"), 200).json()
    assert cleared["frame"] == 1 and all(e["area"] == 0 for e in cleared["objects"]), f"after clearing: {cleared}"
    details = expect(client.get(f"/api/sessions/{sid}"), 200).json()
    assert details["objects"] == [{"object_id": 2, "name": None, "prompts": []}], details["objects"]
    forward = expect(client.post(url, json={"frame": 1, "object_id": 2, "points": [[40, 30]], "labels": [1]}), 200)
    assert forward.json()["objects"][0]["area"] > 0, "the session is not usable after clearing"
    lines = client.post(f"/api/sessions/{sid}/propagate", json={"direction": "forward", "max_frames": 2}).text
    frames = [json.loads(line).get("frame") for line in lines.splitlines()]
    assert frames == [1, 2, 3, None], f"forward max_frames=2 tracked {frames}"


def write_mp4(path, frames) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_file_upload_and_data_root(make_client, clip, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    write_mp4(root / "clip.mp4", clip[:4])
    client = make_client(data_root=str(root))
    with open(root / "clip.mp4", "rb") as handle:
        uploaded = expect(client.post("/api/sessions", files={"file": ("movie.bin", handle.read())}), 201).json()
    by_path = expect(client.post("/api/sessions", json={"path": "clip.mp4"}), 201).json()
    for created in (uploaded, by_path):
        assert (created["kind"], created["num_frames"], created["width"], created["height"]) == ("video", 4, 96, 64)
        sid = created["session_id"]
        frame = expect(client.get(f"/api/sessions/{sid}/frames/3"), 200)
        assert Image.open(io.BytesIO(frame.content)).size == (96, 64), "frame 3 of the mp4"
        body = {"frame": 3, "object_id": 1, "points": [[40, 30]], "labels": [1]}
        assert expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()["objects"][0]["area"] > 0
    listing = expect(client.get("/api/files"), 200).json()["entries"]
    assert listing == [{"name": "clip.mp4", "path": "clip.mp4", "type": "video", "size": listing[0]["size"]}], listing


def test_app_starts_again_after_shutdown(small_model, small_image):
    from fastapi.testclient import TestClient

    from ssseg.samv2.server import create_app

    app = create_app(small_model, model_name="small")
    for round_ in range(2):
        with TestClient(app) as client:
            sid = open_image(client, small_image)["session_id"]
            body = {"object_id": 1, "points": [[60, 50]], "labels": [1]}
            assert expect(client.post(f"/api/sessions/{sid}/prompts", json=body), 200).json()["objects"], round_
        assert app.state.store.sessions == {}, f"round {round_}: sessions left open after shutdown"
