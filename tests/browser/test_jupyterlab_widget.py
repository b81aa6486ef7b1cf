"""The notebook surface in a real JupyterLab, read the way a person reads it.

A notebook brings a sandbox up, runs a command that writes to stdout and stderr and exits
non-zero, and shows ``%sandbox_status``; Chromium opens it in JupyterLab and runs all
cells from the Run menu. The test then reads the rendered page: the live status widget
(an ipywidgets view with its buttons, not the HTML fallback) showing the sandbox Running,
the command's stdout, its stderr styled as JupyterLab styles stderr, and the exit code.
``%sandbox_down`` typed into a new cell deletes the sandbox, and the widget, fed by its
watch, turns to gone. Screenshots of the widget and the page land in the test's tmp_path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kubernetes import client

SERVICE_ACCOUNT = "ci-fixer-sandbox"
IMAGE = "python:3.11-slim"
SANDBOX = "browser-check"
STDOUT_LINE = f"hello from {SANDBOX}"
STDERR_LINE = "warning: something went wrong"
# Generous for a real cluster pulling the image; the devcluster starts it in a second.
STARTUP_TIMEOUT = 180.0
STDOUT_MIME = "application/vnd.jupyter.stdout"
STDERR_MIME = "application/vnd.jupyter.stderr"
KERNEL_IDLE = re.compile(r" \| Idle$")


def write_notebook(path: Path, cells: list[str]) -> None:
    """An nbformat 4 notebook of code cells for the session's Python kernel."""
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {},
                   "execution_count": None, "outputs": [], "source": source}
                  for i, source in enumerate(cells)],
    }
    path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


def run_menu(page: Any, item: str) -> None:
    """Click Run > ``item`` in JupyterLab's menu bar, as a person would."""
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def test_status_widget_and_outputs_read_well_in_jupyterlab(
        jupyterlab: Any, page: Any, namespace: str, api_client: Any,
        tmp_path: Path) -> None:
    from playwright.sync_api import expect

    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    write_notebook(jupyterlab.root / "status.ipynb", [
        "%load_ext sandboxkit\n"
        f"%config SandboxMagics.namespace = {namespace!r}\n"
        f"%config SandboxMagics.image = {IMAGE!r}\n"
        "%config SandboxMagics.cpu = '10m:1'\n"
        "%config SandboxMagics.memory = '16Mi:2Gi'\n"
        f"%config SandboxMagics.startup_timeout = {STARTUP_TIMEOUT}",
        f"%sandbox_up {SANDBOX}",
        f"%%sandbox_exec\necho '{STDOUT_LINE}'\necho '{STDERR_LINE}' >&2\nexit 3",
        "%sandbox_status",
    ])
    try:
        page.goto(jupyterlab.page_url("lab/tree/status.ipynb"))
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        expect(cells).to_have_count(4, timeout=30_000)
        # Run All before the kernel is connected does nothing: wait for the status bar's
        # "Python 3 (ipykernel) | Idle" (it reads Initializing, Connecting, Unknown before).
        expect(page.get_by_role("contentinfo").get_by_role("button", name=KERNEL_IDLE)
               ).to_be_visible(timeout=60_000)
        run_menu(page, "Run All Cells")

        panel = cells.nth(3).locator(".jp-OutputArea-output")
        widget = panel.locator(".sandboxkit-status")
        expect(widget.locator(".sandboxkit-badge")).to_have_text(
            "Running", timeout=STARTUP_TIMEOUT * 1000)
        expect(widget).to_have_attribute("data-tone", "ok")
        for text in (SANDBOX, f"namespace {namespace}", IMAGE, "running"):
            expect(widget).to_contain_text(text)
        # The ipywidgets view (JupyterLab's widget manager), not the static HTML fallback.
        for button in ("Refresh", "Diagnose", "Tear down"):
            expect(panel.get_by_role("button", name=button)).to_be_visible()

        expect(cells.nth(1)).to_contain_text(f"pod {SANDBOX}")  # startup progress lines
        outputs = cells.nth(2).locator(".jp-OutputArea-output")
        stdout = outputs.and_(page.locator(f'[data-mime-type="{STDOUT_MIME}"]'))
        stderr = outputs.and_(page.locator(f'[data-mime-type="{STDERR_MIME}"]'))
        expect(stdout).to_have_text(STDOUT_LINE)
        # stdout and stderr are separate streams, so their relative order is not fixed:
        # JupyterLab shows one stderr area, or two when stdout arrived in between.
        expect(stderr.filter(has_text=STDERR_LINE)).to_have_count(1)
        expect(stderr.filter(has_text="exit code 3")).to_have_count(1)
        # Styled apart, as JupyterLab styles stderr (a tinted background).
        assert background(stderr.first) != background(stdout)

        widget_png, page_png = tmp_path / "status-widget.png", tmp_path / "page.png"
        panel.screenshot(path=widget_png)
        page.screenshot(path=page_png)
        print(f"screenshots: {widget_png} {page_png}")

        # %sandbox_down in a new cell; the panel, fed by its watch, follows to gone.
        cells.nth(3).locator(".jp-InputPrompt").click()
        page.keyboard.press("b")
        expect(cells).to_have_count(5)
        page.keyboard.press("Enter")
        page.keyboard.type("%sandbox_down")
        page.keyboard.press("Shift+Enter")
        expect(cells.nth(4)).to_contain_text(f"deleted {SANDBOX}", timeout=60_000)
        expect(widget).to_have_attribute("data-tone", "gone")
    finally:
        # Kernel exit deletes whatever a failed run left (sandboxkit's exit handler).
        jupyterlab.shut_down_kernels()


def background(locator: Any) -> str:
    """The element's computed background colour, as the browser paints it."""
    return str(locator.evaluate("element => getComputedStyle(element).backgroundColor"))
