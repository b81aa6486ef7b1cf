"""``sandboxkit lab`` on a machine without a cluster: JupyterLab serves the notebook
directory with a devcluster behind it, and stopping lab stops both.

The server is awaited through its own output (the URL line), bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cluster_support import mentioning, no_cluster_env

SCRIPT = Path(sys.executable).with_name("sandboxkit")
START_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_until(stream: int, needle: str, timeout: float) -> str:
    """Output of ``stream`` (a file descriptor) up to the line containing ``needle``."""
    deadline = time.monotonic() + timeout
    seen = b""
    while needle.encode() not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([stream], [], [], remaining)[0]:
            raise AssertionError(f"no {needle!r} within {timeout:g}s:\n{seen.decode()}")
        chunk = os.read(stream, 65536)
        if not chunk:
            raise AssertionError(f"output ended before {needle!r}:\n{seen.decode()}")
        seen += chunk
    return seen.decode()


def test_lab_serves_the_notebooks_on_a_devcluster_and_stops_it(tmp_path: Path) -> None:
    env = no_cluster_env(tmp_path)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "hello.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    port = _free_port()
    # JupyterLab refuses root unless told; CI containers often run as root.
    root = ["--allow-root"] if os.geteuid() == 0 else []
    lab = subprocess.Popen([str(SCRIPT), "lab", str(notebooks), "--no-browser", "--port",
                            str(port), *root], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert lab.stderr is not None
        output = _read_until(lab.stderr.fileno(), f"http://127.0.0.1:{port}/lab?token=",
                             START_TIMEOUT)
        assert "sandboxkit lab: cluster devcluster at https://127.0.0.1:" in output
        assert "sandboxkit lab: pods run unprivileged (bubblewrap" in output
        assert mentioning(env["TMPDIR"]), "no devcluster process under TMPDIR"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=10) as answer:
            assert "version" in json.load(answer)
        token = output.split(f"http://127.0.0.1:{port}/lab?token=")[1].split()[0]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            listed = {item["name"] for item in json.load(answer)["content"]}
        assert listed == {"hello.ipynb"}
    finally:
        lab.send_signal(signal.SIGTERM)
        lab.communicate(timeout=60)
    assert lab.returncode == 0, "lab did not shut down cleanly on SIGTERM"
    assert not mentioning(env["TMPDIR"]), "devcluster left running after lab exited"
    assert not mentioning(str(notebooks)), "JupyterLab left running"


def test_lab_without_the_directory_says_so() -> None:
    done = subprocess.run([str(SCRIPT), "lab", "/nonexistent/notebooks"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: no notebook directory /nonexistent/notebooks")
