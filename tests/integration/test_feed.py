"""The shared namespace feed against a real API server: statuses follow a sandbox from
creation to gone, the feed is shared, its threads stop with the last subscriber, a failing
subscriber does not stop it, and only sandbox objects (and their events) show."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from feed_support import Recorder, feed_threads
from kubernetes import client
from sandbox_support import MakeSandbox
from workload_support import job_manifest, token_kubeconfig, wait_for_event

from sandboxkit.backends.kubernetes.client import connect
from sandboxkit.errors import PermissionDenied
from sandboxkit.feed import NamespaceFeed, feed_for, sandbox_feed


def test_statuses_follow_a_sandbox_from_creation_to_gone(make_sandbox: MakeSandbox,
                                                         api_client: Any) -> None:
    sandbox = make_sandbox()
    feed = feed_for(sandbox.connection, sandbox.namespace)
    recorder = Recorder()
    with feed.subscribe(recorder, sandbox.name):
        # Synced before the Job exists: the first status says there is none.
        assert recorder.wait_for(lambda s: True).gone
        sandbox.init()
        running = recorder.wait_for(lambda s: s.running)
        pod = client.CoreV1Api(api_client).read_namespaced_pod(sandbox.pod_name,
                                                               sandbox.namespace)
        assert running.pod_name == pod.metadata.name
        assert running.node == pod.spec.node_name and running.pod_ip == pod.status.pod_ip
        assert (running.job_phase, running.job_active) == ("Active", 1)
        assert running.limits == pod.spec.containers[0].resources.limits
        seen = [s.display_status for s in recorder.statuses]
        assert seen.index("Pending") < seen.index("Running"), seen

        # The same builder over the same objects: a GET snapshot agrees with the feed.
        wait_for_event(client.CoreV1Api(api_client), sandbox.namespace, sandbox.pod_name,
                       lambda ev: ev.reason == "Started")
        started = recorder.wait_for(
            lambda s: s.running and any(e["reason"] == "Started" for e in s.events))
        snapshot = sandbox.status()
        for field in ("job_phase", "pod_name", "pod_phase", "container_state", "node",
                      "pod_ip", "image", "created", "requests", "limits", "restarts"):
            assert getattr(started, field) == getattr(snapshot, field), field
        # Subscribers are given the state the feed holds (it catches up, it never lags).
        recorder.wait_for(lambda s: s == feed.status(sandbox.name))

        before_teardown = len(recorder.statuses)
        sandbox.teardown()
        recorder.wait_for(lambda s: s.gone, since=before_teardown)
        phases = [s.job_phase for s in recorder.statuses[before_teardown:]]
        assert phases.index("Deleting") < phases.index("Missing"), phases
        # Job and pod both gone (their watches may report them in either order).
        gone = recorder.wait_for(lambda s: s.gone and not s.pod_name, since=before_teardown)
        assert gone.events == ()
        assert feed.status(sandbox.name) is None


def test_one_feed_per_namespace_whose_threads_stop_with_the_last_subscriber(
    make_sandbox: MakeSandbox,
) -> None:
    first, second = make_sandbox(), make_sandbox()
    before = set(threading.enumerate())
    feed = feed_for(first.connection, first.namespace)
    assert sandbox_feed(second) is feed  # same cluster and namespace, another sandbox
    subscriptions = [feed.subscribe(Recorder(), first.name), feed.subscribe(Recorder())]
    assert feed.wait_synced(60)
    assert len(feed_threads(first.namespace)) == 3  # jobs, pods, events: however many views
    subscriptions[0].close()
    assert len(feed_threads(first.namespace)) == 3  # one subscriber left
    subscriptions[1].close()
    subscriptions[1].close()  # idempotent
    assert feed_threads(first.namespace) == []
    assert set(threading.enumerate()) - before == set()
    assert not feed.synced

    # A new subscriber starts the watches again, from a fresh list.
    recorder = Recorder()
    with feed.subscribe(recorder, second.name):
        assert len(feed_threads(first.namespace)) == 3
        second.init()
        recorder.wait_for(lambda s: s.running)
    assert feed_threads(first.namespace) == []


def test_a_failing_subscriber_does_not_stop_the_feed(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox()
    feed = sandbox_feed(sandbox)
    calls = threading.Event()

    def broken(_status: object) -> None:
        calls.set()
        raise RuntimeError("a broken widget")

    recorder = Recorder()
    with feed.subscribe(broken, sandbox.name), feed.subscribe(recorder, sandbox.name):
        assert calls.wait(60)
        sandbox.init()
        recorder.wait_for(lambda s: s.running)
        assert len(feed_threads(sandbox.namespace)) == 3


def test_only_sandboxes_and_their_events_show(make_sandbox: MakeSandbox, api_client: Any,
                                              namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    # A Job that is not a sandbox (no app=ci-fixer-sandbox label), and one whose image
    # cannot be pulled, made with plain API calls as another tool would.
    other = job_manifest("not-a-sandbox", labels={"app": "something-else"})
    batch.create_namespaced_job(namespace, other)
    broken = job_manifest("sandbox-broken")
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/nope:1"
    batch.create_namespaced_job(namespace, broken)
    try:
        sandbox = make_sandbox().init()
        recorder = Recorder()
        feed = feed_for(sandbox.connection, namespace)
        with feed.subscribe(recorder):
            failing = recorder.wait_for(
                lambda s: s.name == "sandbox-broken" and s.container_state == "waiting"
                and s.reason in ("ErrImagePull", "ImagePullBackOff"))
            assert failing.image.endswith("registry.invalid/nope:1")
            recorder.wait_for(lambda s: s.name == "sandbox-broken" and any(
                e["type"] == "Warning" for e in s.events))
            assert {s.name for s in feed.statuses()} == {sandbox.name, "sandbox-broken"}
            # The other Job's pod has events too; none reaches a sandbox's status.
            other_pod = core.list_namespaced_pod(
                namespace, label_selector="app=something-else").items[0].metadata.name
            wait_for_event(core, namespace, other_pod, lambda ev: ev.reason == "Scheduled")
            objects = {e["object"] for s in feed.statuses() for e in s.events}
            assert objects and not any("not-a-sandbox" in o for o in objects), objects
    finally:
        for name in ("not-a-sandbox", "sandbox-broken"):
            batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")


def test_without_access_to_events_jobs_and_pods_still_show(
    make_sandbox: MakeSandbox, api_client: Any, namespace: str, tmp_path: Path,
) -> None:
    """An identity that may watch Jobs and pods but not Events (the seed Role grants no
    events): the feed syncs, shows the sandbox, and says what it could not watch."""
    kubeconfig = token_kubeconfig(api_client, namespace, "viewer", tmp_path / "kubeconfig")
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "viewer"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
    })
    sandbox = make_sandbox().init()
    # Its own feed: feed_for shares one per namespace, and this one has another identity.
    feed = NamespaceFeed(connect(str(kubeconfig)), namespace)
    recorder = Recorder()
    with feed.subscribe(recorder, sandbox.name):
        assert feed.wait_synced(60)
        assert recorder.wait_for(lambda s: s.running).events == ()
        assert isinstance(feed.error, PermissionDenied)
        assert (feed.error.verb, feed.error.resource) == ("list", "events")
        assert len(feed_threads(namespace)) == 3  # the events watch retries, backing off
    assert feed_threads(namespace) == []
