"""``ssseg-samv2 serve``: the real command in a subprocess (prints its URL, answers /api/health, stops on SIGINT),
and its argument checks, which run before the model is loaded."""

import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from ssseg.samv2 import cli
from ssseg.samv2.servecmd import is_loopback


def test_serve_subprocess_health_and_sigint(small_config, tmp_path):
    config, ckpt = small_config
    command = [sys.executable, "-m", "ssseg.samv2", "serve", "--config", config, "--ckpt", ckpt, "--port", "0"]
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)
        assert lines and lines[0].startswith("ssseg-samv2 serve: http://127.0.0.1:"), (
            f"no URL printed: {lines}, stderr: {process.stderr.read() if process.poll() is not None else '(running)'}"
        )
        url = lines[0].split()[2]
        health = httpx.get(url + "api/health", timeout=30)
        assert health.status_code == 200, f"health answered {health.status_code}: {health.text}"
        assert health.json()["status"] == "ok" and health.json()["model"] == "small.py", health.json()
        page = httpx.get(url, timeout=30)
        assert page.status_code in (200, 404) and page.status_code != 500, f"GET / answered {page.status_code}"
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        assert code == 0, f"exit code {code} after SIGINT; stderr: {process.stderr.read()[-2000:]}"
        assert "stopped" in process.stderr.read(), "no 'stopped' line on stderr"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--host", "0.0.0.0"], "--token"),
        (["--host", "192.168.1.5", "--port", "8001"], "--token"),
        (["--port", "70000"], "--port"),
        (["--data-root", "/nonexistent/folder"], "--data-root"),
        (["--max-sessions", "0"], "--max-sessions"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
        (["--session-ttl", "-1"], "--session-ttl"),
    ],
)
def test_bad_arguments_fail_before_loading(argv, message, capsys):
    code = cli.main(["serve", "--model", "not_a_model", *argv])
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code} for {argv}"
    assert message in err and "not_a_model" not in err, f"{argv}: the error is not about {message}: {err}"


def test_unknown_model_is_one_line(capsys):
    assert cli.main(["serve", "--model", "not_a_model"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'not_a_model'" in err and err.count("\n") == 1, err


def test_is_loopback():
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]), "loopback refused"
    assert not any(is_loopback(h) for h in ["0.0.0.0", "192.168.1.5", "::", "example.com"]), "non-loopback passed"


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, f"--help exited {exit_info.value.code}"
    for option in ["--model", "--config", "--ckpt", "--device", "--host", "--port", "--data-root", "--token"]:
        assert option in out, f"{option} missing from serve --help"
    for option in ["--max-upload-mb", "--session-ttl", "--max-sessions"]:
        assert option in out, f"{option} missing from serve --help"
