"""Warm pools on a real cluster: claims, refills, races between processes, drain and gc.

Every pool is stopped and drained, and every claimed sandbox torn down, when its test ends
(the session's leak check counts idle pool sandboxes too: they are sandbox Jobs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inventory_support import exited_pid, job_state, owner
from kubernetes import client
from sandbox_support import IMAGE, SMALL, STARTUP_TIMEOUT, MakeSandbox
from workload_support import job_condition, wait_job_finished, watch_until

from sandboxkit import KubernetesSandbox, SandboxConfig, create_sandbox
from sandboxkit.backends.kubernetes.claim import idle_members, take
from sandboxkit.backends.kubernetes.client import Connection, connect
from sandboxkit.inventory import gc
from sandboxkit.manifests import (
    OWNER_ANNOTATION,
    POOL_LABEL,
    POOL_STATE_LABEL,
    new_sandbox_name,
    owner_description,
    pool_job_manifest,
    pool_selector,
)
from sandboxkit.pool import SandboxPool, drain, list_pools

MakePool = Callable[..., SandboxPool]


@pytest.fixture
def settings(kubeconfig: Path, namespace: str, make_sandbox: MakeSandbox) -> dict[str, Any]:
    """What every sandbox of these tests is made with (make_sandbox: the ServiceAccount)."""
    return {"image": IMAGE, "kubeconfig": str(kubeconfig), "namespace": namespace,
            "startup_timeout": STARTUP_TIMEOUT, **SMALL}


@pytest.fixture
def conn(kubeconfig: Path) -> Iterator[Connection]:
    made = connect(kubeconfig)
    yield made
    made.close()


@pytest.fixture
def claimed() -> Iterator[list[KubernetesSandbox]]:
    """Sandboxes a test claimed, torn down (and waited for) at its end."""
    sandboxes: list[KubernetesSandbox] = []
    yield sandboxes
    for sandbox in sandboxes:
        sandbox.teardown(wait=True)


@pytest.fixture
def make_pool(settings: dict[str, Any]) -> Iterator[MakePool]:
    pools: list[SandboxPool] = []

    def make(name: str, size: int, **overrides: Any) -> SandboxPool:
        pool = SandboxPool(name, size, **{**settings, **overrides})
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop(drain=True)


def wait_idle(batch: client.BatchV1Api, namespace: str, pool: str, count: int, *,
              ready: bool = False) -> set[str]:
    """The names of the pool's idle sandboxes once exactly ``count`` are alive (and, with
    ``ready``, counted ready by the Job controller), watched."""
    alive: dict[str, bool] = {}

    def counted(kind: str, job: Any) -> bool:
        finished = job_condition(job, "Failed") or job_condition(job, "Complete")
        alive[job.metadata.name] = kind != "DELETED" and not finished and (
            job.metadata.deletion_timestamp is None) and (
            not ready or bool(job.status and job.status.ready))
        return sum(alive.values()) == count

    watch_until(batch.list_namespaced_job, counted, namespace,
                label_selector=pool_selector(pool, "idle"))
    return {name for name, live in alive.items() if live}


def test_a_claim_is_a_running_sandbox_that_runs_commands_and_teardown_deletes_it(
        make_pool: MakePool, batch: client.BatchV1Api, namespace: str) -> None:
    pool = make_pool("warm", 1).start()
    stages: list[tuple[str, str]] = []
    sandbox = pool.claim(on_progress=lambda stage, detail: stages.append((stage, detail)))
    try:
        assert isinstance(sandbox, KubernetesSandbox)
        assert stages[0][0] == "claimed" and sandbox.name in stages[0][1]
        assert stages[-1][0] == "running"
        assert sandbox.run_command("echo $((6 * 7))").stdout == "42\n"
        job = batch.read_namespaced_job(sandbox.name, namespace)
        assert job.metadata.labels["app"] == "ci-fixer-sandbox"
        assert (job.metadata.labels[POOL_LABEL], job.metadata.labels[POOL_STATE_LABEL]) == (
            "warm", "claimed")
        assert job.metadata.annotations[OWNER_ANNOTATION] == owner_description()
        assert sandbox.status().job_phase == "Active"
    finally:
        sandbox.teardown(wait=True)
    with pytest.raises(client.ApiException) as gone:
        batch.read_namespaced_job(sandbox.name, namespace)
    assert gone.value.status == 404


def test_the_pool_refills_after_a_claim(make_pool: MakePool, batch: client.BatchV1Api,
                                        namespace: str,
                                        claimed: list[KubernetesSandbox]) -> None:
    pool = make_pool("warm", 2).start()
    first = wait_idle(batch, namespace, "warm", 2)
    claimed.append(pool.claim())
    assert claimed[0].name in first
    refilled = wait_idle(batch, namespace, "warm", 2)
    assert claimed[0].name not in refilled and len(refilled - first) == 1
    assert pool.running and pool.error is None


CLAIMER = """
import json, sys, time
from sandboxkit import create_sandbox

