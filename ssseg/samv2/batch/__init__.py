"""Dataset-scale labelling: ``amg`` over image trees and ``video`` over manifests, on one process or a Ray cluster.

``run_amg`` / ``run_video`` (see :mod:`ssseg.samv2.batch.api`) are the Python entry points of
``ssseg-samv2 amg ... --engine ray`` and ``ssseg-samv2 video MANIFEST.jsonl``; docs/distributed.md is the guide.
"""

from ssseg.samv2.batch.api import run_amg, run_video
from ssseg.samv2.batch.engine import BatchSummary, RayOptions

__all__ = ["BatchSummary", "RayOptions", "run_amg", "run_video"]
