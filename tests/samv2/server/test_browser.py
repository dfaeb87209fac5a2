"""The web page of ``ssseg-samv2 serve`` in a real browser: Debian's Chromium driven by Playwright, against the real
server (FastAPI on uvicorn, in a thread, around the tiny random-weight model).

What is checked is what a person sees: the canvas is read back and every pixel of the image area is compared with
the mask the API answered (a mask is drawn where, and only where, the server says the object is), downloads are
opened and decoded, errors appear as messages on the page.
"""

import base64
import contextlib
import io
import json
import os
import zipfile

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ssseg.modules.models.segmentors.samv2.masks import coco_encode_rle, decode_rle, mask_to_rle
from tests.conftest import make_test_image
from tests.samv2.server.conftest import png_bytes, serve_in_thread

pytest.importorskip("fastapi")

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30000
MARKER_PX = 14  # canvas pixels around a clicked point covered by its marker


# ---------------------------------------------------------------------------------------------- server and browser


@pytest.fixture(scope="module")
def serve(small_model, tmp_path_factory):
    """``serve(**create_app_options) -> base URL`` of a real uvicorn server on a free 127.0.0.1 port (module-wide)."""
    from ssseg.samv2.server import create_app

    with contextlib.ExitStack() as stack:

        def start(**options):
            workdir = tmp_path_factory.mktemp("browser_server")
            app = create_app(small_model, model_name="small", workdir=str(workdir), **options)
            return stack.enter_context(serve_in_thread(app)) + "/"

        yield start


@pytest.fixture(scope="module")
def base_url(serve):
    return serve()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page (1280 x 800, no HiDPI); fails the test if the page throws an uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


