"""API fidelity: namespaces, ConfigMap CRUD, kubectl output, label and field selectors.

Everything asserted here is documented Kubernetes behaviour, so the file passes unchanged
against a real API server (kind) and against the devcluster.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import ok, start_job, status_of, unique
from kubernetes import client
from kubernetes.client.rest import ApiException
from workload_support import watch_until

TEST_LABEL = "sandboxkit-test"


def _names(items: list[Any]) -> set[str]:
    return {item.metadata.name for item in items}


@pytest.mark.kubectl
def test_namespace_create_get_list_delete(api_client: Any, kubectl: Any) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("skt-ns")
    created = core.create_namespace(
        {"metadata": {"name": name, "labels": {TEST_LABEL: "true", "fidelity": name}}})
    try:
        assert created.status.phase == "Active"
        assert created.spec.finalizers == ["kubernetes"]
        # Every namespace carries its name as a label (NamespaceDefaultLabelName, GA in 1.22).
        assert created.metadata.labels["kubernetes.io/metadata.name"] == name

        fetched = core.read_namespace(name)
        assert fetched.metadata.uid == created.metadata.uid
        listed = core.list_namespace(label_selector=f"fidelity={name}")
        assert _names(listed.items) == {name}
        by_field = core.list_namespace(field_selector=f"metadata.name={name}")
        assert _names(by_field.items) == {name}

        as_json = json.loads(ok(kubectl("get", "namespace", name, "-o", "json")))
        assert (as_json["apiVersion"], as_json["kind"]) == ("v1", "Namespace")
        assert as_json["metadata"]["uid"] == created.metadata.uid
        table = ok(kubectl("get", "namespace", name)).splitlines()
        assert table[0].split() == ["NAME", "STATUS", "AGE"]
        assert table[1].split()[:2] == [name, "Active"]
    finally:
        deleted = core.delete_namespace(name)
    # A namespace is finalized, not removed at once: the reply is the namespace, Terminating.
    assert deleted["kind"] == "Namespace"
    assert deleted["status"]["phase"] == "Terminating"
    assert deleted["metadata"]["deletionTimestamp"]
    ok(kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=90s", timeout=100))


def test_configmap_crud(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "labels": {"app": "crud"}}, "data": {"a": "1"}})
    meta = created.metadata
    assert (meta.name, meta.namespace, created.data) == (name, namespace, {"a": "1"})
    assert meta.uid and meta.resource_version and meta.creation_timestamp

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    body = status_of(exists.value)
    assert (body["code"], body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == f'configmaps "{name}" already exists'
    assert body["details"] == {"name": name, "kind": "configmaps"}

    fetched = core.read_namespaced_config_map(name, namespace)
    assert fetched.metadata.resource_version == meta.resource_version

    fetched.data["b"] = "2"
    replaced = core.replace_namespaced_config_map(name, namespace, fetched)
    assert replaced.data == {"a": "1", "b": "2"}
    assert replaced.metadata.resource_version != meta.resource_version
    assert replaced.metadata.uid == meta.uid
    assert replaced.metadata.creation_timestamp == meta.creation_timestamp

    patched = core.patch_namespaced_config_map(name, namespace, {"data": {"a": None}})
    assert patched.data == {"b": "2"}

    listed = core.list_namespaced_config_map(namespace, label_selector="app=crud")
    assert _names(listed.items) == {name}
    assert listed.metadata.resource_version

    gone = core.delete_namespaced_config_map(name, namespace)
    assert gone["kind"] == "Status" and gone["status"] == "Success"
    assert gone["details"] == {"name": name, "kind": "configmaps", "uid": meta.uid}
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map(name, namespace)
    body = status_of(missing.value)
    assert (body["code"], body["reason"]) == (404, "NotFound")
    assert body["message"] == f'configmaps "{name}" not found'
    assert body["details"] == {"name": name, "kind": "configmaps"}


@pytest.mark.kubectl
def test_kubectl_get_json(kubectl: Any, namespace: str) -> None:
    name = unique("cm")
    ok(kubectl("create", "configmap", name, "--from-literal=k=v", "-n", namespace))
    ok(kubectl("label", "configmap", name, "app=json", "-n", namespace))

    single = json.loads(ok(kubectl("get", "configmap", name, "-n", namespace, "-o", "json")))
    assert (single["apiVersion"], single["kind"]) == ("v1", "ConfigMap")
    assert single["data"] == {"k": "v"}
    assert single["metadata"]["labels"] == {"app": "json"}

    listing = json.loads(ok(kubectl("get", "configmaps", "-l", "app=json", "-n", namespace,
                                    "-o", "json")))
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    assert [(i["kind"], i["metadata"]["name"]) for i in listing["items"]] == [
        ("ConfigMap", name)]

    table = ok(kubectl("get", "configmap", name, "-n", namespace)).splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"]
    assert table[1].split()[:2] == [name, "1"]
    assert ok(kubectl("get", "configmap", name, "-n", namespace, "-o", "name")).strip() == (
        f"configmap/{name}")
    jsonpath = ok(kubectl("get", "configmap", name, "-n", namespace,
                          "-o", "jsonpath={.data.k}"))
    assert jsonpath == "v"


@pytest.mark.kubectl
def test_kubectl_get_jobs_and_pods_columns(api_client: Any, kubectl: Any,
                                           namespace: str) -> None:
    job = start_job(api_client, namespace, "cols")
    table = ok(kubectl("get", "jobs", "-l", f"fidelity={job.name}", "-n", namespace))
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert len(rows) == 1
    assert rows[0].split()[:3] == [job.name, "Running", "0/1"]

    wide = ok(kubectl("get", "jobs", "-l", f"fidelity={job.name}", "-n", namespace,
                      "-o", "wide")).splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE",
                               "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[-3:] == [
        "main", "busybox", f"batch.kubernetes.io/controller-uid={job.uid}"]

    pods = ok(kubectl("get", "pods", "-l", f"job-name={job.name}", "-n", namespace))
    header, *rows = pods.splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [row.split()[0] for row in rows] == [job.pod.metadata.name]
    assert rows[0].split()[1] in ("0/1", "1/1")
    wide_pods = ok(kubectl("get", "pods", "-l", f"job-name={job.name}", "-n", namespace,
                           "-o", "wide")).splitlines()[0]
    assert wide_pods.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                 "NOMINATED", "NODE", "READINESS", "GATES"]
    no_match = kubectl("get", "jobs", "-l", "fidelity=nothing-has-this", "-n", namespace)
    assert no_match.returncode == 0
    assert no_match.stdout == ""
    assert "No resources found" in no_match.stderr


LABELLED = {
    "web-prod": {"tier": "web", "env": "prod"},
    "db-prod": {"tier": "db", "env": "prod"},
    "web-dev": {"tier": "web", "env": "dev"},
    "untiered": {"env": "test"},
}
SELECTIONS = [
    ("tier=web", {"web-prod", "web-dev"}),
    ("tier==web", {"web-prod", "web-dev"}),
    ("tier!=web", {"db-prod", "untiered"}),
    ("tier in (web,db)", {"web-prod", "db-prod", "web-dev"}),
    ("tier notin (web)", {"db-prod", "untiered"}),
    ("tier", {"web-prod", "db-prod", "web-dev"}),
    ("!tier", {"untiered"}),
    ("env=prod,tier=web", {"web-prod"}),
    ("env in (prod,dev),tier notin (db)", {"web-prod", "web-dev"}),
]


@pytest.fixture
def labelled_configmaps(api_client: Any, namespace: str) -> str:
    """Four ConfigMaps sharing ``set=<unique>``, labelled as in LABELLED; returns the set."""
    core = client.CoreV1Api(api_client)
    group = unique("sel")
    for name, labels in LABELLED.items():
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"set": group, **labels}}})
    return group


@pytest.mark.parametrize(("selector", "expected"), SELECTIONS)
def test_label_selectors_with_client(api_client: Any, namespace: str, labelled_configmaps: str,
                                     selector: str, expected: set[str]) -> None:
    core = client.CoreV1Api(api_client)
    listed = core.list_namespaced_config_map(
        namespace, label_selector=f"set={labelled_configmaps},{selector}")
    assert _names(listed.items) == expected


@pytest.mark.kubectl
def test_label_selectors_with_kubectl(kubectl: Any, namespace: str,
                                      labelled_configmaps: str) -> None:
    for selector, expected in SELECTIONS:
        out = ok(kubectl("get", "configmaps", "-n", namespace, "-o", "name",
                         "-l", f"set={labelled_configmaps},{selector}"))
        assert {line.removeprefix("configmap/") for line in out.split()} == expected, selector


def test_field_selectors(api_client: Any, namespace: str, labelled_configmaps: str) -> None:
    core = client.CoreV1Api(api_client)
    group = f"set={labelled_configmaps}"
    by_name = core.list_namespaced_config_map(namespace, field_selector="metadata.name=web-dev")
    assert _names(by_name.items) == {"web-dev"}
    others = core.list_namespaced_config_map(
        namespace, label_selector=group, field_selector="metadata.name!=web-dev")
    assert _names(others.items) == {"web-prod", "db-prod", "untiered"}
    both = core.list_namespaced_config_map(
        namespace, label_selector=group,
        field_selector=f"metadata.name!=web-dev,metadata.namespace={namespace}")
    assert _names(both.items) == {"web-prod", "db-prod", "untiered"}
    across = core.list_config_map_for_all_namespaces(
        label_selector=group, field_selector="metadata.name=db-prod")
    assert [(i.metadata.namespace, i.metadata.name) for i in across.items] == [
        (namespace, "db-prod")]


@pytest.mark.kubectl
def test_pod_phase_field_selector(api_client: Any, kubectl: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    job = start_job(api_client, namespace, "phase")
    pod = job.pod.metadata.name
    watch_until(core.list_namespaced_pod, lambda _, p: p.status.phase == "Running", namespace,
              field_selector=f"metadata.name={pod}")
    running = core.list_namespaced_pod(namespace, field_selector="status.phase=Running")
    assert _names(running.items) == {pod}
    pending = core.list_namespaced_pod(namespace, field_selector="status.phase=Pending")
    assert _names(pending.items) == set()
    not_done = core.list_namespaced_pod(
        namespace, field_selector="status.phase!=Succeeded,status.phase!=Failed")
    assert _names(not_done.items) == {pod}
    out = ok(kubectl("get", "pods", "-n", namespace, "-o", "name",
                     "--field-selector", "status.phase=Running"))
    assert out.split() == [f"pod/{pod}"]


def test_bad_selectors_are_bad_requests(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as bad_label:
        core.list_namespaced_config_map(namespace, label_selector="tier in web")
    assert status_of(bad_label.value)["reason"] == "BadRequest"
    assert bad_label.value.status == 400

    with pytest.raises(ApiException) as unknown_field:
        core.list_namespaced_config_map(namespace, field_selector="data.k=v")
    body = status_of(unknown_field.value)
    assert (body["code"], body["reason"]) == (400, "BadRequest")
    assert body["message"] == (
        '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"')

    with pytest.raises(ApiException) as pod_field:
        core.list_namespaced_pod(namespace, field_selector="spec.containers=x")
    body = status_of(pod_field.value)
    assert (body["code"], body["message"]) == (400, "field label not supported: spec.containers")
