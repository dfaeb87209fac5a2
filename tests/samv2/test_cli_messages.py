"""Errors speak the language of where they are raised to: flags on the command line, arguments in Python."""

import urllib.error

import numpy as np
import pytest
from PIL import Image

from ssseg.modules.models.segmentors.samv2 import buildsamv2
from ssseg.modules.models.segmentors.samv2 import checkpoint as ckpt_module
from ssseg.modules.models.segmentors.samv2.checkpoint import CheckpointDownloadError
from ssseg.samv2.cli import main


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network and an empty checkpoint cache."""

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError(OSError("Network is unreachable"))

    monkeypatch.setattr(ckpt_module.urllib.request, "urlopen", unreachable)
    monkeypatch.setenv("SSSEG_CACHE_DIR", str(tmp_path / "cache"))
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(image)
    return tmp_path, str(image)


def test_offline_download_on_the_command_line_says_ckpt_flag(offline, capsys):
    folder, image = offline
    code = main(["image", image, "--point", "5,5", "--model", "sam2.1_hiera_tiny", "--out", str(folder / "out")])
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert "--ckpt /path/to/sam2.1_hiera_tiny.pt" in err, f"the CLI message does not name --ckpt: {err}"
    assert "ckptpath" not in err, f"the CLI message speaks Python (ckptpath=): {err}"
    assert "Network is unreachable" in err and "Traceback" not in err, err


def test_offline_download_in_python_says_ckptpath(offline):
    with pytest.raises(CheckpointDownloadError) as info:
        buildsamv2("sam2.1_hiera_tiny")
    message = str(info.value)
    assert "ckptpath='/path/to/sam2.1_hiera_tiny.pt'" in message, (
        f"the Python message does not say ckptpath=: {message}"
    )
    assert "--ckpt" not in message, f"the Python message speaks CLI flags: {message}"
    assert info.value.url.endswith("sam2.1_hiera_tiny.pt") and info.value.reason == "Network is unreachable"


def test_config_without_checkpoint_says_ckpt_flag(offline, capsys, tmp_path):
    folder, image = offline
    config = tmp_path / "nourl.py"
    config.write_text("from ssseg.configs.samv2.sam21_hiera_tiny import SAMV2_CFG\n")
    code = main(["image", image, "--point", "5,5", "--config", str(config), "--out", str(folder / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "pass --ckpt PATH" in err and "ckptpath" not in err, f"exit {code}, stderr: {err}"


def test_amg_option_errors_name_the_flag(small_config, tmp_path, capsys):
    config, ckpt = small_config
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(image)
    args = ["amg", str(image), "--out", str(tmp_path / "out"), "--config", config, "--ckpt", ckpt]
    code = main([*args, "--points-per-side", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--points-per-side" in err, f"exit {code}, stderr: {err}"
    assert "points_per_side" not in err, f"the CLI message speaks Python argument names: {err}"
