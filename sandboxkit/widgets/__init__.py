"""Sandbox status for notebooks: pure HTML renderers and live panels fed by watches.

``import sandboxkit.widgets`` needs neither IPython nor ipywidgets: the renderers are plain
functions, and the panels import ipywidgets only when one is made (showing plain HTML
where it is missing). Panels take their status from a :class:`sandboxkit.feed.NamespaceFeed`
(by default the sandbox's own ``status_feed()``), never from a backend directly.
"""

from __future__ import annotations

from .panels import ListPanel, StatusPanel
from .render import TONE_COLOURS, render_list, render_notice, render_status, tone

__all__ = [
    "TONE_COLOURS",
    "ListPanel",
    "StatusPanel",
    "render_list",
    "render_notice",
    "render_status",
    "tone",
]
