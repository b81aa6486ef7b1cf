"""API fidelity: discovery, as kubectl and the official dynamic client consume it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import ok, unique
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from workload_support import job_manifest


def _api_resources(kubectl: Any, *flags: str) -> dict[str, list[str]]:
    """``kubectl api-resources`` rows keyed by NAME (short names may be absent)."""
    header, *lines = ok(kubectl("api-resources", *flags)).splitlines()
    columns = header.split()
    assert columns == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    starts = [header.index(column) for column in columns]
    rows = {}
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.setdefault(cells[0], cells[1:])
    return rows


@pytest.mark.kubectl
def test_kubectl_api_resources(kubectl: Any) -> None:
    rows = _api_resources(kubectl)
    assert rows["pods"] == ["po", "v1", "true", "Pod"]
    assert rows["jobs"] == ["", "batch/v1", "true", "Job"]
    assert rows["configmaps"] == ["cm", "v1", "true", "ConfigMap"]
    assert rows["namespaces"] == ["ns", "v1", "false", "Namespace"]
    assert rows["serviceaccounts"] == ["sa", "v1", "true", "ServiceAccount"]
    assert rows["events"][1:] == ["v1", "true", "Event"]

    batch = ok(kubectl("api-resources", "--api-group=batch", "-o", "name")).split()
    assert "jobs.batch" in batch
    assert "pods" not in batch
    namespaced_core = ok(kubectl("api-resources", "--api-group=", "--namespaced=false",
                                 "-o", "name")).split()
    assert "namespaces" in namespaced_core
    assert "configmaps" not in namespaced_core
    verbs = _api_resources(kubectl, "--verbs=create", "--api-group=authorization.k8s.io")
    assert "selfsubjectaccessreviews" in verbs


@pytest.mark.kubectl
def test_short_names_and_categories_resolve(kubectl: Any, namespace: str) -> None:
    name = unique("cm")
    ok(kubectl("create", "configmap", name, "-n", namespace))
    assert ok(kubectl("get", "cm", name, "-n", namespace, "-o", "name")).strip() == (
        f"configmap/{name}")
    assert ok(kubectl("get", "job.batch", "-n", namespace, "-o", "name")).strip() == ""
    out = kubectl("get", "all", "-n", namespace, "-o", "name")
    assert out.returncode == 0, out.stderr
    assert f"configmap/{name}" not in out.stdout


def test_discovery_documents(api_client: Any) -> None:
    core_versions = client.CoreApi(api_client).get_api_versions()
    assert core_versions.versions == ["v1"]
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups["batch"].preferred_version.group_version == "batch/v1"
    assert "apps" in groups and "rbac.authorization.k8s.io" in groups
    batch_resources = client.BatchV1Api(api_client).get_api_resources()
    assert batch_resources.group_version == "batch/v1"
    jobs = next(r for r in batch_resources.resources if r.name == "jobs")
    assert (jobs.kind, jobs.namespaced, jobs.singular_name) == ("Job", True, "job")
    assert {"create", "delete", "get", "list", "patch", "update", "watch"} <= set(jobs.verbs)
    assert "all" in jobs.categories
    names = {r.name for r in batch_resources.resources}
    assert "jobs/status" in names
    version = client.VersionApi(api_client).get_code()
    assert version.major == "1"
    assert version.git_version.startswith("v1.")


def test_dynamic_client_drives_jobs(api_client: Any, namespace: str) -> None:
    dynamic = DynamicClient(api_client)
    jobs = dynamic.resources.get(api_version="batch/v1", kind="Job")
    assert (jobs.group, jobs.api_version, jobs.name, jobs.namespaced) == (
        "batch", "v1", "jobs", True)
    assert dynamic.resources.get(api_version="batch/v1", name="jobs").kind == "Job"

    name = unique("dyn")
    manifest = job_manifest(name, labels={"dynamic": name})
    manifest["spec"]["suspend"] = True  # nothing needs to run
    created = jobs.create(body=manifest, namespace=namespace)
    assert created.metadata.name == name
    assert created.spec.suspend is True

    fetched = jobs.get(name=name, namespace=namespace)
    assert fetched.metadata.uid == created.metadata.uid
    listed = jobs.get(namespace=namespace, label_selector=f"dynamic={name}")
    assert listed.kind == "JobList"
    assert [item.metadata.name for item in listed.items] == [name]

    patched = jobs.patch(body={"metadata": {"labels": {"patched": "yes"}}}, name=name,
                         namespace=namespace, content_type="application/merge-patch+json")
    assert patched.metadata.labels["patched"] == "yes"
    jobs.delete(name=name, namespace=namespace, propagation_policy="Background")

    configmaps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    cm = configmaps.create(body={"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": name}, "data": {"k": "v"}},
                           namespace=namespace)
    assert cm.data.k == "v"
    as_dict = json.loads(json.dumps(configmaps.get(name=name, namespace=namespace).to_dict()))
    assert as_dict["data"] == {"k": "v"}
