"""Live panels for notebooks: one sandbox (:class:`StatusPanel`) or a namespace
(:class:`ListPanel`), updated by a status source's subscription rather than by polling
(see :mod:`.sources`: the panels are given their source, they never build feeds, read a
backend or diagnose themselves).

Why wrappers around an ipywidgets ``VBox`` (``.widget``) and not subclasses: the same
object must display where ipywidgets is not installed or no widget frontend exists
(nbconvert, nbmake, GitHub). Displayed, a panel offers the widget view and the same HTML
beside it; without ipywidgets it is only that HTML. ipywidgets is imported when a panel is
made, never at import time.

Source callbacks arrive on the source's thread (a feed's watch thread): a panel only
re-renders a string and sets one widget value there. Close a panel (:meth:`close`) when
done with it: its subscription keeps the namespace's watches running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from .. import models
from .render import render_list, render_notice, render_status
from .sources import (
    NamespaceSource,
    SandboxSource,
    Subscription,
    namespace_source_for,
    sandbox_source_for,
)

__all__ = ["ListPanel", "StatusPanel"]

# How long a new panel waits for its feed's first lists before showing "waiting".
SYNC_TIMEOUT = 10.0


def _ipywidgets() -> ModuleType | None:
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


class _Panel:
    """The HTML (main part and a note below it), the optional widget, display, close."""

    feed: NamespaceSource | None = None

    def __init__(self, buttons: Sequence[tuple[str, Callable[[], None]]]) -> None:
        self._lock = threading.RLock()
        self._main = render_notice("Waiting for the cluster...", "pending")
        self._note = ""
        self._subscription: Subscription | None = None
        self.widget: Any = None  # an ipywidgets.VBox when ipywidgets is importable
        self.buttons: dict[str, Any] = {}  # ipywidgets.Button by label; {} without them
        widgets = _ipywidgets()
        if widgets is None:
            return
        self._main_view = widgets.HTML(value=self._main)
        self._note_view = widgets.HTML()
        for label, action in buttons:
            button = widgets.Button(description=label)
            button.on_click(lambda _button, action=action: action())
            self.buttons[label] = button
        self.widget = widgets.VBox(
            [self._main_view, widgets.HBox(list(self.buttons.values())), self._note_view])

    @property
    def html(self) -> str:
        """What the panel shows, as HTML (the widget's value plus any note under it)."""
        with self._lock:
            return self._main + self._note

    def _show(self, main: str | None = None, note: str | None = None) -> None:
        with self._lock:
            if main is not None:
                self._main = main
                if self.widget is not None:
                    self._main_view.value = main
            if note is not None:
                self._note = note
                if self.widget is not None:
                    self._note_view.value = note

    def _feed_notice(self) -> str:
        """A note while one of the feed's watches fails (say, RBAC without ``watch
        events``): the panel is live but incomplete, and says why."""
        error = self.feed.error if self.feed is not None else None
        return render_notice(f"Live view incomplete: {error}", "pending") if error else ""

    def _disable(self, *labels: str) -> None:
        for label in labels:
            if label in self.buttons:
                self.buttons[label].disabled = True

    def _release(self) -> None:
        with self._lock:
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()

    def close(self) -> None:
        """Stop following the feed and close the widget; the last view of a namespace
        closing stops its watches."""
        self._release()
        if self.widget is not None:
            for view in (*self.buttons.values(), *self.widget.children, self.widget):
                view.close()

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = (self.widget._repr_mimebundle_() if self.widget is not None else None) or {}
        return {**bundle, "text/plain": repr(self), "text/html": self.html}


class StatusPanel(_Panel):
    """A sandbox's live status with Refresh, Diagnose and Tear down buttons.

    ``sandbox`` is a :class:`~.sources.SandboxSource`, or a sandbox, which the default
    factory turns into one (:class:`sandboxkit.sources.SandboxStatusSource`: its feed is
    the sandbox's namespace's, shared by every panel on it). A source without a feed
    (another backend) is shown from its :meth:`~.sources.SandboxSource.status` and updated
    by Refresh. Once the sandbox is gone (its Job deleted) the panel says so and lets go of
    its subscription.
    """

    def __init__(self, sandbox: SandboxSource | Any, *,
                 sync_timeout: float = SYNC_TIMEOUT) -> None:
        super().__init__([("Refresh", self.refresh), ("Diagnose", self.diagnose),
                          ("Tear down", self.teardown)])
        self.source = source = sandbox_source_for(sandbox)
        self.status: models.SandboxStatus | None = None
        self._seen = False  # the sandbox has existed since this panel began
        self.feed = feed = source.feed
        if feed is None:
            self.refresh()
            return
        self._subscription = feed.subscribe(self._update, source.name)
        if not feed.wait_synced(sync_timeout):
            self._show(note=render_notice(_waiting(feed, sync_timeout)))

    def __repr__(self) -> str:
        state = self.status.display_status if self.status else "waiting"
        return f"<StatusPanel {self.source.name}: {state}>"

    def _update(self, status: models.SandboxStatus) -> None:
        with self._lock:
            self.status = status
            gone = status.gone and self._seen
            self._seen = self._seen or not status.gone
            self._show(render_status(status) + self._feed_notice())
        if gone:
            self._disable("Tear down")
            self._release()

    def refresh(self) -> None:
        """Read the status now (and re-age the panel) instead of waiting for a change."""
        try:
            self._update(self.source.status())
        except Exception as exc:
            self._show(note=render_notice(f"Refresh failed: {exc}"))

    def diagnose(self) -> None:
        """Diagnose the sandbox (the source's :meth:`~.sources.SandboxSource.diagnose`) and
        show the findings below."""
        self._show(note=render_notice("Diagnosing...", "pending"))
        try:
            diagnosis = self.source.diagnose()
        except Exception as exc:
            self._show(note=render_notice(f"Diagnose failed: {exc}"))
            return
        self._show(note=diagnosis._repr_html_())

    def teardown(self) -> None:
        """Delete the sandbox (not waiting); the panel follows it to gone."""
        self._disable("Tear down")
        try:
            self.source.teardown()
        except Exception as exc:
            self._show(note=render_notice(f"Tear down failed: {exc}"))
            return
        if self.feed is None:
            self.refresh()


class ListPanel(_Panel):
    """Every sandbox in a namespace, live, from the namespace's shared feed.

    ``namespace`` is a :class:`~.sources.NamespaceSource`, or a namespace's name (None:
    the kubeconfig context's), which the default factory turns into the shared feed of
    that namespace on ``connection`` (None: connect as kubectl would).
    """

    feed: NamespaceSource

    def __init__(self, namespace: NamespaceSource | str | None = None, *,
                 connection: Any = None, sync_timeout: float = SYNC_TIMEOUT) -> None:
        super().__init__([("Refresh", self.refresh)])
        if namespace is None or isinstance(namespace, str):
            namespace = namespace_source_for(namespace, connection)
        self.feed = feed = namespace
        self.statuses: list[models.SandboxStatus] = []
        self._subscription = feed.subscribe(self._changed)
        if feed.wait_synced(sync_timeout):
            self.refresh()
        else:
            self._show(note=render_notice(_waiting(feed, sync_timeout)))

    def __repr__(self) -> str:
        return f"<ListPanel {self.feed.namespace}: {len(self.statuses)} sandboxes>"

    def _changed(self, _status: models.SandboxStatus) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-render from the feed's current statuses (ages included)."""
        with self._lock:
            self.statuses = self.feed.statuses()
            self._show(render_list(self.statuses, namespace=self.feed.namespace)
                       + self._feed_notice())


def _waiting(feed: NamespaceSource, timeout: float) -> str:
    why = f": {feed.error}" if feed.error else ""
    return (f"No answer from the cluster within {timeout:g}s{why}. The panel updates when "
            "the watches catch up; check access with `kubectl get jobs,pods,events`.")
