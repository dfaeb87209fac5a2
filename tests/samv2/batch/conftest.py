"""One real local Ray cluster per test session (2 CPUs, token auth off), shut down at the end."""

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60's token auth for local clusters, not needed here
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def files(folder) -> dict:
    """Relative ``/``-separated name -> bytes of every file under ``folder`` (to compare two output trees)."""
    found = {}
    for d, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(d, n)
            with open(path, "rb") as file:
                found[os.path.relpath(path, folder).replace(os.sep, "/")] = file.read()
    return found
