"""Throughput of ``amg`` on the local engine and on the Ray engine, on this machine, with the same workers.

Both engines label the same synthetic images (``--images`` of ``--size`` pixels) with the same model (SAM 2.1 tiny
architecture with deterministic random weights at ``--image-size``, no download) and options, and the same torch
threads per worker. The script prints a table: end-to-end time (model build, and for Ray the cluster and actor
start, included), the steady rate (images after the first / time from the first image's JSON to the last, read from
the files' modification times), Ray's overhead against the local engine on both, and what the steady rate per worker
implies for N workers (an upper bound: it assumes each worker has its own device and the reads keep up).

Bounded: a few images, ``--repeats`` runs per engine, interleaved (local, ray, local, ray: a change of the machine's
load hits both), medians reported. Each run is a fresh process in a session of its own (see :func:`spawn`); the Ray
run starts its own local cluster (``ray.init(num_cpus=...)``), whose start counts in its end-to-end time.

Usage::

    python scripts/benchmark_distributed.py                              # 8 images x 2 runs, 1 worker, 2 threads
    python scripts/benchmark_distributed.py --images 24 --workers 2 --threads 1
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.conftest import SMALL_CONFIG, make_test_image  # noqa: E402


def prepare(folder: str, args: argparse.Namespace):
    """Images, a config file at ``--image-size`` and a random-weight checkpoint; returns (images, config, ckpt)."""
    import torch
    from PIL import Image

    from ssseg.configs.samv2 import getconfig
    from ssseg.modules.models.segmentors.samv2 import buildsamv2
    from ssseg.modules.models.segmentors.samv2.randomweights import random_state_dict

    images = os.path.join(folder, "images")
    for i in range(args.images):
        sub = os.path.join(images, f"part{i % 3}")
        os.makedirs(sub, exist_ok=True)
        Image.fromarray(make_test_image(args.size, args.size * 4 // 3, seed=i)).save(os.path.join(sub, f"{i}.jpg"))
    cfg, _ = getconfig("sam2.1_hiera_tiny")
    cfg["image_size"] = args.image_size
    model = buildsamv2(cfg, loadweights=False)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0), strict=True)
    ckpt = os.path.join(folder, "random.pt")
    torch.save({"model": model.state_dict()}, ckpt)
    config = os.path.join(folder, "config.py")
    with open(config, "w") as file:
        file.write(SMALL_CONFIG.replace("= 256", f"= {args.image_size}"))
    return images, config, ckpt


def steady_rate(out: str) -> float:
    """Images per second between the first and the last JSON written (model build and start excluded)."""
    times = sorted(
        os.path.getmtime(os.path.join(d, n)) for d, _, names in os.walk(out) for n in names if n.endswith(".json")
    )
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def run(engine: str, images: str, out: str, config: str, ckpt: str, args: argparse.Namespace) -> dict:
    from ssseg.samv2.batch import run_amg

    start = time.perf_counter()
    summary = run_amg(
        images,
        out,
        engine=engine,
        overlays=False,
        progress=False,
        config=config,
        ckpt=ckpt,
        threads=args.threads,
        workers=args.workers if engine == "ray" else None,
        points_per_side=args.points_per_side,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    total = time.perf_counter() - start
    assert summary.processed == args.images and not summary.failed, summary
    return {"total": total, "end_to_end": args.images / total, "steady": steady_rate(out)}


def child(args: argparse.Namespace) -> None:
    """One engine's job in this (fresh) process; prints its timings as JSON on the last line."""
    import torch

    torch.set_num_threads(args.threads)
    folder = args.folder
    images, config, ckpt = (os.path.join(folder, "images"), os.path.join(folder, "config.py"),
                            os.path.join(folder, "random.pt"))  # fmt: skip
    start = time.perf_counter()
    if args.child == "ray":
        import ray

        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    result = run(args.child, images, args.out, config, ckpt, args)
    result["total"] = time.perf_counter() - start  # with the cluster's start for Ray
    result["end_to_end"] = args.images / result["total"]
    print(json.dumps(result))


def spawn(engine: str, out: str, folder: str) -> dict:
    """Run one engine in a new process and session. A session of its own puts the process in its own scheduling
    group (Linux autogroup), as Ray's workers are; without it, on a shared machine, the local engine competes in
    the caller's group and looks slower than it is."""
    command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", engine, "--out", out]
    command += ["--folder", folder]
    done = subprocess.run(command, capture_output=True, text=True, start_new_session=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=240, help="image height (width = 4/3 of it)")
    parser.add_argument("--image-size", type=int, default=512, help="model input size")
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="Ray actors (the local engine is one worker)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per worker, both engines")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=2, help="runs per engine, interleaved (median reported)")
    parser.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, nargs="*", default=[8, 64, 512], help="N workers to extrapolate to")
    args = parser.parse_args()
    if not 2 <= args.images <= 200 or not 1 <= args.repeats <= 5:
        parser.error("--images must be in 2..200 and --repeats in 1..5 (bounded benchmark)")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.child:
        return child(args)
    folder = tempfile.mkdtemp(prefix="bench-distributed-")
    results = {"local": [], "ray": []}
    try:
        prepare(folder, args)
        for repeat in range(args.repeats):  # interleaved, so a change of the machine's load hits both engines
            for engine in ("local", "ray"):
                results[engine].append(spawn(engine, os.path.join(folder, f"{engine}{repeat}"), folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {}
    for engine, runs in results.items():
        summary[engine] = {key: statistics.median(r[key] for r in runs) for key in ("total", "end_to_end", "steady")}

    print(
        f"\n{args.images} images {args.size}x{args.size * 4 // 3}, SAM 2.1 tiny (random weights) at "
        f"{args.image_size}, points_per_side {args.points_per_side}, {args.threads} torch thread(s) per worker, "
        f"Ray: {args.workers} worker(s), local: 1; median of {args.repeats} interleaved runs; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| engine | workers | end to end (s) | end to end (images/s) | steady (images/s) |")
    print("|---|---|---|---|---|")
    for engine in ("local", "ray"):
        r = summary[engine]
        workers = 1 if engine == "local" else args.workers
        print(f"| {engine} | {workers} | {r['total']:.1f} | {r['end_to_end']:.3f} | {r['steady']:.3f} |")
    local, remote = summary["local"], summary["ray"]
    print(
        f"\nRay overhead per worker: steady {1 - remote['steady'] / args.workers / local['steady']:+.1%}, "
        f"end to end {1 - remote['end_to_end'] / args.workers / local['end_to_end']:+.1%} "
        "(positive: Ray slower; target < 10% steady)"
    )
    per_worker = remote["steady"] / args.workers
    print(f"\nper worker {per_worker:.3f} images/s ->", ", ".join(f"{n} workers: {n * per_worker:.1f} images/s"
                                                              for n in args.scale))  # fmt: skip


if __name__ == "__main__":
    main()
