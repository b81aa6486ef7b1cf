"""The claim protocol against a fake API server: what a cluster cannot be made to show on
demand -- a claim losing the race between its read and its write (409), and a 409 that is
not a lost race -- plus the pool's labels, its configuration digest and the gc rules for
pool sandboxes."""

from __future__ import annotations

import copy
import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sandboxkit import SandboxConfig
from sandboxkit.backends.kubernetes.claim import MAX_CONFLICTS, claim_idle, take
from sandboxkit.backends.kubernetes.status import sandbox_status
from sandboxkit.errors import ConfigError
from sandboxkit.inventory import gc_reason
from sandboxkit.manifests import (
    OWNER_ANNOTATION,
    POOL_LABEL,
    POOL_SPEC_LABEL,
    POOL_STATE_LABEL,
    job_manifest,
    pool_job_manifest,
    pool_selector,
    pool_spec,
)
from sandboxkit.pool import SandboxPool

SPEC = pool_spec(SandboxConfig())


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


class FakeBatch:
    """Jobs by name; ``patch_namespaced_job`` honours ``metadata.resourceVersion`` as the API
    server does, and ``before_patch`` lets a test change a Job between a read and a write
    (another client's claim)."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = {job["metadata"]["name"]: job for job in jobs}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.before_patch: dict[str, Any] = {}
        self.version = 100

    def _bump(self, job: dict[str, Any]) -> None:
        self.version += 1
        job["metadata"]["resourceVersion"] = str(self.version)

    def list_namespaced_job(self, namespace: str, *, label_selector: str,
                            **_: Any) -> _Response:
        wanted = dict(term.split("=") for term in label_selector.split(",") if "=" in term)
        items = [job for job in self.jobs.values()
                 if all(job["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return _Response({"items": copy.deepcopy(items)})

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> _Response:
        return _Response(copy.deepcopy(self.jobs[name]))

    def patch_namespaced_job(self, name: str, namespace: str, body: dict[str, Any],
                             **kwargs: Any) -> _Response:
        assert kwargs["_content_type"] == "application/merge-patch+json"
        self.patches.append((name, body))
        change = self.before_patch.pop(name, None)
        job = self.jobs[name]
        if change is not None:
            change(job)
            self._bump(job)
        if body["metadata"]["resourceVersion"] != job["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        job["metadata"]["labels"].update(body["metadata"].get("labels", {}))
        job["metadata"]["annotations"].update(body["metadata"].get("annotations", {}))
        self._bump(job)
        return _Response(copy.deepcopy(job))


class FakeConnection:
    namespace = "ns"

    def __init__(self, batch: FakeBatch) -> None:
        self._batch = batch

    def batch(self) -> FakeBatch:
        return self._batch


def idle_job(name: str, created: str, *, ready: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "resourceVersion": "1", "creationTimestamp": created,
                         "labels": {"app": "ci-fixer-sandbox", POOL_LABEL: "warm",
                                    POOL_STATE_LABEL: "idle", POOL_SPEC_LABEL: SPEC},
                         "annotations": {OWNER_ANNOTATION: "filler@host pid=1"}},
            "status": {"active": 1, "ready": ready}}


def claimed_by_someone_else(job: dict[str, Any]) -> None:
    job["metadata"]["labels"][POOL_STATE_LABEL] = "claimed"


def counted_ready(job: dict[str, Any]) -> None:
    """What the Job controller does meanwhile: a status change, still idle."""
    job["status"]["ready"] = 1


def test_a_lost_race_moves_on_to_the_next_idle_sandbox() -> None:
    batch = FakeBatch([idle_job("old", "2026-01-01T00:00:00Z"),
                       idle_job("new", "2026-01-01T01:00:00Z")])
    batch.before_patch["new"] = claimed_by_someone_else  # newest is tried first, and lost
    claim = claim_idle(FakeConnection(batch), "ns", "warm", SPEC,  # type: ignore[arg-type]
                       "me@here pid=2")
    assert claim.job is not None and claim.job["metadata"]["name"] == "old"
    assert [name for name, _ in batch.patches] == ["new", "old"]
    assert batch.jobs["new"]["metadata"]["annotations"][OWNER_ANNOTATION] == "filler@host pid=1"
    assert batch.jobs["old"]["metadata"]["labels"][POOL_STATE_LABEL] == "claimed"
    assert batch.jobs["old"]["metadata"]["annotations"][OWNER_ANNOTATION] == "me@here pid=2"


def test_a_conflict_that_is_not_a_claim_is_retried_at_the_new_version() -> None:
    batch = FakeBatch([idle_job("only", "2026-01-01T00:00:00Z", ready=0)])
    batch.before_patch["only"] = counted_ready
    taken = take(FakeConnection(batch), copy.deepcopy(batch.jobs["only"]),  # type: ignore[arg-type]
                 "claimed", "me@here pid=2")
    assert taken is not None and taken["metadata"]["labels"][POOL_STATE_LABEL] == "claimed"
    first, second = (body["metadata"]["resourceVersion"] for _, body in batch.patches)
    assert first == "1" and second == "101"  # re-read, then patched at the version read


def test_every_idle_sandbox_lost_is_a_cold_start_saying_why() -> None:
    batch = FakeBatch([idle_job("a", "2026-01-01T00:00:00Z")])
    batch.before_patch["a"] = claimed_by_someone_else
    claim = claim_idle(FakeConnection(batch), "ns", "warm", SPEC, "me")  # type: ignore[arg-type]
    assert claim.job is None and "other clients claimed" in claim.reason


def test_a_job_that_keeps_changing_is_given_up() -> None:
    batch = FakeBatch([idle_job("busy", "2026-01-01T00:00:00Z")])

    class Always(dict[str, Any]):
        def pop(self, key: str, default: Any = None) -> Any:
            return counted_ready

    batch.before_patch = Always()
    assert take(FakeConnection(batch), copy.deepcopy(batch.jobs["busy"]),  # type: ignore[arg-type]
                "claimed") is None
    assert len(batch.patches) == MAX_CONFLICTS


def test_no_idle_sandbox_and_another_configuration_say_so() -> None:
    empty = claim_idle(FakeConnection(FakeBatch([])), "ns", "warm", SPEC,  # type: ignore[arg-type]
                       "me")
    assert empty.job is None and "no idle sandbox" in empty.reason
    other = claim_idle(FakeConnection(FakeBatch([idle_job("a", "t")])),  # type: ignore[arg-type]
                       "ns", "warm", pool_spec(SandboxConfig(image="python:3.12")), "me")
    assert other.job is None and "configuration" in other.reason


def test_ready_sandboxes_are_claimed_before_starting_ones() -> None:
    batch = FakeBatch([idle_job("starting", "2026-01-01T02:00:00Z", ready=0),
                       idle_job("ready", "2026-01-01T00:00:00Z")])
    claim = claim_idle(FakeConnection(batch), "ns", "warm", SPEC, "me")  # type: ignore[arg-type]
    assert claim.job is not None and claim.job["metadata"]["name"] == "ready"


# --- labels and the configuration digest ----------------------------------------------


def test_pool_labels_are_on_the_job_only_and_the_rest_is_the_standard_sandbox() -> None:
    config = SandboxConfig(image="busybox", namespace="ns")
    manifest = pool_job_manifest(config, "sandbox-1", "me", "warm")
    plain = job_manifest(config, "sandbox-1", "me")
    labels = manifest["metadata"].pop("labels")
    assert labels == {**plain["metadata"].pop("labels"), POOL_LABEL: "warm",
                      POOL_STATE_LABEL: "idle", POOL_SPEC_LABEL: pool_spec(config)}
    assert manifest == plain  # template included: the pod is a standard sandbox pod


def test_the_digest_covers_what_shapes_the_job_and_nothing_else() -> None:
    base = SandboxConfig()
    same = [SandboxConfig(name="x"), SandboxConfig(pool="warm"), SandboxConfig(namespace="a"),
            SandboxConfig(startup_timeout=5), SandboxConfig(command_timeout=5),
            SandboxConfig(keep_on_failure=True)]
    assert {pool_spec(config) for config in same} == {pool_spec(base)}
    different = [SandboxConfig(image="busybox"), SandboxConfig(env={"A": "1"}),
                 SandboxConfig.resolve(cpu_limit="2"), SandboxConfig(labels={"team": "ci"}),
                 SandboxConfig(active_deadline_seconds=60), SandboxConfig(allow_egress=True)]
    assert len({pool_spec(config) for config in [base, *different]}) == len(different) + 1


def test_selectors() -> None:
    assert pool_selector() == "app=ci-fixer-sandbox,sandboxkit.io/pool"
    assert pool_selector("warm", "idle") == (
        "app=ci-fixer-sandbox,sandboxkit.io/pool=warm,sandboxkit.io/pool-state=idle")


@pytest.mark.parametrize(("args", "overrides", "field"), [
    (("Warm", 1), {}, "pool"), (("warm", 0), {}, "size"), (("warm", True), {}, "size"),
    (("warm", 1), {"execution_backend": "docker"}, "execution_backend"),
    (("warm", 1), {"pool": "other"}, "pool"), (("warm", 1), {"name": "x"}, "name"),
    (("warm", 1), {"image": "bad image"}, "image"),
])
def test_bad_pool_settings_are_config_errors(args: tuple[Any, ...], overrides: dict[str, Any],
                                             field: str) -> None:
    with pytest.raises(ConfigError) as error:
        SandboxPool(*args, **overrides)
    assert error.value.field == field


def test_create_sandbox_refuses_a_pool_for_other_backends() -> None:
    from sandboxkit import create_sandbox

    with pytest.raises(ConfigError, match="Kubernetes sandboxes only"):
        create_sandbox(execution_backend="local", pool="warm")


# --- gc -------------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
HOST = socket.gethostname()
GONE_OWNER = f"filler@{HOST} pid=999999999"  # above any pid_max: no such process


def pool_member(state: str, *, started: datetime) -> dict[str, Any]:
    job = idle_job("sandbox-1", (NOW - timedelta(days=1)).isoformat())
    job["metadata"]["labels"][POOL_STATE_LABEL] = state
    job["metadata"]["annotations"][OWNER_ANNOTATION] = GONE_OWNER
    job["spec"] = {"activeDeadlineSeconds": 3600, "template": {"spec": {}}}
    job["status"]["startTime"] = started.isoformat()
    return job


def reason(job: dict[str, Any]) -> str | None:
    return gc_reason(job, sandbox_status("sandbox-1", "ns", job, None, []), now=NOW, host=HOST)


def test_an_idle_pool_sandbox_outlives_its_filler_until_its_deadline() -> None:
    assert reason(pool_member("idle", started=NOW - timedelta(minutes=5))) is None
    late = reason(pool_member("idle", started=NOW - timedelta(hours=2)))
    assert late is not None and "activeDeadlineSeconds" in late


def test_a_claimed_pool_sandbox_follows_the_owner_rule() -> None:
    gone = reason(pool_member("claimed", started=NOW - timedelta(minutes=5)))
    assert gone is not None and "owner gone" in gone


def test_a_pool_from_the_environment_is_what_claimers_ask_for_not_the_pools_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import yaml

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "here",
        "clusters": [{"name": "here", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [{"name": "here", "context": {"cluster": "here", "user": "me"}}]}))
    monkeypatch.setenv("SANDBOXKIT_POOL", "warm")
    pool = SandboxPool("warm", 1, kubeconfig=str(kubeconfig))
    assert pool.config.pool is None and pool.namespace == "default"
    assert pool.spec == pool_spec(SandboxConfig())
