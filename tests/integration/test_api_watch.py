"""API fidelity: watches through the official client's ``Watch().stream``.

A watch started at a resourceVersion delivers every later change exactly once and in
order, carrying the object as it was at that change, and resuming from a recorded version
replays what the client missed.

``410 Expired`` for a version the server no longer retains is not tested here, because it is
not portable: a real API server answers it only once its watch cache has moved past that
version, and a fresh kind cluster's cache -- filled by a list when the API server started on
an almost empty etcd, and keeping changes until it holds up to ~100k of them -- may still
cover any version a test can name, even 1. tests/unit/devcluster/test_store.py and
test_server_watch.py cover the devcluster's side.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from typing import Any

import pytest
from api_support import unique
from kubernetes import client, watch

WATCH_SECONDS = 30


def _configmap(name: str, group: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"watch-group": group}}, "data": data}


def test_watch_streams_added_modified_deleted_in_order(api_client: Any,
                                                       namespace: str) -> None:
    """Each change is made only after the previous one arrived on the open watch."""
    core = client.CoreV1Api(api_client)
    group, name = unique("w"), unique("cm")
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    created = core.create_namespaced_config_map(namespace, _configmap(name, group, v="1"))
    versions = {"ADDED": created.metadata.resource_version}

    seen: list[tuple[str, str, dict[str, str] | None]] = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_config_map, namespace,
                                label_selector=f"watch-group={group}",
                                resource_version=start, timeout_seconds=WATCH_SECONDS):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, obj.data))
        if event["type"] == "ADDED":
            assert obj.metadata.resource_version == versions["ADDED"]
            patched = core.patch_namespaced_config_map(name, namespace, {"data": {"v": "2"}})
            versions["MODIFIED"] = patched.metadata.resource_version
        elif event["type"] == "MODIFIED":
            assert obj.metadata.resource_version == versions["MODIFIED"]
            core.delete_namespaced_config_map(name, namespace)
        elif event["type"] == "DELETED":
            watcher.stop()
    assert seen == [("ADDED", name, {"v": "1"}), ("MODIFIED", name, {"v": "2"}),
                    ("DELETED", name, {"v": "2"})]
    # The client tracks the version of the last event so a restarted stream resumes there.
    assert watcher.resource_version is not None
    assert watcher.resource_version != versions["MODIFIED"]


def test_watch_resumes_from_recorded_resource_version(api_client: Any, namespace: str) -> None:
    """Changes made while no watch is open are replayed, in order, from the recorded
    version -- and nothing at or before it is."""
    core = client.CoreV1Api(api_client)
    group = unique("w")
    first = core.create_namespaced_config_map(namespace, _configmap("first", group, v="1"))
    recorded = first.metadata.resource_version
    core.patch_namespaced_config_map("first", namespace, {"data": {"v": "2"}})
    core.create_namespaced_config_map(namespace, _configmap("second", group, v="1"))
    core.patch_namespaced_config_map("first", namespace, {"data": {"v": "3"}})
    core.delete_namespaced_config_map("second", namespace)
    core.patch_namespaced_config_map("first", namespace,
                                     {"metadata": {"labels": {"watch-group": "moved"}}})

    seen = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_config_map, namespace,
                                label_selector=f"watch-group={group}",
                                resource_version=recorded, timeout_seconds=WATCH_SECONDS):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("v"),
                     obj.metadata.labels["watch-group"] == group))
        if len(seen) == 5:
            watcher.stop()
    # Leaving the selector is a deletion for a filtered watch, which is shown the object
    # as it last matched.
    assert seen == [
        ("MODIFIED", "first", "2", True),
        ("ADDED", "second", "1", True),
        ("MODIFIED", "first", "3", True),
        ("DELETED", "second", "1", True),
        ("DELETED", "first", "3", True),
    ]


def test_watch_without_resource_version_starts_with_current_state(api_client: Any,
                                                                  namespace: str) -> None:
    """resourceVersion "0" (any state) and unset (most recent) both begin with synthetic
    ADDED events for what exists."""
    core = client.CoreV1Api(api_client)
    group = unique("w")
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, _configmap(name, group))
    for version in ("0", None):
        kwargs = {"resource_version": version} if version else {}
        names = set()
        watcher = watch.Watch()
        for event in watcher.stream(core.list_namespaced_config_map, namespace,
                                    label_selector=f"watch-group={group}",
                                    timeout_seconds=WATCH_SECONDS, **kwargs):
            assert event["type"] == "ADDED"
            names.add(event["object"].metadata.name)
            if names == {"a", "b"}:
                watcher.stop()
        assert names == {"a", "b"}


def test_watch_single_object_by_name(api_client: Any, namespace: str) -> None:
    """``watch`` on one object is a field-selected watch on metadata.name."""
    core = client.CoreV1Api(api_client)
    target, other = unique("cm"), unique("cm")
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": other}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": target}})
    watcher = watch.Watch()
    seen = []
    for event in watcher.stream(core.list_namespaced_config_map, namespace,
                                field_selector=f"metadata.name={target}",
                                resource_version=start, timeout_seconds=WATCH_SECONDS):
        seen.append(event["object"].metadata.name)
        watcher.stop()
    assert seen == [target]


@pytest.mark.kubectl
def test_kubectl_get_watch_prints_table_rows(api_client: Any, kubeconfig: Any,
                                             namespace: str) -> None:
    """``kubectl get -w`` watches with ``as=Table``: each event arrives as a printed row."""
    core = client.CoreV1Api(api_client)
    group, name = unique("w"), unique("cm")
    command = ["kubectl", "--kubeconfig", str(kubeconfig), "get", "configmaps", "-n", namespace,
               "-l", f"watch-group={group}", "--watch", "--output-watch-events"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as kubectl_watch:
        assert kubectl_watch.stdout is not None
        threading.Thread(target=lambda: [lines.put(line) for line in kubectl_watch.stdout],
                         daemon=True).start()

        def next_row() -> list[str]:
            try:
                return lines.get(timeout=WATCH_SECONDS).split()
            except queue.Empty:
                pytest.fail("kubectl get --watch printed nothing in time")

        try:
            core.create_namespaced_config_map(namespace, _configmap(name, group))
            header = next_row()
            assert header == ["EVENT", "NAME", "DATA", "AGE"]
            assert next_row()[:3] == ["ADDED", name, "0"]
            core.patch_namespaced_config_map(name, namespace, {"data": {"a": "1", "b": "2"}})
            assert next_row()[:3] == ["MODIFIED", name, "2"]
            core.delete_namespaced_config_map(name, namespace)
            assert next_row()[:3] == ["DELETED", name, "2"]
        finally:
            kubectl_watch.terminate()
