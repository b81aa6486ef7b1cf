"""The pure HTML renderers: escaping, a colour per state, the events table, the list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from sandboxkit.models import SandboxStatus
from sandboxkit.widgets import TONE_COLOURS, render_list, render_status, tone

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def _ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(**fields: Any) -> SandboxStatus:
    base: dict[str, Any] = dict(
        name="sandbox-1", namespace="ci", job_phase="Active", pod_name="sandbox-1-abcde",
        pod_phase="Running", container_state="running", node="node-1", pod_ip="10.0.0.7",
        image="python:3.11", created=_ago(minutes=5), job_active=1,
        requests={"cpu": "250m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "2Gi"})
    return SandboxStatus(**{**base, **fields})


class _Tables(HTMLParser):
    """Rows of cell texts per table class, and the data-tone of each element having one."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.tones: list[str] = []
        self.cell_styles: list[str] = []
        self._table = ""
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("data-tone"):
            self.tones.append(str(values["data-tone"]))
        if tag == "table":
            self._table = values.get("class") or "table"
            self.tables.setdefault(self._table, [])
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td" and self._table == "sandboxkit-events":
                self.cell_styles.append(values.get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_cluster_text_is_escaped() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    status = _status(name="a<b>", message=hostile, reason="ImagePullBackOff",
                     container_state="waiting", labels={"x": hostile},
                     events=({"type": "Warning", "reason": "Failed", "message": hostile,
                              "object": "Pod/<p>", "count": 1, "time": _ago(seconds=3)},))
    for html in (render_status(status, now=NOW), render_list([status], now=NOW)):
        assert "<img" not in html and "<b>a<b>" not in html
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "a&lt;b&gt;" in render_status(status, now=NOW)


# The colours a person reads: green running, amber on its way, red stuck or failed, grey
# finished or gone.
@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "ok"),
    ({"pod_name": "", "pod_phase": "", "container_state": ""}, "pending"),
    ({"pod_phase": "Pending", "container_state": "waiting", "reason": "ContainerCreating"},
     "pending"),
    ({"pod_phase": "Pending", "container_state": "waiting", "reason": "ImagePullBackOff"},
     "error"),
    ({"pod_phase": "Pending", "container_state": "waiting", "reason": "ErrImagePull"}, "error"),
    ({"pod_phase": "Pending", "container_state": "", "reason": "Unschedulable"}, "error"),
    ({"pod_phase": "Failed", "container_state": "terminated", "reason": "OOMKilled",
      "exit_code": 137}, "error"),
    ({"job_phase": "Failed", "pod_name": "", "pod_phase": "", "container_state": ""}, "error"),
    ({"job_phase": "Deleting", "deleting": True}, "gone"),
    ({"job_phase": "Missing", "pod_name": "", "pod_phase": "", "container_state": ""}, "gone"),
    ({"job_phase": "Complete", "pod_phase": "Succeeded", "container_state": "terminated",
      "reason": "Completed", "exit_code": 0}, "gone"),
])
def test_each_state_has_its_colour(fields: dict[str, Any], expected: str) -> None:
    status = _status(**fields)
    assert tone(status) == expected
    html = render_status(status, now=NOW)
    parsed = _Tables(html)
    assert set(parsed.tones) == {expected}
    assert f"border-left: 4px solid {TONE_COLOURS[expected]}" in html
    assert f"background: {TONE_COLOURS[expected]}" in html  # the badge
    assert status.display_status in html
    list_html = render_list([status], now=NOW)
    assert set(_Tables(list_html).tones) == {expected}


def test_colours_are_distinct() -> None:
    assert len(set(TONE_COLOURS.values())) == len(TONE_COLOURS)


def test_details_show_what_a_person_debugs_with() -> None:
    status = _status(pod_phase="Pending", container_state="waiting",
                     reason="ImagePullBackOff", message='Back-off pulling image "nope:1"',
                     restarts=2, job_conditions=({"type": "Failed", "status": "True",
                                                  "reason": "DeadlineExceeded",
                                                  "message": "too long"},))
    rows = dict((r[0], r[1]) for r in _Tables(render_status(status, now=NOW))
                .tables["sandboxkit-details"])
    assert rows["Job"] == "Active (active 1, succeeded 0, failed 0)"
    assert rows["Conditions"] == "Failed=True DeadlineExceeded: too long"
    assert rows["Pod"] == f"{status.pod_name} (Pending)"
    assert rows["Container"] == f"waiting — ImagePullBackOff: {status.message}"
    assert (rows["Node"], rows["Pod IP"], rows["Restarts"]) == ("node-1", "10.0.0.7", "2")
    assert rows["Resources"] == "requests cpu 250m, memory 512Mi / limits cpu 1, memory 2Gi"
    assert "Deletion" not in rows
    header = render_status(status, now=NOW).split("</div>")[0]
    assert "age 5m" in header


def test_events_table_newest_first_with_ages_counts_and_warnings() -> None:
    events = (
        {"type": "Normal", "reason": "Scheduled", "message": "assigned ci/p to node-1",
         "object": "Pod/p", "count": 1, "time": _ago(seconds=90)},
        {"type": "Warning", "reason": "Failed", "message": "ErrImagePull",
         "object": "Pod/p", "count": 3, "time": _ago(seconds=20)},
    )
    parsed = _Tables(render_status(_status(events=events), now=NOW))
    header, *rows = parsed.tables["sandboxkit-events"]
    assert header == ["Type", "Reason", "Age", "Object", "Message"]
    assert rows == [["Warning", "Failed", "20s (x3)", "Pod/p", "ErrImagePull"],
                    ["Normal", "Scheduled", "90s", "Pod/p", "assigned ci/p to node-1"]]
    warning_styles, normal_styles = parsed.cell_styles[:5], parsed.cell_styles[5:]
    assert all(TONE_COLOURS["error"] in style for style in warning_styles)
    assert not any(TONE_COLOURS["error"] in style for style in normal_styles)


def test_no_events_no_table() -> None:
    assert "sandboxkit-events" not in render_status(_status(), now=NOW)


def test_list_has_a_row_per_sandbox() -> None:
    statuses = [
        _status(),
        _status(name="sandbox-2", pod_phase="Pending", container_state="waiting",
                reason="ImagePullBackOff", created=_ago(hours=3, minutes=5), restarts=0,
                events=({"type": "Warning", "reason": "Failed", "message": "no such image",
                         "object": "Pod/p", "count": 1, "time": _ago(seconds=5)},)),
    ]
    parsed = _Tables(render_list(statuses, namespace="ci", now=NOW))
    header, *rows = parsed.tables["table"]
    assert header == ["Name", "Status", "Restarts", "Age", "Node", "Image", "Latest event"]
    assert rows == [
        ["sandbox-1", "Running", "0", "5m", "node-1", "python:3.11", ""],
        ["sandbox-2", "ImagePullBackOff", "0", "3h5m", "node-1", "python:3.11",
         "Failed: no such image"],
    ]
    assert parsed.tones == ["ok", "ok", "error", "error"]  # row and badge of each


def test_empty_list_says_so() -> None:
    html = render_list([], namespace="ci")
    assert "No sandboxes in namespace ci." in html
