"""Engine pieces that need no model: where Ray puts the workers, and how a worker's start error reads."""

import types

import pytest

from ssseg.samv2.batch.engine import RayOptions, _placement, _unwrap
from ssseg.samv2.common import CLIError


def cluster(**resources):
    return types.SimpleNamespace(cluster_resources=lambda: resources)


def test_placement_defaults_leave_the_read_stage_a_cpu_share(capsys):
    assert _placement(cluster(CPU=2.0), RayOptions()) == (1, 1.5, 0.0)
    assert _placement(cluster(CPU=2.0), RayOptions(workers=2)) == (2, 0.75, 0.0)
    assert _placement(cluster(CPU=32.0, GPU=8.0), RayOptions(gpus_per_worker=1)) == (8, 1.0, 1.0)
    assert _placement(cluster(CPU=32.0, GPU=8.0), RayOptions(gpus_per_worker=0.5)) == (16, 1.0, 0.5)
    assert capsys.readouterr().err == "", "no warning when the cluster has what the workers need"


def test_placement_warns_when_the_cluster_is_too_small_and_rejects_bad_numbers(capsys):
    assert _placement(cluster(CPU=2.0), RayOptions(workers=2, cpus_per_worker=1)) == (2, 1, 0.0)
    err = capsys.readouterr().err
    assert "need 2.25 CPUs; the Ray cluster has 2 now" in err, err
    _placement(cluster(CPU=8.0), RayOptions(workers=2, gpus_per_worker=1))
    assert "need 2 GPUs; the Ray cluster has 0 now" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--workers must be >= 1, got 0"):
        _placement(cluster(CPU=2.0), RayOptions(workers=0))
    with pytest.raises(ValueError, match="--gpus-per-worker must be >= 0"):
        _placement(cluster(CPU=2.0), RayOptions(gpus_per_worker=-1))


def test_a_worker_start_error_comes_back_as_its_one_line():
    wrapped = RuntimeError(
        "The actor died ... File amgjob.py ... ssseg.samv2.common.CLIError: box_nms_thresh must be ..."
    )
    error = _unwrap(wrapped)
    assert isinstance(error, CLIError) and str(error) == "a Ray worker could not start: box_nms_thresh must be ...", (
        error
    )
    other = RuntimeError("node lost")
    assert _unwrap(other) is other
