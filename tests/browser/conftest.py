"""JupyterLab and a headless Chromium for the tests marked ``browser``.

Why a real browser: the notebook surface is HTML and ipywidgets rendered by JupyterLab's
frontend, which no kernel-side test sees (sanitising, widget views, stream styling, the
theme's colours). The browser is Debian's ``chromium`` driven by Playwright's Python
package; Playwright's own browser downloads are never used, so nothing but the apt package
is needed. Without either one the tests skip, saying which is missing.

JupyterLab runs from this interpreter with ``KUBECONFIG`` pointing at the session's
cluster, so a notebook's kernel talks to the same cluster the fixtures check for leaks.
Its config, data, runtime and IPython directories are private to the session: a developer's
theme, kernelspecs or startup files never change what the test sees.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "chromium"  # Debian's package and binary name (apt-get install chromium)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# JupyterLab answers within seconds; the bound only turns a hang into a readable failure.
LAB_START_TIMEOUT = 60.0
# The address JupyterLab logs once it listens (it picks the port: --port=0).
_LISTENING = re.compile(r"(http://127\.0\.0\.1:\d+/)lab\b")


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    if shutil.which(CHROMIUM) is None:
        return f"no {CHROMIUM} executable on PATH (apt-get install {CHROMIUM})"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``browser``, and skip them before any fixture starts a
    cluster or JupyterLab when the browser cannot run."""
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    reason = _missing() if ours else None
    for item in ours:
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it serves, how to log in, which directory it shows."""

    url: str
    token: str
    root: Path

    def page_url(self, path: str) -> str:
        """A browser URL that logs in with the token (JupyterLab then sets a cookie)."""
        return f"{self.url}{path}?token={self.token}"

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API (``/api/...``); the parsed JSON body, or None."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method,
            headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        """Shut every kernel down gracefully: each runs its exit handlers, so sandboxkit
        deletes the sandboxes it started (what closing a notebook's kernel does)."""
        for kernel in self.api("GET", "api/kernels"):
            self.api("DELETE", f"api/kernels/{kernel['id']}")


def _wait_listening(process: subprocess.Popen[str], token: str) -> str:
    """Read JupyterLab's log until it says where it listens; keep draining it afterwards
    (a full pipe would block the server). Fails with the log, token redacted."""
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.replace(token, "<token>"))
            match = _LISTENING.search(line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()  # the server exited

    threading.Thread(target=read, name="jupyterlab-log", daemon=True).start()
    if not ready.wait(LAB_START_TIMEOUT) or not found:
        process.kill()
        pytest.fail("JupyterLab did not start within "
                    f"{LAB_START_TIMEOUT:g}s:\n{''.join(lines[-40:])}")
    return found[0]


def _wait_answering(lab: Lab, process: subprocess.Popen[str]) -> None:
    """Until ``/api`` answers. JupyterLab logs its URL one event-loop turn before it binds
    the port, so the first connections may be refused: retried briefly, within a bound."""
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while True:
        try:
            lab.api("GET", "api")
            return
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or process.poll() is not None \
                    or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.fixture(scope="module")
def jupyterlab(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab from this venv on a free port, its kernels on the session's cluster."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    root.mkdir()
    token = secrets.token_hex(24)
    # No "Would you like to get notified about official Jupyter news?" toast on the page.
    notification = base / "config/lab/user-settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "KUBECONFIG": str(kubeconfig),
           "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_DATA_DIR": str(base / "data"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "IPYTHONDIR": str(base / "ipython")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", "--port=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
         # nothing that reaches the internet: news, update checks, the PyPI extension list
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    try:
        lab = Lab(_wait_listening(process, token), token, root)
        _wait_answering(lab, process)
        yield lab
    finally:
        # SIGTERM: the server shuts its kernels down (their exit handlers run), then exits.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (a fresh profile per launch).

    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running
    on the main thread until it stops, and later tests call ``asyncio.run()``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A new browser page in its own context (cookies, storage), closed afterwards."""
    context = chromium.new_context(viewport={"width": 1280, "height": 1300})
    try:
        yield context.new_page()
    finally:
        context.close()