settings, start_at = json.loads(sys.argv[1]), float(sys.argv[2])
stages = []
sandbox = create_sandbox(**settings)
time.sleep(max(0.0, start_at - time.time()))  # both processes claim at the same instant
sandbox.init(on_progress=lambda stage, detail: stages.append(stage))
print(json.dumps({"name": sandbox.name, "uid": sandbox.job_uid, "first": stages[0]}))
"""


@pytest.mark.parametrize(("size", "expected"), [(1, ["claimed", "cold"]),
                                                 (2, ["claimed", "claimed"])])
def test_two_processes_claiming_at_once_never_get_the_same_sandbox(
        make_pool: MakePool, settings: dict[str, Any], batch: client.BatchV1Api,
        namespace: str, size: int, expected: list[str]) -> None:
    pool = make_pool("race", size).start()
    pool.stop()  # no refill: exactly `size` idle sandboxes for two claimers
    argv = [json.dumps({**settings, "pool": "race"}), str(time.time() + 4)]
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, *argv], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
    results = []
    for claimer in claimers:
        out, err = claimer.communicate(timeout=STARTUP_TIMEOUT + 60)
        assert claimer.returncode == 0, err
        results.append(json.loads(out))
    try:
        assert results[0]["uid"] != results[1]["uid"]
        assert sorted(result["first"] for result in results) == expected
    finally:
        for result in results:
            batch.delete_namespaced_job(result["name"], namespace,
                                        propagation_policy="Foreground")


def test_a_claim_whose_read_is_stale_takes_nothing_unless_the_job_is_still_idle(
        make_pool: MakePool, namespace: str, conn: Connection,
        kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    make_pool("warm", 1).start().stop()
    [stale] = idle_members(conn, namespace, "warm")
    name = stale["metadata"]["name"]
    # A change that is not a claim: the 409 is retried at the version re-read.
    assert kubectl("annotate", "job", name, "-n", namespace, "note=touched").returncode == 0
    taken = take(conn, stale, "claimed", "me@here pid=1")
    assert taken is not None and taken["metadata"]["labels"][POOL_STATE_LABEL] == "claimed"
    # Back to idle, then someone else's claim after our read: ours takes nothing.
    assert kubectl("label", "job", name, "-n", namespace, f"{POOL_STATE_LABEL}=idle",
                   "--overwrite").returncode == 0
    [stale] = idle_members(conn, namespace, "warm")
    assert kubectl("label", "job", name, "-n", namespace, f"{POOL_STATE_LABEL}=claimed",
                   "--overwrite").returncode == 0
    assert take(conn, stale, "claimed", "me@here pid=2") is None
    assert kubectl("label", "job", name, "-n", namespace, f"{POOL_STATE_LABEL}=idle",
                   "--overwrite").returncode == 0  # for the fixture's drain


def test_without_an_idle_sandbox_of_its_configuration_a_claim_starts_cold_and_says_so(
        make_pool: MakePool, settings: dict[str, Any],
        claimed: list[KubernetesSandbox]) -> None:
    make_pool("warm", 1).start().stop()
    for overrides, why in (({"pool": "empty"}, "no idle sandbox"),
                           ({"pool": "warm", "env": {"A": "1"}}, "configuration")):
        stages: list[tuple[str, str]] = []
        sandbox = create_sandbox(**{**settings, **overrides}, name=new_sandbox_name())
        assert isinstance(sandbox, KubernetesSandbox)
        claimed.append(sandbox)
        sandbox.init(on_progress=lambda stage, detail, seen=stages: seen.append(
            (stage, detail)))
        assert stages[0][0] == "cold" and why in stages[0][1]
        assert [stage for stage, _ in stages[1:]] == ["created", "scheduled", "pulling",
                                                      "running"]
        assert sandbox.name == sandbox.config.name  # a cold start keeps the name asked for
        assert sandbox.run_command("true").exit_code == 0


def test_drain_deletes_the_idle_sandboxes_and_leaves_the_claimed_ones(
        make_pool: MakePool, namespace: str, conn: Connection, batch: client.BatchV1Api,
        claimed: list[KubernetesSandbox]) -> None:
    pool = make_pool("warm", 2).start()
    claimed.append(pool.claim())
    idle = wait_idle(batch, namespace, "warm", 2, ready=True)  # refilled
    pool.stop()
    [row] = list_pools(namespace, connection=conn).to_dict("records")
    assert row == {"name": "warm", "namespace": namespace, "idle": 2, "ready": 2,
                   "claimed": 1}
    assert sorted(drain("warm", namespace, connection=conn)) == sorted(idle)
    assert idle_members(conn, namespace, "warm") == []  # relabelled before deletion
    [row] = list_pools(namespace, connection=conn).to_dict("records")
    assert (row["idle"], row["claimed"]) == (0, 1)
    assert claimed[0].run_command("echo still").stdout == "still\n"


def test_gc_leaves_idle_sandboxes_whose_filler_is_gone_until_their_deadline(
        api_client: Any, namespace: str, settings: dict[str, Any], conn: Connection,
        batch: client.BatchV1Api) -> None:
    gone = owner(exited_pid())
    config = SandboxConfig.resolve(**settings)
    idle, orphaned_claim, expired = new_sandbox_name(), new_sandbox_name(), new_sandbox_name()
    for name, deadline in ((idle, 3600), (orphaned_claim, 3600), (expired, 1)):
        manifest = pool_job_manifest(
            SandboxConfig.resolve(config, active_deadline_seconds=deadline), name, gone, "warm")
        batch.create_namespaced_job(namespace, manifest)
    batch.patch_namespaced_job(orphaned_claim, namespace,
                               {"metadata": {"labels": {POOL_STATE_LABEL: "claimed"}}})
    wait_job_finished(batch, namespace, expired)
    frame = gc(namespace, connection=conn)
    reasons = dict(zip(frame["name"], frame["reason"], strict=True))
    assert set(reasons) == {orphaned_claim, expired}
    assert "owner gone" in reasons[orphaned_claim] and "Job Failed" in reasons[expired]
    assert drain("warm", namespace, connection=conn) == [idle]


def test_an_idle_sandbox_that_cannot_run_is_discarded_and_the_claim_goes_on(
        settings: dict[str, Any], batch: client.BatchV1Api, namespace: str,
        api_client: Any) -> None:
    """An idle sandbox whose pod will never run (here: its image cannot be pulled) is
    deleted by the claimer that found it, which then starts cold under its own name."""
    from sandboxkit.errors import ImagePullError

    broken = {**settings, "image": "registry.invalid/nope:1"}
    name = new_sandbox_name()
    batch.create_namespaced_job(namespace, pool_job_manifest(
        SandboxConfig.resolve(**broken), name, owner_description(), "warm"))
    stages: list[str] = []
    sandbox = create_sandbox(**broken, pool="warm", name="asked-for")
    assert isinstance(sandbox, KubernetesSandbox)
    with pytest.raises(ImagePullError) as error:
        sandbox.init(on_progress=lambda stage, detail: stages.append(stage))
    assert stages[0] == "claimed" and "discarded" in stages
    assert stages[stages.index("discarded") + 1:][:2] == ["cold", "created"]
    assert error.value.sandbox == "asked-for"  # the cold start's own name, not the claimed
    assert job_state(api_client, namespace, name) in ("deleting", "gone")
