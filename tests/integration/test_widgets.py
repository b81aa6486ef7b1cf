"""Status panels against a real API server: the widget's model (its HTML value and
``.status``) follows real changes, panels share one feed, closing leaves no thread, the
buttons act, and without ipywidgets the same panels display as HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from feed_support import feed_threads
from sandbox_support import MakeSandbox
from workload_support import TIMEOUT

from sandboxkit.widgets import TONE_COLOURS, ListPanel, StatusPanel, tone


def _wait_until(panel: StatusPanel | ListPanel, predicate: Callable[[], bool]) -> None:
    """Block until ``predicate`` holds, re-checked whenever the widget's HTML changes."""
    reached = threading.Event()
    view = panel.widget.children[0]

    def check(_change: object = None) -> None:
        if predicate():
            reached.set()

    view.observe(check, "value")
    try:
        check()
        assert reached.wait(TIMEOUT), panel.html
    finally:
        view.unobserve(check, "value")


def test_panel_follows_the_sandbox_until_it_is_gone(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox().init()
    panel = StatusPanel(sandbox)
    try:
        assert panel.status is not None and panel.status.running  # synced on construction
        view = panel.widget.children[0]
        assert view.value in panel.html
        assert 'data-tone="ok"' in view.value and TONE_COLOURS["ok"] in view.value
        assert sandbox.pod_name in view.value
        assert panel._repr_mimebundle_()["text/html"] == panel.html

        panel.buttons["Tear down"].click()  # as a person clicking it
        assert panel.buttons["Tear down"].disabled
        _wait_until(panel, lambda: panel.status is not None and panel.status.gone)
        assert "Gone" in view.value and TONE_COLOURS["gone"] in view.value
        assert tone(panel.status) == "gone"
        # Gone, the panel let go of its subscription: it was the feed's only one.
        for thread in feed_threads(sandbox.namespace):
            thread.join(TIMEOUT)
        assert feed_threads(sandbox.namespace) == []
    finally:
        panel.close()


def test_panels_and_a_list_share_one_feed_and_leave_no_thread(
    make_sandbox: MakeSandbox, namespace: str,
) -> None:
    first, second = make_sandbox().init(), make_sandbox().init()
    before = set(threading.enumerate())
    panels = [StatusPanel(first), StatusPanel(second)]
    listing = ListPanel(namespace, connection=first.connection)
    try:
        assert panels[0].feed is panels[1].feed is listing.feed
        assert len(feed_threads(namespace)) == 3
        assert [s.name for s in listing.statuses] == sorted([first.name, second.name])
        assert all(f'data-sandbox="{s.name}"' in listing.html for s in (first, second))

        second.teardown()
        _wait_until(listing, lambda: [s.name for s in listing.statuses] == [first.name])
        _wait_until(panels[1], lambda: panels[1].status is not None and panels[1].status.gone)
        assert panels[0].status is not None and panels[0].status.running
    finally:
        for view in (*panels, listing):
            view.close()
    assert feed_threads(namespace) == []
    assert set(threading.enumerate()) - before == set()
    assert panels[0].widget.comm is None  # the ipywidget closed too


def test_refresh_button(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox().init()
    panel = StatusPanel(sandbox)
    try:
        panel._release()  # no feed from here on: only Refresh can change the panel
        sandbox.teardown()
        assert panel.status is not None and panel.status.running
        panel.buttons["Refresh"].click()
        assert panel.status.job_phase in ("Deleting", "Missing")
        assert panel.status.display_status in panel.widget.children[0].value
    finally:
        panel.close()


def test_diagnose_shows_the_diagnosis(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox().init()
    panel = StatusPanel(sandbox)
    try:
        panel.buttons["Diagnose"].click()
        note = panel.widget.children[2].value
        assert "sandboxkit-notice" not in note, note  # a diagnosis, not an error
        assert sandbox.name in note
        assert panel.html.endswith(note)  # shown below the status
    finally:
        panel.close()


_HIDDEN = """
import json, sys
sys.modules["ipywidgets"] = None  # as if not installed
sys.modules["IPython"] = None
import sandboxkit.widgets
from sandboxkit import KubernetesSandbox
from sandboxkit.widgets import ListPanel, StatusPanel
name, namespace, kubeconfig = sys.argv[1:4]
sandbox = KubernetesSandbox.attach(name, namespace, kubeconfig=kubeconfig)
panel = StatusPanel(sandbox)
listing = ListPanel(namespace, connection=sandbox.connection)
result = {
    "widget": [panel.widget, listing.widget],
    "status": panel.status.display_status,
    "html": panel._repr_html_(),
    "bundle": sorted(panel._repr_mimebundle_()),
    "list": listing._repr_html_(),
}
panel.close(), listing.close()
result["loaded"] = [m for m in ("ipywidgets", "IPython") if sys.modules.get(m) is not None]
print(json.dumps(result, default=repr))
"""


def test_html_fallback_without_ipywidgets(make_sandbox: MakeSandbox, kubeconfig: Path,
                                          namespace: str) -> None:
    sandbox = make_sandbox().init()
    done = subprocess.run(
        [sys.executable, "-c", _HIDDEN, sandbox.name, namespace, str(kubeconfig)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["widget"] == [None, None] and result["loaded"] == []
    assert result["status"] == "Running"
    assert sandbox.name in result["html"] and 'data-tone="ok"' in result["html"]
    assert result["bundle"] == ["text/html", "text/plain"]
    assert f'data-sandbox="{sandbox.name}"' in result["list"]
