"""Load test of ``ssseg-samv2 serve`` on 127.0.0.1: concurrent clients clicking in their own image sessions.

Starts the real command (uvicorn) in a subprocess on a free loopback port, with a config of ``--variant`` at
``--image-size`` and deterministic random weights. ``--clients`` clients (16) each upload their own image, then click
``--clicks`` times (20) one after the other, all clients at once: the first click fresh, the others appended as
refinements (earlier clicks plus the previous low-res logits, ``clear_old: false``). After the server is stopped the
same clicks are replayed here on ``SAMV2ImagePredictor.predict`` with the same model, which gives the reference
masks and the direct-call latency. Bounded: a fixed number of requests, each with a timeout, and ``--deadline``
seconds in all. Prints one markdown table (docs/benchmarks.md keeps the results)::

    python scripts/benchmark_server.py                       # 16 clients x 20 clicks, sam2.1_hiera_tiny at 1024
    python scripts/benchmark_server.py --clients 4 --clicks 5 --image-size 256
"""

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.conftest import make_test_image  # noqa: E402

CONFIG = """from ssseg.configs.samv2 import getconfig
SAMV2_CFG, _ = getconfig({variant!r})
SAMV2_CFG["image_size"] = {image_size}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="sam2.1_hiera_tiny")
    parser.add_argument("--image-size", type=int, default=1024, help="model input size (default: the variant's 1024)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the server and the direct calls")
    parser.add_argument("--deadline", type=float, default=900, help="give up after this many seconds in all")
    return parser.parse_args()


def write_model_files(folder: str, variant: str, image_size: int):
    import torch

    from ssseg.configs.samv2 import loadconfigfile
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict

    config = os.path.join(folder, "bench.py")
    with open(config, "w") as handle:
        handle.write(CONFIG.format(variant=variant, image_size=image_size))
    cfg, _ = loadconfigfile(config)
    model = buildsamv2(cfg, loadweights=False)
    ckpt = os.path.join(folder, "bench.pt")
    torch.save({"model": random_state_dict(model.state_dict(), seed=0)}, ckpt)
    return config, ckpt


def start_server(config: str, ckpt: str, clients: int, threads: int, deadline: float):
    command = [sys.executable, "-m", "ssseg.samv2", "serve", "--config", config, "--ckpt", ckpt]
    command += ["--host", "127.0.0.1", "--port", "0", "--max-sessions", str(clients + 1)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the server, as set here for direct calls
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(10.0, deadline - time.monotonic()))
    if not line or "http://127.0.0.1:" not in line[0]:
        process.kill()
        raise SystemExit(f"the server did not start: {line}")
    return process, line[0].split()[2].rstrip("/")


def click_plan(seed: int, clicks: int, height: int, width: int):
    """``[(x, y, label, clear_old)]``: the first click foreground and fresh, then refinements."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(clicks):
        x, y = float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1))
        plan.append((round(x, 1), round(y, 1), 1 if i == 0 else int(rng.integers(0, 2)), i == 0))
    return plan


async def open_session(http, image_png: bytes, errors) -> str:
    response = await http.post("/api/sessions", files={"file": ("image.png", image_png, "image/png")})
    if response.status_code != 201:
        errors.append(f"open: {response.status_code} {response.text[:200]}")
        return None
    return response.json()["session_id"]


async def run_clicks(http, sid: str, plan, results):
    """One client's clicks, one after the other; returns the masks answered (None where not 200)."""
    answers = []
    for x, y, label, clear in plan:
        body = {"object_id": 1, "points": [[x, y]], "labels": [label], "clear_old": clear}
        start = time.perf_counter()
        response = await http.post(f"/api/sessions/{sid}/prompts", json=body)
        results["latency"].append(time.perf_counter() - start)
        results["status"].append(response.status_code)
        answers.append(response.json()["objects"][0]["mask"] if response.status_code == 200 else None)
    return answers


