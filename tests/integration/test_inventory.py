"""``list_sandboxes`` and ``gc`` against sandboxes in real states: running, failed by the Job
controller's deadline, owned by a process that has exited, owned on another host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from inventory_support import (
    create_sandbox_job,
    deadline_exceeded_sandbox,
    delete_sandbox_job,
    exited_pid,
    job_state,
    owner,
)
from kubernetes import client
from sandbox_support import MakeSandbox

from sandboxkit.backends.kubernetes.client import Connection, connect
from sandboxkit.inventory import COLUMNS, GC_COLUMNS, gc, list_sandboxes
from sandboxkit.manifests import OWNER_ANNOTATION


@pytest.fixture
def conn(kubeconfig: Path) -> Any:
    connection = connect(str(kubeconfig))
    yield connection
    connection.close()


def test_an_empty_namespace_lists_an_empty_frame_with_the_columns(
        conn: Connection, namespace: str) -> None:
    frame = list_sandboxes(namespace, connection=conn)
    assert frame.empty
    assert tuple(frame.columns) == COLUMNS


def test_each_sandbox_is_one_row_with_its_pod_node_owner_and_resources(
        conn: Connection, namespace: str, make_sandbox: MakeSandbox, api_client: Any) -> None:
    # A Job without the sandbox label is not a sandbox and must not be listed.
    client.BatchV1Api(api_client).create_namespaced_job(namespace, {
        "metadata": {"name": "not-a-sandbox"},
        "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}})
    sandboxes = [make_sandbox(cpu_limit="500m", memory_limit="64Mi").init(),
                 make_sandbox().init()]
    frame = list_sandboxes(namespace, connection=conn)
    assert sorted(frame["name"]) == sorted(s.name for s in sandboxes)
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    for sandbox in sandboxes:
        row = frame.set_index("name").loc[sandbox.name]
        job = batch.read_namespaced_job(sandbox.name, namespace)
        pod = core.read_namespaced_pod(sandbox.pod_name, namespace)
        assert (row["namespace"], row["phase"], row["status"]) == (namespace, "Active",
                                                                   "Running")
        assert row["pod"] == sandbox.pod_name
        assert row["node"] == pod.spec.node_name
        assert row["image"] == pod.status.container_statuses[0].image
        assert row["owner"] == job.metadata.annotations[OWNER_ANNOTATION]
        assert row["created"] == pd.Timestamp(job.metadata.creation_timestamp)
        resources = sandbox.config.resources
        assert row["cpu"] == f"{resources.cpu_request}/{resources.cpu_limit}"
        assert row["memory"] == f"{resources.memory_request}/{resources.memory_limit}"
    everywhere = list_sandboxes(all_namespaces=True, connection=conn)
    ours = everywhere[everywhere["namespace"] == namespace]
    assert sorted(ours["name"]) == sorted(frame["name"])


def test_a_sandbox_being_deleted_is_listed_as_deleting(
        conn: Connection, namespace: str, make_sandbox: MakeSandbox, api_client: Any) -> None:
    sandbox = make_sandbox().init()
    batch = client.BatchV1Api(api_client)
    # A finalizer of the test's holds the Job in deletion for as long as the test looks.
    hold = "sandboxkit.io/test-hold"
    batch.patch_namespaced_job(sandbox.name, namespace, {"metadata": {"finalizers": [hold]}})
    try:
        sandbox.teardown()
        frame = list_sandboxes(namespace, connection=conn)
        assert frame.set_index("name").loc[sandbox.name, "phase"] == "Deleting"
        assert gc(namespace, connection=conn).empty  # already going: nothing to collect
    finally:
        finalizers = batch.read_namespaced_job(sandbox.name, namespace).metadata.finalizers
        batch.patch_namespaced_job(sandbox.name, namespace, [{
            "op": "replace", "path": "/metadata/finalizers",
            "value": [f for f in finalizers or [] if f != hold]}])


def test_gc_collects_finished_and_orphaned_sandboxes_and_spares_the_rest(
        conn: Connection, namespace: str, make_sandbox: MakeSandbox, api_client: Any) -> None:
    mine = owner(os.getpid())
    expired = deadline_exceeded_sandbox(api_client, namespace, mine)
    orphan = create_sandbox_job(api_client, namespace, owner(exited_pid()))
    # A pid on another host says nothing about this one's processes: never collected.
    elsewhere = create_sandbox_job(api_client, namespace,
                                   owner(exited_pid(), host="another-host.example"))
    running = make_sandbox().init()
    try:
        planned = gc(namespace, dry_run=True, connection=conn)
        assert tuple(planned.columns) == GC_COLUMNS
        assert sorted(planned["name"]) == sorted([expired, orphan])
        assert not planned["deleted"].any()
        assert {job_state(api_client, namespace, n) for n in (expired, orphan)} == {"present"}
        reasons = planned.set_index("name")["reason"]
        assert "DeadlineExceeded" in reasons[expired]
        assert "owner gone" in reasons[orphan]

        collected = gc(namespace, connection=conn)
        assert sorted(collected["name"]) == sorted([expired, orphan])
        assert collected["deleted"].all()
        for name in (expired, orphan):
            assert job_state(api_client, namespace, name) in ("deleting", "gone")
        for name in (elsewhere, running.name):
            assert job_state(api_client, namespace, name) == "present"
        assert running.run_command("echo still here").stdout == "still here\n"
        # Nothing left to collect: what gc deleted is Deleting or gone, the rest is alive.
        assert gc(namespace, connection=conn).empty
    finally:
        delete_sandbox_job(api_client, namespace, elsewhere)
