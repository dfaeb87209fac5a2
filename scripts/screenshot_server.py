"""Screenshot of the web app of ``ssseg-samv2 serve`` for the docs (docs/images/server.png).

Starts the real server on a free 127.0.0.1 port (in this process; the tiny SAM 2.1 model at 256 px with random
weights unless ``--config``/``--ckpt`` give a real one), opens a short synthetic video in Debian's Chromium, labels
two objects on frame 0 (a positive and a negative click each), tracks them and saves a screenshot of frame 0. With
random weights the masks are not meaningful; the clicks go where the masks come out smallest, so the picture shows
what the app looks like.

Usage::

    python scripts/screenshot_server.py                        # writes docs/images/server.png
    python scripts/screenshot_server.py --config my.py --ckpt my.pt --out /tmp/app.png
"""

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ssseg.samv2.server import create_app  # noqa: E402
from tests.conftest import make_test_image  # noqa: E402
from tests.samv2.server.conftest import serve_in_thread  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def build_model(config: str, ckpt: str):
    """The model of ``--config``/``--ckpt`` as ``serve`` builds it, else SAM 2.1 tiny at 256 px, random weights."""
    if config:
        from ssseg.samv2.common import build_model as build_cli_model

        return build_cli_model(argparse.Namespace(model=None, config=config, ckpt=ckpt, device="cpu"), video=True)
    from ssseg.configs.samv2 import getconfig
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict

    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg["image_size"] = 256
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    return model.eval()


def write_video(path: str, num_frames: int, height: int, width: int) -> None:
    base = make_test_image(height, width + 6 * num_frames, seed=4)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for t in range(num_frames):
        writer.write(np.ascontiguousarray(base[:, 6 * t : 6 * t + width, ::-1]))
    writer.release()


def pick_prompts(url: str, video: str, count: int) -> list:
    """Clicks for ``count`` objects: for each, the grid point whose mask is the smallest (far from the others), then
    a negative point at the mask pixel farthest from it when that makes the mask smaller. ``[[(x, y, label)...]]``."""
    import httpx

    from ssseg.modules.models.segmentors.samv2.masks import decode_rle

    with open(video, "rb") as handle, httpx.Client(base_url=url, timeout=60) as client:
        info = client.post("/api/sessions", files={"file": ("probe.mp4", handle, "video/mp4")}).json()
        sid, width, height = info["session_id"], info["width"], info["height"]

        def mask_of(clicks):
            body = {"frame": 0, "object_id": 1, "points": [c[:2] for c in clicks], "labels": [c[2] for c in clicks]}
            return decode_rle(client.post(f"/api/sessions/{sid}/prompts", json=body).json()["objects"][0]["mask"])

        scored = []
        for y in np.linspace(0.15, 0.85, 6) * height:
            for x in np.linspace(0.1, 0.9, 8) * width:
                scored.append((mask_of([(float(x), float(y), 1)]).mean(), float(x), float(y)))
        picked = []
        for _, x, y in sorted(scored):
            if all((x - c[0][0]) ** 2 + (y - c[0][1]) ** 2 > (0.3 * width) ** 2 for c in picked):
                clicks = [(x, y, 1)]
                mask = mask_of(clicks)
                ys, xs = np.nonzero(mask)
                far = int(np.argmax((xs - x) ** 2 + (ys - y) ** 2))
                negative = clicks + [(float(xs[far]), float(ys[far]), 0)]
                picked.append(negative if mask_of(negative).sum() < mask.sum() else clicks)
            if len(picked) == count:
                break
        client.delete(f"/api/sessions/{sid}")
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="", help="model config file (default: tiny at 256 px, random weights)")
    parser.add_argument("--ckpt", default="", help="checkpoint for --config")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "images", "server.png"))
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"needs Debian's Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "street.mp4")
        write_video(video, num_frames=12, height=360, width=640)
        app = create_app(build_model(args.config, args.ckpt), model_name="sam2.1_hiera_tiny", workdir=f"{tmp}/work")
        with serve_in_thread(app) as url:
            objects = pick_prompts(url, video, 2)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 760}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_selector("body[data-ready='1']")
                page.set_input_files("#file-input", video)
                page.wait_for_function("document.body.dataset.kind === 'video'")
                wait = "document.body.dataset.pending === '0'"
                page.wait_for_function(wait)
                box = page.locator("#view").bounding_box()
                scale, left, top = (float(v) for v in page.eval_on_selector("#view", "c => c.dataset.view").split(","))
                for i, clicks in enumerate(objects):
                    if i:
                        page.keyboard.press("n")
                    for x, y, label in clicks:
                        at = (box["x"] + (x + 0.5) * scale + left, box["y"] + (y + 0.5) * scale + top)
                        page.mouse.click(*at, button="left" if label else "right")
                        page.wait_for_timeout(100)
                        page.wait_for_function(wait)
                page.keyboard.press("t")
                page.wait_for_timeout(300)
                page.wait_for_function("!document.body.classList.contains('tracking')", timeout=120000)
                page.keyboard.press("1")
                page.keyboard.press("Home")  # frame 0: its clicks are shown, the timeline shows the tracked frames
                page.wait_for_timeout(300)
                page.wait_for_function(wait)
                page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
                page.mouse.move(box["x"] + box["width"] - 40, box["y"] + 40)
                page.wait_for_timeout(200)
                os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
                page.screenshot(path=args.out)
                browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