async def load(url: str, images, plans, clients: int, timeout: float):
    """Sessions are opened first (their image embeddings are not clicks); then one client clicks alone, for the
    unloaded latency, and then all clients click at once."""
    import httpx

    results = {"latency": [], "status": [], "errors": []}
    single = {"latency": [], "status": [], "errors": []}
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        sids = await asyncio.gather(*(open_session(http, images[i], results["errors"]) for i in range(clients)))
        if None in sids:
            return results, single, [], 1.0
        await run_clicks(http, sids[0], plans[0], single)
        start = time.perf_counter()
        answers = await asyncio.gather(*(run_clicks(http, sids[i], plans[i], results) for i in range(clients)))
        wall = time.perf_counter() - start
        for sid in sids:
            await http.delete(f"/api/sessions/{sid}")
    return results, single, answers, wall


def direct(config: str, ckpt: str, images, plans):
    """The same clicks on SAMV2ImagePredictor.predict: reference masks and per-call latency."""
    from argparse import Namespace

    from ssseg.modules.models.segmentors.samv2 import SAMV2ImagePredictor
    from ssseg.samv2.common import build_model

    model = build_model(Namespace(config=config, ckpt=ckpt, device="cpu", model=None), video=True)
    predictor = SAMV2ImagePredictor(model=model)
    masks, latency = [], []
    for image, plan in zip(images, plans):
        predictor.setimage(image)
        points, labels, logits, client = [], [], None, []
        for x, y, label, clear in plan:
            if clear:
                points, labels, logits = [], [], None
            points, labels = points + [[x, y]], labels + [label]
            start = time.perf_counter()
            out, scores, low = predictor.predict(
                np.array(points),
                np.array(labels),
                mask_input=None if logits is None else logits[None],
                multimask_output=False,
            )
            latency.append(time.perf_counter() - start)
            logits = low[int(np.argmax(scores))]
            client.append(out[0] > 0)
        masks.append(client)
    return masks, latency


def percentile_ms(values, q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> int:
    import torch

    from ssseg.modules.models.segmentors.samv2.masks import decode_rle

    args = parse_args()
    deadline = time.monotonic() + args.deadline
    torch.set_num_threads(args.threads)
    images = [make_test_image(args.height, args.width, seed=i) for i in range(args.clients)]
    plans = [click_plan(i, args.clicks, args.height, args.width) for i in range(args.clients)]

    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    with tempfile.TemporaryDirectory() as folder:
        config, ckpt = write_model_files(folder, args.variant, args.image_size)
        process, url = start_server(config, ckpt, args.clients, args.threads, deadline)
        try:
            timeout = max(10.0, deadline - time.monotonic())
            results, single, answers, wall = asyncio.run(
                asyncio.wait_for(load(url, pngs, plans, args.clients, timeout), timeout)
            )
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        reference, direct_latency = direct(config, ckpt, images, plans)

    total = args.clients * args.clicks
    server_errors = sum(1 for s in results["status"] if s >= 500)
    equal = 0
    for client, want in zip(answers, reference):
        for got, mask in zip(client or [], want):
            equal += int(got is not None and np.array_equal(decode_rle(got), mask))
    print(
        f"\n{args.variant} at image_size {args.image_size}, {args.height} x {args.width} images, CPU threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; {args.clients} clients x {args.clicks} "
        "clicks\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| clicks answered 200 | {sum(1 for s in results['status'] if s == 200)} / {total} |")
    print(f"| 5xx answers | {server_errors} |")
    print(f"| masks equal to direct `predict` | {equal} / {total} |")
    for name, values in [
        (f"click latency, {args.clients} concurrent clients", results["latency"]),
        ("click latency, 1 client alone", single["latency"]),
        ("direct `predict` call (no HTTP)", direct_latency),
    ]:
        print(f"| {name}: p50 / p99 (ms) | {percentile_ms(values, 50):.1f} / {percentile_ms(values, 99):.1f} |")
    print(f"| clicks per second, {args.clients} clients at once (wall {wall:.1f} s) | {total / wall:.2f} |")
    if results["errors"]:
        print("errors:", *results["errors"][:5], sep="\n  ")
    ok = equal == total and server_errors == 0 and not results["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
