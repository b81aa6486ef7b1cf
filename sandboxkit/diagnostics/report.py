"""Findings and the Diagnosis that holds them, rendered as text, HTML and a DataFrame.

Pure data and formatting: the same Diagnosis prints in a terminal (``sandboxkit doctor``,
read like ``kubectl describe``), shows as a coloured table in a notebook, and becomes a
DataFrame for an agent to filter, so no caller re-words what the checks found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas

__all__ = ["SEVERITIES", "Diagnosis", "Finding", "Severity"]

Severity = Literal["error", "warning", "info", "ok"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info", "ok")
_COLOURS = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0", "ok": "#2e7d32"}


@dataclass(frozen=True)
class Finding:
    """One thing found: ``title`` says what happened, ``evidence`` quotes the cluster
    (event or status text, verbatim), ``fix`` is the command or manifest change to make,
    ``reason`` the Kubernetes reason it rests on (ErrImagePull, FailedCreate...)."""

    severity: Severity
    title: str
    evidence: str = ""
    fix: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")


@dataclass(frozen=True)
class Diagnosis:
    """The findings about ``target`` (a sandbox name, or "preflight") in ``namespace``."""

    target: str
    namespace: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """False when any finding is an error: the sandbox cannot (or did not) work."""
        return not any(f.severity == "error" for f in self.findings)

    def to_text(self) -> str:
        """One block per finding, indented like ``kubectl describe``."""
        verdict = "OK" if self.ok else "PROBLEMS FOUND"
        lines = [f"Diagnosis of {self.target} in namespace {self.namespace}: {verdict}"]
        for finding in self.findings:
            head = f"[{finding.severity.upper()}] {finding.title}"
            lines += ["", head + (f"  ({finding.reason})" if finding.reason else "")]
            for label, text in (("Evidence", finding.evidence), ("Fix", finding.fix)):
                if text:
                    body = text.splitlines()
                    lines.append(f"  {label + ':':<10}{body[0]}")
                    lines += [f"  {'':<10}{line}" for line in body[1:]]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        verdict = "OK" if self.ok else "problems found"
        rows = []
        for f in self.findings:
            colour = _COLOURS[f.severity]
            rows.append(
                f'<tr><td style="color:{colour};font-weight:bold">{escape(f.severity)}</td>'
                f"<td>{escape(f.title)}"
                + (f"<br><small>{escape(f.reason)}</small>" if f.reason else "")
                + f'</td><td><pre style="white-space:pre-wrap;margin:0">{escape(f.evidence)}'
                f'</pre></td><td><pre style="white-space:pre-wrap;margin:0">{escape(f.fix)}'
                "</pre></td></tr>")
        return (f"<div><b>Diagnosis of {escape(self.target)}</b> in namespace "
                f"<code>{escape(self.namespace)}</code>: {verdict}"
                "<table><thead><tr><th>severity</th><th>what happened</th><th>evidence</th>"
                f"<th>fix</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")

    def to_frame(self) -> pandas.DataFrame:
        """Columns severity, title, evidence, fix, reason; one row per finding."""
        import pandas

        columns = ["severity", "title", "evidence", "fix", "reason"]
        return pandas.DataFrame([[getattr(f, c) for c in columns] for f in self.findings],
                                columns=columns)
