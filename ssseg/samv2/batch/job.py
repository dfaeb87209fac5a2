"""What every batch job shares: the model choice, the result row of one input, and the worker protocol.

A job kind (``amg``, ``video``) provides a spec (a picklable dataclass of its options), a worker class built once
per process from that spec (the model is loaded in ``__init__``) whose :meth:`BatchWorker.process` handles one input
row, and the names of the files one input writes (the last one is its *done marker*). The local engine calls the
same worker in a loop; the Ray engine hands the class to ``map_batches`` as an actor pool, so the per-input code is
one function for both and their outputs are the same bytes.
"""

import argparse
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

# columns of a result row
RESULT_COLUMNS = ("source", "key", "status", "reason", "units")


@dataclass(frozen=True)
class ModelSpec:
    """The model of a job, as the CLI's model options: a variant name or a config file, a checkpoint (a path on
    storage every worker sees, a URL downloaded once per node into the cache, or the variant's default), the device
    and compute dtype of each worker, and the torch threads of each worker (``None``: leave torch's default)."""

    model: str = "sam2.1_hiera_large"
    config: Optional[str] = None
    ckpt: Optional[str] = None
    device: str = "cpu"
    dtype: str = "float32"
    threads: Optional[int] = None

    def namespace(self) -> argparse.Namespace:
        """The options as ``ssseg.samv2.common`` reads them (``build_model``, ``autocast``)."""
        return argparse.Namespace(**asdict(self))


def done_row(source: str, key: str, units: int = 1) -> Dict[str, Any]:
    return {"source": source, "key": key, "status": "done", "reason": "", "units": units}


def failed_row(source: str, key: str, reason: str) -> Dict[str, Any]:
    return {"source": source, "key": key, "status": "failed", "reason": reason, "units": 0}


def describe(error: BaseException) -> str:
    """One line for ``errors.jsonl``: our own errors are already sentences; anything else gets its type and the
    innermost frame, so an unexpected failure can still be located."""
    from ssseg.samv2.common import CLIError
    from ssseg.samv2.prompts import PromptsError

    message = " ".join(str(error).split())
    if isinstance(error, (CLIError, PromptsError)):
        return message
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {message}{where}"


def apply_threads(spec: ModelSpec) -> None:
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)


class BatchWorker:
    """Base of the per-process workers: subclasses build their model in ``__init__`` and implement
    :meth:`process`; ``__call__`` is the Ray ``map_batches`` entry (a batch is a dict of columns)."""

    def process(self, row: Dict[str, Any]) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def safe_process(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """:meth:`process`, with any failure of this one input turned into a failed row (the job goes on)."""
        try:
            return self.process(row)
        except Exception as error:  # one bad input must not stop the others; KeyboardInterrupt still does
            return failed_row(str(row["source"]), str(row["key"]), describe(error))

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[Any]]:
        names = list(batch)
        rows = [dict(zip(names, values)) for values in zip(*(batch[n] for n in names))]
        results = [self.safe_process(row) for row in rows]
        return {c: [r[c] for r in results] for c in RESULT_COLUMNS}
