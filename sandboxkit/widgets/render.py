"""SandboxStatus -> HTML. Pure functions: the same markup fills a live widget, a static
notebook output (no widget frontend, nbconvert, GitHub) and a test's assertion.

Every value from the cluster is escaped: event messages and labels are text other people
(and images) control. Colours follow the state a person acts on: green running, amber on
its way (Pending, ContainerCreating), red stuck or failed (ImagePullBackOff, Unschedulable,
OOMKilled, Failed), grey finished or gone. Ages read as kubectl prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Any, Literal

from ..models import SandboxStatus, kube_age

__all__ = ["TONE_COLOURS", "Tone", "render_list", "render_notice", "render_status", "tone"]

Tone = Literal["ok", "pending", "error", "gone"]
TONE_COLOURS: dict[Tone, str] = {
    "ok": "#2e7d32",
    "pending": "#b26a00",
    "error": "#c62828",
    "gone": "#757575",
}
# Waiting reasons a healthy container passes through; any other one means it is stuck.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
# The line height is set because ipywidgets' HTML view inherits its 28px control height,
# which spreads every wrapped line of a table cell apart in JupyterLab.
_FONT = ("font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; "
         "line-height: 1.4;")
_CELL = "padding: 2px 8px; text-align: left; vertical-align: top;"
_NOWRAP = " white-space: nowrap;"  # names and ages read whole; only messages wrap


def tone(status: SandboxStatus) -> Tone:
    """What the status asks of its reader, as one of :data:`TONE_COLOURS`' keys."""
    if status.gone or status.deleting:
        return "gone"
    if status.job_phase == "Failed" or status.pod_phase == "Failed":
        return "error"
    if status.container_state == "waiting" and status.reason not in STARTING_REASONS | {""}:
        return "error"
    if status.container_state == "terminated":
        return "gone" if status.reason == "Completed" else "error"
    if status.reason == "Unschedulable":
        return "error"
    if status.job_phase == "Complete" or status.pod_phase == "Succeeded":
        return "gone"
    return "ok" if status.running else "pending"


def _badge(status: SandboxStatus) -> str:
    colour = TONE_COLOURS[tone(status)]
    return (f'<span class="sandboxkit-badge" data-tone="{tone(status)}" style="background: '
            f'{colour}; color: white; border-radius: 3px; padding: 1px 6px;">'
            f"{escape(status.display_status)}</span>")


def _rows(rows: Iterable[tuple[str, str]]) -> str:
    """Two-column table rows; values are HTML the caller already escaped."""
    return "".join(f'<tr><th style="{_CELL}">{escape(key)}</th><td style="{_CELL}">{value}'
                   "</td></tr>" for key, value in rows if value)


def _quantities(values: dict[str, str]) -> str:
    return ", ".join(f"{escape(k)} {escape(v)}" for k, v in sorted(values.items()))


def _details(status: SandboxStatus) -> list[tuple[str, str]]:
    job = escape(status.job_phase)
    counts = (f" (active {status.job_active}, succeeded {status.job_succeeded}, "
              f"failed {status.job_failed})")
    conditions = "; ".join(
        escape(f"{c['type']}={c['status']}" + (f" {c['reason']}" if c.get("reason") else "")
               + (f": {c['message']}" if c.get("message") else ""))
        for c in status.job_conditions)
    container = escape(status.container_state)
    if status.reason:
        container += f" &mdash; <b>{escape(status.reason)}</b>"
    if status.message:
        container += f": {escape(status.message)}"
    if status.exit_code is not None:
        container += f" (exit code {status.exit_code})"
    pod = escape(status.pod_name) + (f" ({escape(status.pod_phase)})" if status.pod_phase
                                     else "")
    resources = " / ".join(
        f"{label} {_quantities(values)}"
        for label, values in (("requests", status.requests), ("limits", status.limits))
        if values)
    return [
        ("Job", job + ("" if status.gone else counts)),
        ("Conditions", conditions),
        ("Pod", pod if status.pod_name else ("" if status.gone else "not created yet")),
        ("Container", container),
        ("Node", escape(status.node)),
        ("Pod IP", escape(status.pod_ip)),
        ("Restarts", str(status.restarts) if status.pod_name else ""),
        ("Image", escape(status.image)),
        ("Resources", resources),
        ("Deletion", "in progress" if status.deleting else ""),
    ]


