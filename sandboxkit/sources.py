"""The status sources widgets are fed with, made from a sandbox or a namespace.

Why here and not in :mod:`sandboxkit.widgets`: a source is where the feed (watches),
a backend's status read and teardown, and :func:`sandboxkit.diagnose` meet, and widgets
sit below all three (shared DESIGN.md: widgets -> models and a source passed in). This
module is their meeting point, one layer up, and tells the widgets on import how to make a
source from what a notebook writes (``StatusPanel(sb)``, ``ListPanel("ci")``).

Feeds stay shared: a sandbox's source uses its namespace's one feed
(:func:`sandboxkit.feed.sandbox_feed`), and a namespace's source *is* that feed, so any number of
panels on a namespace hold one set of watches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import SandboxStatus
from .widgets.sources import HTMLRepr, NamespaceSource, use_default_sources

if TYPE_CHECKING:
    from .backends.base import Sandbox

__all__ = ["SandboxStatusSource", "namespace_source", "sandbox_source"]


class SandboxStatusSource:
    """A :class:`~sandboxkit.widgets.SandboxSource` for ``sandbox``: live from ``feed``
    (default: the sandbox's namespace feed, None for a backend without one), actions
    by the sandbox itself and :func:`sandboxkit.diagnose`."""

    def __init__(self, sandbox: Sandbox, feed: NamespaceSource | None = None) -> None:
        self.sandbox = sandbox
        if feed is None:
            from .feed import sandbox_feed

            feed = sandbox_feed(sandbox)
        self.feed = feed

    def __repr__(self) -> str:
        return f"SandboxStatusSource({self.sandbox!r}, feed={self.feed!r})"

    @property
    def name(self) -> str:
        return self.sandbox.name

    def status(self) -> SandboxStatus:
        return self.sandbox.status()

    def diagnose(self) -> HTMLRepr:
        from .diagnostics import diagnose

        return diagnose(self.sandbox)

    def teardown(self) -> None:
        self.sandbox.teardown()


def sandbox_source(sandbox: Sandbox) -> SandboxStatusSource:
    """The source a :class:`~sandboxkit.widgets.StatusPanel` of ``sandbox`` follows."""
    return SandboxStatusSource(sandbox)


def namespace_source(namespace: str | None = None, connection: Any = None) -> NamespaceSource:
    """The shared feed of ``namespace`` (None: the connection's) on ``connection`` (None:
    connect as kubectl would): what a :class:`~sandboxkit.widgets.ListPanel` follows."""
    from .feed import feed_for

    return feed_for(connection, namespace)


use_default_sources(sandbox=sandbox_source, namespace=namespace_source)
