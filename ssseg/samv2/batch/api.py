"""Python entry points of the batch jobs, with the options of the command line (for notebooks and pipelines).

    from ssseg.samv2.batch import run_amg, run_video

    summary = run_amg("s3://bucket/images/", "s3://bucket/masks/", engine="ray", ray_address="auto",
                      workers=8, gpus_per_worker=1, device="cuda", model="sam2.1_hiera_large",
                      points_per_side=32)
    print(summary.processed, summary.skipped, summary.failed, summary.errors_file)

    summary = run_video("videos.jsonl", "tracks/", engine="local", model="sam2.1_hiera_tiny")

Both return a :class:`~ssseg.samv2.batch.engine.BatchSummary`; ``summary.exit_code`` is 1 when an input failed.
Bad options raise ``ValueError`` (or ``ssseg.samv2.common.CLIError``) before any input is processed.
"""

from typing import Optional

from ssseg.samv2.batch.amgjob import GENERATOR_OPTIONS, AmgSpec, AmgWorker, fetch_batch, fetch_image
from ssseg.samv2.batch.engine import ENGINES, BatchSummary, Job, RayOptions, run_job
from ssseg.samv2.batch.job import ModelSpec
from ssseg.samv2.batch.sources import list_sources
from ssseg.samv2.batch.videojob import VideoSpec, VideoWorker, read_manifest


def _check_engine(engine: str, model: ModelSpec, gpus_per_worker: float) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "ray":
        from ssseg.modules.utils.optional import import_optional

        import_optional("ray", "ray", "--engine ray")  # a missing extra is one line, before any work
    if engine == "ray" and gpus_per_worker and not model.device.startswith("cuda"):
        raise ValueError(f"--gpus-per-worker {gpus_per_worker:g} needs --device cuda (the model runs on the CPU)")
    if engine == "ray" and model.device.startswith("cuda") and not gpus_per_worker:
        raise ValueError("--device cuda with --engine ray needs --gpus-per-worker > 0 (Ray gives a worker a GPU "
                         "only when it asks for one)")  # fmt: skip


def run_amg(
    source: str,
    out: str,
    *,
    engine: str = "local",
    overlays: Optional[bool] = None,
    overwrite: bool = False,
    progress: Optional[bool] = None,
    use_m2m: bool = False,
    model: str = "sam2.1_hiera_large",
    config: Optional[str] = None,
    ckpt: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "float32",
    threads: Optional[int] = None,
    ray_address: Optional[str] = None,
    workers: Optional[int] = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: Optional[float] = None,
    batch_size: int = 1,
    **generator_options,
) -> BatchSummary:
    """Automatic masks of every image of ``source`` into ``out`` (``ssseg-samv2 amg``).

    Args:
        source: a folder (recursive), a glob, a text file listing paths or URIs, one image, or a URI of any of these.
        out: a folder or a URI; per image ``<key>.json`` and, with ``overlays``, ``<key>_overlay.png``.
        engine: ``"local"`` (this process) or ``"ray"``.
        overlays: draw overlays (default: on for ``local``, off for ``ray``).
        overwrite: recompute images whose outputs exist (default: skip them).
        progress: show the progress bar (default: when there is more than one image).
        generator_options: ``points_per_side``, ``pred_iou_thresh``, ... (``GENERATOR_OPTIONS``).
        The other arguments are the CLI's model and engine options.
    """
    unknown = sorted(set(generator_options) - set(GENERATOR_OPTIONS))
    if unknown:
        raise ValueError(f"unknown generator option(s) {unknown}; expected some of {sorted(GENERATOR_OPTIONS)}")
    model_spec = ModelSpec(model=model, config=config, ckpt=ckpt, device=device, dtype=dtype, threads=threads)
    _check_engine(engine, model_spec, gpus_per_worker)
    items = list_sources(source)
    options = {name: default for name, (_, default, _) in GENERATOR_OPTIONS.items()}
    options.update(generator_options)
    spec = AmgSpec(
        out=out,
        model=model_spec,
        options=tuple(sorted(options.items())),
        use_m2m=use_m2m,
        overlays=engine == "local" if overlays is None else overlays,
    )
    job = Job(spec=spec, worker=AmgWorker, fetch_one=fetch_image, fetch_batch=fetch_batch, unit="image")
    rows = [{"source": i.source, "key": i.key} for i in items]
    ray_options = RayOptions(ray_address, workers, gpus_per_worker, cpus_per_worker, batch_size)
    show = len(rows) > 1 if progress is None else progress
    return run_job(job, rows, engine, ray_options, overwrite=overwrite, progress=show)


def run_video(
    manifest: str,
    out: str,
    *,
    engine: str = "local",
    overlay: bool = True,
    fps: Optional[float] = None,
    overwrite: bool = False,
    progress: bool = True,
    model: str = "sam2.1_hiera_large",
    config: Optional[str] = None,
    ckpt: Optional[str] = None,
    device: str = "cpu",
    dtype: str = "float32",
    threads: Optional[int] = None,
    ray_address: Optional[str] = None,
    workers: Optional[int] = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: Optional[float] = None,
    batch_size: int = 1,
) -> BatchSummary:
    """Track the prompts of every line of ``manifest`` (JSON lines, see ``videojob``) into ``out/<key>/``, as the
    ``video`` command writes one video (``ssseg-samv2 video MANIFEST.jsonl``). Malformed lines and unreadable videos
    are reported in ``out/errors.jsonl``; the other videos are tracked."""
    if fps is not None and not fps > 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    model_spec = ModelSpec(model=model, config=config, ckpt=ckpt, device=device, dtype=dtype, threads=threads)
    _check_engine(engine, model_spec, gpus_per_worker)
    rows, failed = read_manifest(manifest)
    spec = VideoSpec(out=out, model=model_spec, overlay=overlay, fps=fps)
    job = Job(spec=spec, worker=VideoWorker, unit="video")
    ray_options = RayOptions(ray_address, workers, gpus_per_worker, cpus_per_worker, batch_size)
    return run_job(job, rows, engine, ray_options, overwrite=overwrite, progress=progress, failed=failed)