def open_page(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


# ---------------------------------------------------------------------------------------------- inputs and helpers


def mp4_bytes(frames, path) -> bytes:
    """An mp4 (MPEG-4 part 2, what OpenCV writes everywhere) of RGB frames."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path.read_bytes()


def upload(page, name, mime, data, kind):
    page.set_input_files("#file-input", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.wait_for_function(f"document.body.dataset.kind === '{kind}'")
    settle(page)


def settle(page):
    """Wait until no request is in flight and the canvas has painted the latest state."""
    page.wait_for_function("document.body.dataset.pending === '0'")
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def canvas(page):
    """``(RGB pixels of the view canvas, (scale, left, top))``: the image is drawn at canvas = image * scale + left."""
    data_url, view = page.evaluate(
        "(() => { const c = document.getElementById('view'); return [c.toDataURL('image/png'), c.dataset.view]; })()"
    )
    png = base64.b64decode(data_url.split(",", 1)[1])
    rgb = np.array(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return rgb, tuple(float(v) for v in view.split(","))


def click_image(page, view, x, y, button="left", modifiers=None):
    """Click image pixel (x, y) (its centre) through the canvas."""
    scale, left, top = view
    box = page.locator("#view").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) * scale + left, box["y"] + (y + 0.5) * scale + top, button=button)


def shift_click_image(page, view, x, y):
    page.keyboard.down("Shift")
    click_image(page, view, x, y)
    page.keyboard.up("Shift")


def api_mask(objects, object_id=1):
    """The decoded mask of ``object_id`` in an API answer's ``objects``."""
    found = [o for o in objects if o["object_id"] == object_id]
    assert len(found) == 1, f"object {object_id} is not once in the answer: {[o['object_id'] for o in objects]}"
    return decode_rle(found[0]["mask"])


def drawn_agreement(before, after, view, mask, points=()):
    """Fraction of the image's canvas pixels where 'the overlay changed this pixel' equals 'the mask covers it'.

    Pixels whose image pixel touches the mask's boundary (resampling) and pixels under point markers are left out.
    Also returns how many canvas pixels changed.
    """
    scale, left, top = view
    height, width = mask.shape
    cy, cx = np.mgrid[0 : before.shape[0], 0 : before.shape[1]]
    ix = np.floor((cx + 0.5 - left) / scale).astype(int)
    iy = np.floor((cy + 0.5 - top) / scale).astype(int)
    inside = (ix >= 0) & (iy >= 0) & (ix < width) & (iy < height)
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(m, kernel) != cv2.erode(m, kernel)
    ix, iy = np.clip(ix, 0, width - 1), np.clip(iy, 0, height - 1)
    valid = inside & ~edge[iy, ix]
    for px, py in points:
        sx, sy = (px + 0.5) * scale + left, (py + 0.5) * scale + top
        valid &= (cx - sx) ** 2 + (cy - sy) ** 2 > MARKER_PX**2
    changed = np.abs(after - before).sum(axis=2) > 12
    expected = mask[iy, ix]
    assert valid.sum() > 1000, f"only {valid.sum()} canvas pixels to compare: the image is not on the canvas"
    return float((changed == expected)[valid].mean()), int(changed[inside].sum())


def assert_drawn(before, after, view, mask, points=(), what="mask"):
    agreement, changed = drawn_agreement(before, after, view, mask, points)
    assert changed > 0, f"{what}: nothing was drawn on the canvas"
    assert agreement >= 0.97, f"{what}: the overlay matches the API's mask on only {100 * agreement:.1f}% of pixels"


def nontrivial(mask, what):
    fraction = float(mask.mean())
    assert 0.005 < fraction < 0.95, f"{what} covers {100 * fraction:.1f}% of the image: too degenerate to test with"


def frames_of_stream(text):
    """``({frame: objects}, done line)`` of a propagation's NDJSON body."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and lines[-1].get("done") is True, f"the stream does not end with a done line: {lines[-1:]}"
    return {line["frame"]: line["objects"] for line in lines[:-1]}, lines[-1]


def is_prompt_post(response):
    return response.url.endswith("/prompts") and response.request.method == "POST"


def is_propagation(response):
    return response.url.endswith("/propagate")


# ---------------------------------------------------------------------------------------------- tests


def test_rle_decoder_matches_python(page, base_url):
    """rle.js decodes COCO RLE strings exactly like the Python side (runs over 32 need multi-char counts)."""
    open_page(page, base_url)
    rng = np.random.default_rng(0)
    blob = np.zeros((300, 400), bool)
    blob[40:260, 30:380] = True
    blob[100:120, :] = False
    masks = [
        np.zeros((5, 7), bool),
        np.ones((4, 3), bool),
        np.eye(1, dtype=bool),
        rng.random((37, 53)) > 0.5,
        blob,
    ]
    rles = [coco_encode_rle(mask_to_rle(torch.from_numpy(m[None]))[0]) for m in masks]
    decoded = page.evaluate(
        """async (rles) => {
            const { decodeRle } = await import('/static/rle.js');
            return rles.map((rle) => Array.from(decodeRle(rle)).join(''));
        }""",
        rles,
    )
    for m, rle, text in zip(masks, rles, decoded):
        got = np.frombuffer(text.encode(), np.uint8).reshape(m.shape) == ord("1")
        assert np.array_equal(got, m), f"rle.js decoded {rle['counts'][:40]!r} ({m.shape}) to a different mask"


def test_image_click_shift_click_undo_export(page, base_url):
    """Click draws the API's mask; a shift-click changes it; undo returns to the first mask; zoom keeps it in place;
    COCO export decodes; a reload resumes the session."""
    open_page(page, base_url)
    image = make_test_image(180, 240, seed=5)
    upload(page, "resume-me.png", "image/png", png_bytes(image), "image")
    assert "240×180" in page.inner_text("#session-name"), "the session's size is not shown"
    empty, view = canvas(page)

    with page.expect_response(is_prompt_post) as answer:
        click_image(page, view, 120, 90)
    first = answer.value.json()
    assert answer.value.request.post_data_json["labels"] == [1], "a click is not a positive point"
    mask1 = api_mask(first["objects"])
    nontrivial(mask1, "the first click's mask")
    settle(page)
    drawn1, view1 = canvas(page)
    assert view1 == view, "the view moved on its own"
    assert_drawn(empty, drawn1, view, mask1, [(120, 90)], "after the click")

    # A negative point inside the mask, where possible far from the first click.
    ys, xs = np.nonzero(mask1)
    far = np.argmax((xs - 120) ** 2 + (ys - 90) ** 2)
    nx, ny = int(xs[far]), int(ys[far])
    with page.expect_response(is_prompt_post) as answer:
        shift_click_image(page, view, nx, ny)
    sent = answer.value.request.post_data_json
    assert sent["labels"] == [0] and sent["clear_old"] is False, f"shift-click sent {sent}, not one negative point"
    mask2 = api_mask(answer.value.json()["objects"])
    assert not np.array_equal(mask1, mask2), "the negative point did not change the mask"
    settle(page)
    drawn2, _ = canvas(page)
    assert_drawn(empty, drawn2, view, mask2, [(120, 90), (nx, ny)], "after the shift-click")
    changed = np.abs(drawn2 - drawn1).sum(axis=2) > 12
    assert changed.sum() > 0, "the canvas did not change after the shift-click"

    with page.expect_response(is_prompt_post) as answer:
        page.keyboard.press("Control+z")
    sent = answer.value.request.post_data_json
    assert sent["clear_old"] is True and sent["labels"] == [1], f"undo sent {sent}, not the first click alone"
    mask3 = api_mask(answer.value.json()["objects"])
    assert np.array_equal(mask3, mask1), "after undo the mask differs from the first click's"
    settle(page)
    drawn3, _ = canvas(page)
    assert_drawn(empty, drawn3, view, mask1, [(120, 90)], "after undo")

    # Zoomed in at the cursor, the mask stays on its pixels; F fits the image again.
    corner = page.locator("#view").bounding_box()
    page.mouse.move(corner["x"] + 100 * view[0] + view[1], corner["y"] + 80 * view[0] + view[2])
    page.mouse.wheel(0, -400)
    settle(page)
    page.keyboard.press("m")  # masks off: the bare zoomed image
    settle(page)
    bare, zoomed = canvas(page)
    page.keyboard.press("m")
    settle(page)
    assert zoomed[0] > 1.3 * view[0], f"the wheel did not zoom in: scale {view[0]:.2f} -> {zoomed[0]:.2f}"
    assert_drawn(bare, canvas(page)[0], zoomed, mask1, [(120, 90)], "zoomed in")
    page.keyboard.press("f")
    settle(page)
    assert canvas(page)[1] == view, "F did not fit the image as at first"

    with page.expect_download() as download:
        page.click("#export-coco")
    coco = json.loads(open(download.value.path(), "rb").read())
    assert download.value.suggested_filename.endswith(".json"), f"COCO file named {download.value.suggested_filename}"
    anns = coco["annotations"]
    assert len(anns) == 1, f"COCO export has {len(anns)} annotations, expected the one object"
    exported = decode_rle(anns[0]["segmentation"])
    assert np.array_equal(exported, mask1), "the COCO export's mask differs from the mask on the page"

    # After a reload, "Sessions…" resumes the session: its object comes back and its mask is fetched and drawn.
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    page.click("#resume")
    with page.expect_response(lambda r: r.url.endswith("/frames/0/masks")) as answer:
        page.click(".browse-list button >> text=resume-me.png")
    assert np.array_equal(api_mask(answer.value.json()["objects"]), mask1), "the server's mask is not the last one"
    settle(page)
    resumed, view2 = canvas(page)
    assert view2 == view, "the resumed image is placed differently"
    assert_drawn(empty, resumed, view, mask1, [(120, 90)], "after resuming")
    assert page.locator("#object-list .object").count() == 1, "the resumed session does not list its one object"


def test_video_click_track_later_frame_correct_export(page, base_url, tmp_path):
    """Play; click on frame 0, track, see the tracked mask on the last frame, correct it there, track again, export
    DAVIS, cancel a third tracking."""
    open_page(page, base_url)
    base = make_test_image(120, 184, seed=7)
    frames = [np.ascontiguousarray(base[:, 4 * t : 4 * t + 160]) for t in range(6)]
    upload(page, "clip.mp4", "video/mp4", mp4_bytes(frames, tmp_path / "clip.mp4"), "video")
    assert page.inner_text("#frame-label") == "1 / 6", f"frame label {page.inner_text('#frame-label')!r}"
    page.keyboard.press("Space")  # play to the end, then back to the first frame
    page.wait_for_function("document.getElementById('frame-label').textContent === '6 / 6'")
    page.wait_for_selector("#play[title='Play (Space)']")  # stopped at the end
    page.keyboard.press("Home")
    page.wait_for_function("document.getElementById('frame-label').textContent === '1 / 6'")
    settle(page)
    empty0, view = canvas(page)

    with page.expect_response(is_prompt_post) as answer:
        click_image(page, view, 80, 60)
    assert answer.value.request.post_data_json["frame"] == 0, "the click was not sent for frame 0"
    mask0 = api_mask(answer.value.json()["objects"])
    nontrivial(mask0, "the click's mask on frame 0")
    settle(page)

    with page.expect_response(is_propagation) as answer:
        page.click("#track")
    tracked, done = frames_of_stream(answer.value.text())
    assert sorted(tracked) == list(range(6)) and done["cancelled"] is False, f"tracked {sorted(tracked)}, {done}"
    page.wait_for_function("!document.body.classList.contains('tracking')")
    assert page.is_hidden("#cancel"), "the cancel button stays after tracking"

    page.keyboard.press("End")
    page.wait_for_function("document.getElementById('frame-label').textContent === '6 / 6'")
    settle(page)
    mask5 = api_mask(tracked[5])
    assert mask5.any(), "tracking left the last frame empty"
    page.keyboard.press("m")  # masks off: the bare frame
    settle(page)
    empty5, view5 = canvas(page)
    page.keyboard.press("m")
    settle(page)
    drawn5, _ = canvas(page)
    assert view5 == view, "the view moved between frames"
    assert_drawn(empty5, drawn5, view, mask5, (), "tracked mask on frame 5")

    # Correct frame 5 with a negative point inside its mask, then track again.
    ys, xs = np.nonzero(mask5)
    nx, ny = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    with page.expect_response(is_prompt_post) as answer:
        click_image(page, view, nx, ny, button="right")
    sent = answer.value.request.post_data_json
    assert sent["frame"] == 5 and sent["labels"] == [0], f"right click on frame 5 sent {sent}"
    corrected5 = api_mask(answer.value.json()["objects"])
    settle(page)
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.getElementById('frame-label').textContent === '5 / 6'")
    settle(page)
    assert page.is_visible("#stale"), "frame 4, tracked before the correction, is not marked stale"

    page.keyboard.press("End")
    settle(page)
    with page.expect_response(is_propagation) as answer:
        page.keyboard.press("t")
    retracked, done = frames_of_stream(answer.value.text())
    assert sorted(retracked) == list(range(6)), f"second tracking gave frames {sorted(retracked)}"
    assert np.array_equal(api_mask(retracked[5]), corrected5), "tracking changed the corrected frame's mask"
    page.wait_for_function("!document.body.classList.contains('tracking')")
    page.keyboard.press("ArrowLeft")
    settle(page)
    assert page.is_hidden("#stale"), "frame 4 is still marked stale after tracking again"

    with page.expect_download() as download:
        page.click("#export-davis")
    archive = zipfile.ZipFile(download.value.path())
    names = sorted(n for n in archive.namelist() if n.endswith(".png"))
    assert len(names) == 6, f"DAVIS zip holds {names}, expected 6 PNGs"
    for t, name in enumerate(names):
        indices = np.array(Image.open(io.BytesIO(archive.read(name))))
        expected = api_mask(retracked[t]).astype(np.uint8)  # object 1 = palette index 1
        assert np.array_equal(indices, expected), f"DAVIS {name} differs from the tracked mask of frame {t}"

    # Esc while tracking sends a cancel; the page then says what the stream's end line says.
    page.keyboard.press("Home")
    with page.expect_response(is_propagation) as answer:
        page.keyboard.press("t")
        page.wait_for_selector("#cancel", state="visible")
        with page.expect_request(lambda r: r.url.endswith("/cancel") and r.method == "POST"):
            page.keyboard.press("Escape")
    _, done = frames_of_stream(answer.value.text())
    page.wait_for_function("!document.body.classList.contains('tracking')")
    expected = f"Tracking cancelled after {done['frames']} frames" if done["cancelled"] else "Tracked 6 frames"
    page.wait_for_selector(f".toast >> text={expected}")


def test_segment_everything(page, base_url):
    """The "everything" masks are drawn; the page sends the options of its form."""
    open_page(page, base_url)
    upload(page, "scene.png", "image/png", png_bytes(make_test_image(120, 160, seed=2)), "image")
    before, view = canvas(page)
    page.click("#image-tools summary")
    for selector, value in [("#amg-points", "8"), ("#amg-iou", "0"), ("#amg-stability", "0")]:
        page.fill(selector, value)
    with page.expect_response(lambda r: r.url.endswith("/everything")) as answer:
        page.click("#everything")
    sent = answer.value.request.post_data_json
    assert sent["points_per_side"] == 8 and sent["pred_iou_thresh"] == 0, f"the form's options were not sent: {sent}"
    annotations = answer.value.json()["annotations"]
    assert annotations, "segment everything found no mask even with zero thresholds"
    union = np.any([decode_rle(a["segmentation"]) for a in annotations], axis=0)
    settle(page)
    after, _ = canvas(page)
    assert_drawn(before, after, view, union, (), "segment-everything masks")
    page.wait_for_selector(f".toast >> text=Segment everything: {len(annotations)} masks")


def test_errors_are_shown_and_the_page_stays_usable(page, base_url):
    """A refused upload shows the server's message in a toast; the next upload works; a refused file leaves the
    session on screen as it was."""
    open_page(page, base_url)
    with page.expect_response(lambda r: r.url.endswith("/api/sessions") and r.request.method == "POST") as answer:
        page.set_input_files("#file-input", files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"hello"}])
    message = answer.value.json()["error"]["message"]
    toast = page.wait_for_selector(".toast.error")
    assert message in toast.inner_text() and "fake.png" in toast.inner_text(), f"toast: {toast.inner_text()!r}"
    upload(page, "scene.png", "image/png", png_bytes(make_test_image(60, 80, seed=1)), "image")
    assert "80×60" in page.inner_text("#session-name"), "the page did not open an image after the error"
    with page.expect_response(is_prompt_post):
        click_image(page, canvas(page)[1], 40, 30)
    settle(page)
    before, _ = canvas(page)
    page.set_input_files("#file-input", files=[{"name": "fake.mp4", "mimeType": "video/mp4", "buffer": b"hello"}])
    page.click(".dialog button.primary")  # "close this session?" (it has unexported changes)
    page.wait_for_selector(".toast.error >> text=fake.mp4")
    settle(page)
    assert "scene.png" in page.inner_text("#session-name"), "a refused file closed the session on screen"
    assert np.array_equal(canvas(page)[0], before), "a refused file changed what is drawn"


def test_token_asked_once_and_sent(page, serve):
    """With --token the page asks for it (again when wrong) and then sends it with every request, uploads too."""
    open_page(page, serve(token="s3cret"))
    page.wait_for_selector("#token-input")
    page.fill("#token-input", "wrong")
    page.keyboard.press("Enter")
    page.wait_for_selector(".dialog >> text=rejected")
    page.fill("#token-input", "s3cret")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('server-info').textContent.includes('small')")
    with page.expect_request(lambda r: r.url.endswith("/api/sessions") and r.method == "POST") as request:
        upload(page, "scene.png", "image/png", png_bytes(make_test_image(60, 80, seed=1)), "image")
    assert request.value.headers.get("authorization") == "Bearer s3cret", "the upload did not carry the token"
    assert page.is_hidden("#modal"), "the token dialog came back after the right token"


def test_objects_add_rename_remove(page, base_url):
    """Two objects (a click, a dragged box) drawn together; the second renamed (its COCO category); first removed."""
    open_page(page, base_url)
    upload(page, "scene.png", "image/png", png_bytes(make_test_image(180, 240, seed=5)), "image")
    empty, view = canvas(page)
    with page.expect_response(is_prompt_post):
        click_image(page, view, 60, 45)
    page.keyboard.press("n")
    scale, left, top = view
    corner = page.locator("#view").bounding_box()
    with page.expect_response(is_prompt_post) as answer:  # object 2: a box dragged from (150, 105) to (210, 165)
        page.mouse.move(corner["x"] + 150 * scale + left, corner["y"] + 105 * scale + top)
        page.mouse.down()
        page.mouse.move(corner["x"] + 180 * scale + left, corner["y"] + 135 * scale + top, steps=4)
        page.mouse.move(corner["x"] + 210 * scale + left, corner["y"] + 165 * scale + top, steps=4)
        page.mouse.up()
    sent = answer.value.request.post_data_json
    assert sent["object_id"] == 2 and sent["points"] == [], f"the drag of object 2 sent {sent}"
    assert np.allclose(sent["box"], [150, 105, 210, 165], atol=0.6) and sent["clear_old"], f"box sent: {sent}"
    objects = answer.value.json()["objects"]
    mask1, mask2 = api_mask(objects, 1), api_mask(objects, 2)
    settle(page)
    drawn, _ = canvas(page)
    # The box outline is drawn too: leave its border out of the comparison.
    border = [(x, y) for x in range(150, 211, 3) for y in (105, 165)] + [
        (x, y) for y in range(105, 166, 3) for x in (150, 210)
    ]
    assert_drawn(empty, drawn, view, mask1 | mask2, [(60, 45)] + border, "two objects")
    assert page.locator("#object-list .object").count() == 2, "the list does not show two objects"

    page.keyboard.press("r")
    page.fill(".dialog input", "cat")
    with page.expect_response(lambda r: r.request.method == "PATCH") as answer:
        page.keyboard.press("Enter")
    assert answer.value.ok, f"rename answered {answer.value.status}"
    assert page.inner_text("#object-list .object.selected .name") == "cat", "the new name is not in the list"

    page.keyboard.press("1")
    page.keyboard.press("Delete")
    with page.expect_response(lambda r: r.request.method == "DELETE" and "/objects/1" in r.url) as answer:
        page.click(".dialog button.primary")
    assert answer.value.status == 204, f"removing object 1 answered {answer.value.status}"
    settle(page)
    after, _ = canvas(page)
    assert page.locator("#object-list .object").count() == 1, "object 1 is still listed"
    assert_drawn(empty, after, view, mask2, border, "after removing object 1")

    with page.expect_download() as download:
        page.click("#export-coco")
    coco = json.loads(open(download.value.path(), "rb").read())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [names[a["category_id"]] for a in coco["annotations"]] == ["cat"], f"COCO: {coco['categories']}"


def test_open_from_data_root(page, serve, tmp_path):
    """ "From server…" browses --data-root: into a folder, then a click on an image opens it."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "scene.png").write_bytes(png_bytes(make_test_image(60, 80, seed=1)))
    open_page(page, serve(data_root=str(tmp_path)))
    page.wait_for_selector("#open-server", state="visible")
    page.click("#open-server")
    page.click(".browse-list button >> text=pics/")
    page.wait_for_selector(".browse-path >> text=/pics")
    page.click(".browse-list button >> text=scene.png")
    page.wait_for_function("document.body.dataset.kind === 'image'")
    assert "pics/scene.png" in page.inner_text("#session-name"), f"opened {page.inner_text('#session-name')!r}"