def _events(events: Iterable[dict[str, Any]], now: datetime | None) -> str:
    rows = []
    for event in reversed(tuple(events)):  # newest first, as a person reads them
        warning = event.get("type") == "Warning"
        style = _CELL + (f" color: {TONE_COLOURS['error']};" if warning else "")
        count = int(event.get("count") or 1)
        age = kube_age(str(event.get("time") or ""), now)
        cells = (
            event.get("type", ""), event.get("reason", ""),
            f"{age} (x{count})" if count > 1 else age,
            event.get("object", ""), event.get("message", ""),
        )
        *fixed, message = cells
        rows.append("<tr>" + "".join(f'<td style="{style}{_NOWRAP}">{escape(str(c))}</td>'
                                     for c in fixed)
                    + f'<td style="{style}">{escape(str(message))}</td></tr>')
    if not rows:
        return ""
    head = "".join(f'<th style="{_CELL}">{h}</th>'
                   for h in ("Type", "Reason", "Age", "Object", "Message"))
    return (f'<table class="sandboxkit-events"><caption style="text-align: left;">'
            f"Latest events</caption><tr>{head}</tr>{''.join(rows)}</table>")


def render_status(status: SandboxStatus, *, now: datetime | None = None) -> str:
    """One sandbox: a coloured state badge, Job and pod details, the latest events."""
    colour = TONE_COLOURS[tone(status)]
    age = "" if status.gone else f" &middot; age {escape(status.age(now))}"
    header = (f"<div><b>{escape(status.name)}</b> {_badge(status)} "
              f'<span style="color: {TONE_COLOURS["gone"]};">namespace '
              f"{escape(status.namespace)}{age}</span></div>")
    return (f'<div class="sandboxkit-status" data-tone="{tone(status)}" style="{_FONT} '
            f'border-left: 4px solid {colour}; padding: 4px 8px;">{header}'
            f'<table class="sandboxkit-details">{_rows(_details(status))}</table>'
            f"{_events(status.events, now)}</div>")


def render_list(statuses: Iterable[SandboxStatus], *, namespace: str | None = None,
                now: datetime | None = None) -> str:
    """Every sandbox as a row, as ``kubectl get`` would list them, plus the latest event."""
    statuses = list(statuses)
    where = f" in namespace {escape(namespace)}" if namespace else ""
    if not statuses:
        return f'<div class="sandboxkit-list" style="{_FONT}">No sandboxes{where}.</div>'
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in
                   ("Name", "Status", "Restarts", "Age", "Node", "Image", "Latest event"))
    rows = []
    for status in statuses:
        latest = status.events[-1] if status.events else {}
        event = (f"{latest.get('reason', '')}: {latest.get('message', '')}" if latest else "")
        cells = [escape(status.name), _badge(status), str(status.restarts),
                 escape(status.age(now)), escape(status.node), escape(status.image),
                 escape(event)]
        rows.append(f'<tr data-sandbox="{escape(status.name)}" data-tone="{tone(status)}">'
                    + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
    return (f'<div class="sandboxkit-list" style="{_FONT}"><table><caption style="text-align:'
            f' left;">{len(statuses)} sandbox{"es" if len(statuses) != 1 else ""}{where}'
            f"</caption><tr>{head}</tr>{''.join(rows)}</table></div>")


def render_notice(message: str, tone_: Tone = "error") -> str:
    """A one-line note under a panel (a watch failing, diagnostics unavailable)."""
    return (f'<div class="sandboxkit-notice" style="{_FONT} color: {TONE_COLOURS[tone_]};">'
            f"{escape(message)}</div>")
