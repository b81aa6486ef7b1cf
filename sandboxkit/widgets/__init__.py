"""Sandbox status for notebooks: pure HTML renderers and live panels fed by watches.

``import sandboxkit.widgets`` needs neither IPython nor ipywidgets: the renderers are plain
functions, and the panels import ipywidgets only when one is made (showing plain HTML
where it is missing). Panels are given a status source (:mod:`.sources`), or a sandbox or
namespace that :mod:`sandboxkit.sources` turns into one; they never import a backend, the
feed or diagnostics.
"""

from __future__ import annotations

from .panels import ListPanel, StatusPanel
from .render import TONE_COLOURS, render_list, render_notice, render_status, tone
from .sources import NamespaceSource, SandboxSource

__all__ = [
    "TONE_COLOURS",
    "ListPanel",
    "NamespaceSource",
    "SandboxSource",
    "StatusPanel",
    "render_list",
    "render_notice",
    "render_status",
    "tone",
]
