"""The small model (SAM 2.1 tiny at 256, random weights) exported once per test session, by the CLI."""

import time

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory, small_config):
    """``(folder, seconds)`` of ``ssseg-samv2 export --config small.py --ckpt small.pt``."""
    from ssseg.samv2.cli import main

    config, ckpt = small_config
    folder = tmp_path_factory.mktemp("onnx") / "tiny256"
    start = time.perf_counter()
    assert main(["export", "--config", config, "--ckpt", ckpt, "--out", str(folder)]) == 0, "export failed"
    return str(folder), time.perf_counter() - start
