"""What a panel is fed with: a status source, passed in, so widgets never reach a backend.

Why protocols and not the feed itself: a panel only renders statuses and forwards button
presses. Knowing how statuses are watched (:mod:`sandboxkit.feed`), how a sandbox is read,
diagnosed or deleted (backends, :mod:`sandboxkit.diagnostics`) belongs to the layers above,
and a test or another front end can feed a panel with anything of the same shape.

- :class:`NamespaceSource` is what :class:`~sandboxkit.widgets.ListPanel` needs, and the
  live half of a :class:`SandboxSource`: subscribe to status changes, wait for the first
  complete state, read the current statuses. :class:`sandboxkit.feed.NamespaceFeed` is one
  as it is, so every panel on a namespace shares its one set of watches.
- :class:`SandboxSource` is what :class:`~sandboxkit.widgets.StatusPanel` needs: that feed
  (or None where statuses cannot be watched, as for the docker backend), a status read now,
  and the Diagnose and Tear down actions. :class:`sandboxkit.sources.SandboxStatusSource`
  builds one from a sandbox.

A notebook writes ``StatusPanel(sb)`` and ``ListPanel("ci")``, not a source: panels turn a
sandbox or a namespace into one through the factories given to
:func:`use_default_sources`, which :mod:`sandboxkit.sources` gives on import (and
``import sandboxkit``, which every ``sandboxkit.widgets`` import runs first, imports it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..models import SandboxStatus

__all__ = [
    "HTMLRepr",
    "NamespaceSource",
    "NamespaceSourceFactory",
    "SandboxSource",
    "SandboxSourceFactory",
    "StatusCallback",
    "Subscription",
    "namespace_source_for",
    "sandbox_source_for",
    "use_default_sources",
]

StatusCallback = Callable[[SandboxStatus], None]


class Subscription(Protocol):
    """The handle :meth:`NamespaceSource.subscribe` returns; closing it ends the updates."""

    def close(self) -> None: ...


class HTMLRepr(Protocol):
    """What a diagnosis must be for a panel to show it: anything Jupyter shows as HTML."""

    def _repr_html_(self) -> str: ...


@runtime_checkable
class NamespaceSource(Protocol):
    """Live statuses of the sandboxes in one namespace.

    Callbacks may come on another thread; a subscriber of a named sandbox hears its current
    status first once the source is synced (``job_phase`` "Missing" when it does not exist).
    """

    @property
    def namespace(self) -> str: ...

    @property
    def error(self) -> Exception | None:
        """Why the live view is incomplete (a watch failing), None while it is whole."""

    def subscribe(self, callback: StatusCallback, name: str | None = None) -> Subscription:
        """Call ``callback`` on every change of sandbox ``name`` (of every one when None)."""

    def wait_synced(self, timeout: float) -> bool:
        """True once the first complete state has been delivered, False after ``timeout``."""

    def statuses(self) -> list[SandboxStatus]:
        """Every sandbox's current status, by name."""


@runtime_checkable
class SandboxSource(Protocol):
    """One sandbox, as a :class:`~sandboxkit.widgets.StatusPanel` shows and acts on it."""

    @property
    def name(self) -> str: ...

    @property
    def feed(self) -> NamespaceSource | None:
        """The live statuses of the sandbox's namespace; None: only :meth:`status` reads."""

    def status(self) -> SandboxStatus:
        """The sandbox's status read now (Refresh)."""

    def diagnose(self) -> HTMLRepr:
        """What is wrong with the sandbox and how to fix it (Diagnose)."""

    def teardown(self) -> None:
        """Delete the sandbox without waiting for it to be gone (Tear down)."""


SandboxSourceFactory = Callable[[Any], SandboxSource]
NamespaceSourceFactory = Callable[[str | None, Any], NamespaceSource]


@dataclass
class _Defaults:
    sandbox: SandboxSourceFactory | None = None
    namespace: NamespaceSourceFactory | None = None


_defaults = _Defaults()


def use_default_sources(*, sandbox: SandboxSourceFactory,
                        namespace: NamespaceSourceFactory) -> None:
    """Say how a panel given a sandbox (``sandbox(sb)``) or a namespace
    (``namespace(name_or_None, connection_or_None)``) gets its source."""
    _defaults.sandbox, _defaults.namespace = sandbox, namespace


def sandbox_source_for(sandbox: Any) -> SandboxSource:
    """``sandbox`` if it is a source already, else the default factory's source for it."""
    if isinstance(sandbox, SandboxSource):
        return sandbox
    if _defaults.sandbox is None:
        raise TypeError(f"no status source for {sandbox!r}: pass a SandboxSource, or import "
                        "sandboxkit.sources to make one from a sandbox")
    return _defaults.sandbox(sandbox)


def namespace_source_for(namespace: str | None, connection: Any = None) -> NamespaceSource:
    """The default factory's source for ``namespace`` (None: the connection's own)."""
    if _defaults.namespace is None:
        raise TypeError(f"no status source for namespace {namespace!r}: pass a "
                        "NamespaceSource, or import sandboxkit.sources")
    return _defaults.namespace(namespace, connection)
