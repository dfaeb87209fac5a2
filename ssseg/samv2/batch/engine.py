"""Run a job's inputs on one process (``local``) or on a Ray cluster (``ray``), with resume, errors and progress.

Both engines call the same worker class on the same rows. Before anything runs, the output root is listed once and
every input whose files all exist is skipped (unless ``overwrite``). Results stream back as rows; failures go to
``errors.jsonl`` at the output root, and one progress bar shows the whole job with its rate.

Ray engine: ``ray.data.from_items(rows)`` -> (for images) a read stage of CPU tasks that fetches the bytes ->
``map_batches(WorkerClass, compute=ActorPoolStrategy(size=workers))``, an actor pool whose actors each build the model
once -> the driver iterates the result rows. Each actor asks for ``gpus_per_worker`` GPUs and ``cpus_per_worker``
CPUs; without GPUs the default leaves half a CPU free for the read stage, since an actor pool that takes every CPU
starves the read stage and the job waits forever.
"""

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional

from ssseg.samv2.batch.job import RESULT_COLUMNS
from ssseg.samv2.batch.store import OutputStore, write_errors

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine places workers: ``address`` (``None`` starts a local cluster unless one is running in this
    process, ``"auto"`` joins the cluster of this machine, ``"ray://HOST:PORT"`` a remote one), ``workers`` (actors;
    default: the cluster's GPUs / ``gpus_per_worker``, else 1), ``gpus_per_worker``, ``cpus_per_worker`` (default:
    1 with GPUs, else the cluster's CPUs less half a CPU, shared by the workers), ``batch_size`` (inputs per call)."""

    address: Optional[str] = None
    workers: Optional[int] = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: Optional[float] = None
    batch_size: int = 1


@dataclass
class BatchSummary:
    """What a job did: inputs processed / skipped (already done) / failed, the wall time, the units processed
    (images, or frames for videos), and where the errors are (``None`` when nothing failed)."""

    total: int
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    units: int = 0
    errors_file: Optional[str] = None
    errors: List[Dict[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every input is done, 1 when any failed."""
        return 1 if self.failed else 0

    def rate(self) -> float:
        """Inputs processed per second."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Job:
    """A job kind bound to its options: ``spec`` (picklable; has ``out`` and ``outputs(key)``), the worker class,
    and the optional read stage (``fetch_one(source) -> (bytes, error)``, ``fetch_batch`` for Ray)."""

    spec: Any
    worker: type
    fetch_one: Optional[Callable] = None
    fetch_batch: Optional[Callable] = None
    unit: str = "image"


def pending(job: Job, rows: List[Dict[str, Any]], store: OutputStore, overwrite: bool) -> List[Dict[str, Any]]:
    """The rows whose files do not all exist yet (a half-written file never has its final name, see store.py)."""
    if overwrite:
        return list(rows)
    existing = store.existing()
    return [r for r in rows if not all(name in existing for name in job.spec.outputs(r["key"]))]


def run_job(
    job: Job,
    rows: List[Dict[str, Any]],
    engine: str = "local",
    ray_options: Optional[RayOptions] = None,
    overwrite: bool = False,
    progress: bool = True,
    failed: Optional[List[Dict[str, str]]] = None,
) -> BatchSummary:
    """Run ``job`` on ``rows`` (dicts with ``source``, ``key`` and job-specific columns).

    ``failed`` are inputs already known bad (e.g. a malformed manifest line), reported with the rest.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    from tqdm import tqdm

    store = OutputStore(job.spec.out)
    todo = pending(job, rows, store, overwrite)
    summary = BatchSummary(total=len(rows) + len(failed or []), skipped=len(rows) - len(todo))
    summary.errors = [dict(e) for e in failed or []]
    summary.failed = len(summary.errors)
    start = time.perf_counter()
    bars = []

    def ready() -> None:  # the bar starts once the model is built, so its rate is the labelling rate
        bars.append(tqdm(total=len(todo), desc=job.unit + "s", unit=job.unit, disable=not progress))

    def collect(result: Dict[str, Any]) -> None:
        if result["status"] == "done":
            summary.processed += 1
            summary.units += int(result["units"])
        else:
            summary.failed += 1
            summary.errors.append({"input": str(result["source"]), "reason": str(result["reason"])})
            bars[0].set_postfix(failed=summary.failed)
        bars[0].update(1)

    try:
        if todo:
            runner = _run_local if engine == "local" else _run_ray
            runner(job, todo, ray_options or RayOptions(), ready, collect)
    finally:
        for bar in bars:
            bar.close()
        summary.seconds = time.perf_counter() - start
        if todo or summary.errors:
            summary.errors_file = write_errors(store, summary.errors)
    return summary


def _run_local(job: Job, rows: List[Dict[str, Any]], options: RayOptions, ready: Callable, collect: Callable) -> None:
    worker = job.worker(job.spec)  # built once; the CLI's option errors surface here, before any input
    ready()
    for row in rows:
        if job.fetch_one is not None:
            data, error = job.fetch_one(row["source"])
            row = {**row, "data": data, "error": error}
        collect(worker.safe_process(row))


def _run_ray(job: Job, rows: List[Dict[str, Any]], options: RayOptions, ready: Callable, collect: Callable) -> None:
    from ssseg.modules.utils.optional import import_optional

    ray = import_optional("ray", "ray", "--engine ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, logging_level="WARNING", log_to_driver=False)
    try:
        data_context = ray.data.DataContext.get_current()
        data_context.enable_progress_bars = False  # our one bar covers the job
        data_context.print_on_execution_start = False
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # marks Ray's "progress bars disabled" warning as shown
        workers, cpus, gpus = _placement(ray, options)
        spec = job.spec
        if spec.model.threads is None:  # torch threads follow the CPUs each worker holds
            spec = replace(spec, model=replace(spec.model, threads=max(1, round(cpus))))
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * workers)))
        if job.fetch_batch is not None:
            dataset = dataset.map_batches(job.fetch_batch, batch_size=options.batch_size, num_cpus=0.25)
        dataset = dataset.map_batches(
            job.worker,
            fn_constructor_kwargs={"spec": spec},
            batch_size=options.batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus,
            num_gpus=gpus or None,
        )  # Ray Data's defaults restart an actor that dies (out of memory, lost node) and retry its batch
        ready()  # actors start with the first rows; their start is part of the bar's time
        results = iter(dataset.iter_rows())
        try:
            for result in results:
                collect({c: result[c] for c in RESULT_COLUMNS})
        finally:
            close = getattr(results, "close", None)
            if close is not None:  # stopped early (interrupted): shut the pipeline and its actors down now
                close()
    except Exception as error:
        raise _unwrap(error) from None
    finally:
        if started:
            ray.shutdown()


def _placement(ray, options: RayOptions):
    """``(workers, cpus per worker, gpus per worker)`` from the options and the cluster's resources. Asking for more
    than the cluster has now is a warning, not an error: an autoscaling cluster adds nodes when asked."""
    resources = ray.cluster_resources()
    gpus = float(options.gpus_per_worker or 0)
    if gpus < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {gpus:g}")
    workers = options.workers if options.workers is not None else 1
    if options.workers is None and gpus:
        workers = max(1, int(resources.get("GPU", 0) // gpus))
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    cpus = options.cpus_per_worker
    if cpus is None:
        cpus = 1.0 if gpus else max(0.1, (resources.get("CPU", 1) - 0.5) / workers)
    if not cpus > 0:
        raise ValueError(f"--cpus-per-worker must be > 0, got {cpus:g}")
    for name, need, have in (("GPU", workers * gpus, resources.get("GPU", 0)),
                             ("CPU", workers * cpus + 0.25, resources.get("CPU", 0))):  # fmt: skip
        if need > have:
            message = (
                f"warning: {workers} worker(s) and the read stage need {need:g} {name}s; the Ray cluster has "
                f"{have:g} now, so the job waits until it grows (an autoscaler) or forever"
            )
            print(message, file=sys.stderr)
    return workers, cpus, gpus


def _unwrap(error: Exception) -> Exception:
    """Ray reports a worker's failure to start (an option out of range, a checkpoint that does not load) as an actor
    error whose text ends with the original one; give back our one-line error so the CLI prints just that."""
    from ssseg.samv2.common import CLIError

    cause = error
    for _ in range(8):  # a RayTaskError keeps the original exception as .cause
        if isinstance(cause, CLIError):
            return cause
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    marker = "CLIError: "
    text = str(error)
    if marker in text:
        return CLIError("a Ray worker could not start: " + text[text.rindex(marker) + len(marker) :].strip())
    return error
