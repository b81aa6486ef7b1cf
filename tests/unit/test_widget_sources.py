"""Panels fed by a status source passed in: no cluster, no feed, no backend.

The fakes are what a source promises (:mod:`sandboxkit.widgets.sources`); the panels must
follow their pushes, forward their buttons to them, share one source between panels, and
let go of it. The widgets' import rule (models and themselves only) is held with the
others by test_import_rules.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from sandboxkit.models import SandboxStatus
from sandboxkit.sources import SandboxStatusSource
from sandboxkit.widgets import ListPanel, NamespaceSource, SandboxSource, StatusPanel

RUNNING = SandboxStatus(name="sb", namespace="ci", job_phase="Active", pod_name="sb-x",
                        pod_phase="Running", container_state="running", job_active=1)
GONE = SandboxStatus(name="sb", namespace="ci", job_phase="Missing")


@dataclass
class _Subscription:
    source: FakeFeed
    callback: Callable[[SandboxStatus], None]
    name: str | None
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeFeed:
    """A NamespaceSource whose pushes the test makes by hand."""

    namespace: str = "ci"
    error: Exception | None = None
    synced: bool = True
    current: dict[str, SandboxStatus] = field(default_factory=dict)
    subscriptions: list[_Subscription] = field(default_factory=list)

    def subscribe(self, callback: Callable[[SandboxStatus], None],
                  name: str | None = None) -> _Subscription:
        subscription = _Subscription(self, callback, name)
        self.subscriptions.append(subscription)
        if self.synced:
            for status in self.statuses():
                if name in (None, status.name):
                    callback(status)
        return subscription

    def wait_synced(self, timeout: float) -> bool:
        return self.synced

    def statuses(self) -> list[SandboxStatus]:
        return [self.current[name] for name in sorted(self.current)]

    def push(self, status: SandboxStatus) -> None:
        self.current[status.name] = status
        for subscription in self.subscriptions:
            if not subscription.closed and subscription.name in (None, status.name):
                subscription.callback(status)

    @property
    def open(self) -> list[_Subscription]:
        return [s for s in self.subscriptions if not s.closed]


class _Diagnosis:
    def _repr_html_(self) -> str:
        return "<p>diagnosis of sb</p>"


@dataclass
class FakeSandboxSource:
    feed: FakeFeed | None
    name: str = "sb"
    now: SandboxStatus = RUNNING
    torn_down: int = 0

    def status(self) -> SandboxStatus:
        return self.now

    def diagnose(self) -> _Diagnosis:
        return _Diagnosis()

    def teardown(self) -> None:
        self.torn_down += 1


def test_the_fakes_are_sources() -> None:
    assert isinstance(FakeFeed(), NamespaceSource)
    assert isinstance(FakeSandboxSource(FakeFeed()), SandboxSource)
    assert not isinstance(object(), SandboxSource)


def test_status_panel_follows_its_source_until_gone() -> None:
    feed = FakeFeed(current={"sb": RUNNING})
    source = FakeSandboxSource(feed)
    panel = StatusPanel(source)
    assert panel.feed is feed and panel.status == RUNNING
    assert "sb-x" in panel.html and repr(panel) == "<StatusPanel sb: Running>"
    feed.push(replace(RUNNING, restarts=3, reason="Flapping"))
    assert panel.status is not None and panel.status.restarts == 3
    assert "Flapping" in panel.html
    feed.push(GONE)
    assert panel.status == GONE and feed.open == []  # gone: subscription released
    if panel.widget is not None:
        assert panel.buttons["Tear down"].disabled


def test_status_panel_buttons_act_through_the_source() -> None:
    feed = FakeFeed(current={"sb": RUNNING})
    source = FakeSandboxSource(feed)
    panel = StatusPanel(source)
    panel.diagnose()
    assert panel.html.endswith("<p>diagnosis of sb</p>")
    panel.teardown()
    assert source.torn_down == 1
    source.now = replace(RUNNING, job_phase="Deleting")
    panel.refresh()
    assert panel.status is not None and panel.status.job_phase == "Deleting"
    panel.close()
    assert feed.open == []


def test_a_failing_action_is_shown_not_raised() -> None:
    source = FakeSandboxSource(FakeFeed(current={"sb": RUNNING}))

    def broken() -> _Diagnosis:
        raise RuntimeError("no events access")

    source.diagnose = broken  # type: ignore[method-assign]
    panel = StatusPanel(source)
    panel.diagnose()
    assert "Diagnose failed: no events access" in panel.html
    panel.close()


def test_a_source_without_a_feed_is_read_on_refresh() -> None:
    source = FakeSandboxSource(None)
    panel = StatusPanel(source)
    assert panel.feed is None and panel.status == RUNNING
    source.now = GONE
    panel.teardown()  # no feed to follow it: the panel reads the status itself
    assert panel.status == GONE


def test_unsynced_source_says_it_is_waiting_and_why() -> None:
    feed = FakeFeed(synced=False, error=PermissionError("cannot watch events"))
    panel = StatusPanel(FakeSandboxSource(feed), sync_timeout=0.01)
    assert "No answer from the cluster within 0.01s: cannot watch events" in panel.html
    panel.close()


def test_panels_share_one_source_and_a_list_follows_every_sandbox() -> None:
    feed = FakeFeed(current={"sb": RUNNING})
    panels = [StatusPanel(FakeSandboxSource(feed)) for _ in range(2)]
    listing = ListPanel(feed)
    assert panels[0].feed is panels[1].feed is listing.feed is feed
    assert len(feed.open) == 3
    feed.push(replace(RUNNING, name="other", pod_name="other-y"))
    assert [s.name for s in listing.statuses] == ["other", "sb"]
    assert 'data-sandbox="other"' in listing.html
    assert all(p.status == RUNNING for p in panels)  # named subscriptions: not theirs
    for view in (*panels, listing):
        view.close()
    assert feed.open == []


def test_a_sandbox_or_a_namespace_is_resolved_through_the_default_factories(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``StatusPanel(sb)`` and ``ListPanel("ci")``, as a notebook writes them."""
    feed = FakeFeed(current={"sb": RUNNING})
    asked: list[tuple[str | None, object]] = []

    def feed_for(connection: object, namespace: str | None) -> FakeFeed:
        asked.append((namespace, connection))
        return feed

    monkeypatch.setattr("sandboxkit.feed.feed_for", feed_for)
    listing = ListPanel("ci", connection="conn")
    assert listing.feed is feed and asked == [("ci", "conn")]

    class DockerLike:  # not a Kubernetes sandbox: no live view
        name = "sb"

        def status(self) -> SandboxStatus:
            return RUNNING

    panel = StatusPanel(DockerLike())
    assert isinstance(panel.source, SandboxStatusSource)
    assert panel.feed is None and panel.status == RUNNING

    class KubernetesLike(DockerLike):
        pass

    monkeypatch.setattr("sandboxkit.feed.sandbox_feed",
                        lambda sandbox: feed if isinstance(sandbox, KubernetesLike) else None)
    live = StatusPanel(KubernetesLike())
    assert live.feed is feed and live.status == RUNNING
    for view in (listing, panel, live):
        view.close()
