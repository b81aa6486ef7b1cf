"""API fidelity: optimistic concurrency, the four patch types, kubectl apply (client- and
server-side)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from api_support import ok, status_of, unique
from kubernetes import client
from kubernetes.client.rest import ApiException

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


@pytest.mark.kubectl
def test_update_with_stale_resource_version_conflicts(api_client: Any, kubectl: Any,
                                                      namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    stale = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name}, "data": {"v": "1"}})
    core.patch_namespaced_config_map(name, namespace, {"data": {"v": "2"}})

    stale.data = {"v": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map(name, namespace, stale)
    body = status_of(conflict.value)
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        f'Operation cannot be fulfilled on configmaps "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again")
    assert body["details"] == {"name": name, "kind": "configmaps"}
    assert core.read_namespaced_config_map(name, namespace).data == {"v": "2"}

    # An update naming no resourceVersion is unconditional for ConfigMaps.
    stale.metadata.resource_version = None
    assert core.replace_namespaced_config_map(name, namespace, stale).data == {"v": "stale"}

    # kubectl replace sends the resourceVersion in the file: stale means Conflict.
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "k"},
                           "metadata": {"name": name, "namespace": namespace,
                                        "resourceVersion": stale_version(core, namespace, name)}})
    core.patch_namespaced_config_map(name, namespace, {"data": {"v": "3"}})
    replaced = kubectl("replace", "-f", "-", input=manifest)
    assert replaced.returncode == 1
    assert "Error from server (Conflict)" in replaced.stderr
    assert "the object has been modified" in replaced.stderr


def stale_version(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_config_map(name, namespace).metadata.resource_version)


def test_patch_with_a_json_patch_test_precondition(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name},
                                                  "data": {"a": "1", "b": "2"}})
    patched = core.patch_namespaced_config_map(name, namespace, [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/data/c", "value": "3"},
    ])
    assert patched.data == {"a": "10", "c": "3"}

    with pytest.raises(ApiException) as failed_test:
        core.patch_namespaced_config_map(name, namespace, [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "replace", "path": "/data/a", "value": "never"},
        ])
    assert failed_test.value.status == 422
    assert status_of(failed_test.value)["reason"] == "Invalid"
    assert core.read_namespaced_config_map(name, namespace).data == {"a": "10", "c": "3"}


def _deployment(name: str) -> dict[str, Any]:
    """Zero replicas: a pod template to patch, and no pods to wait for."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [
                    {"name": "app", "image": "busybox:1.36", "command": ["true"],
                     "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox:1.36", "command": ["true"]},
                ]},
            },
        },
    }


def _containers(deployment: Any) -> list[tuple[str, str]]:
    return [(c.name, c.image) for c in deployment.spec.template.spec.containers]


def test_strategic_merge_merges_containers_by_name_where_merge_patch_replaces(
        api_client: Any, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    name = unique("dep")
    apps.create_namespaced_deployment(namespace, _deployment(name))
    change = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox:1.37"}]}}}}

    strategic = apps.patch_namespaced_deployment(name, namespace, change,
                                                 _content_type=STRATEGIC)
    assert _containers(strategic) == [("app", "busybox:1.36"), ("sidecar", "busybox:1.37")]
    assert strategic.spec.template.spec.containers[0].env[0].value == "1"
    assert strategic.spec.template.spec.containers[1].command == ["true"]

    env = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}}
    merged_env = apps.patch_namespaced_deployment(name, namespace, env, _content_type=STRATEGIC)
    assert [(e.name, e.value) for e in merged_env.spec.template.spec.containers[0].env] == [
        ("A", "1"), ("B", "2")]

    delete_directive = {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"}]}}}}
    without_sidecar = apps.patch_namespaced_deployment(name, namespace, delete_directive,
                                                       _content_type=STRATEGIC)
    assert _containers(without_sidecar) == [("app", "busybox:1.36")]

    merge = apps.patch_namespaced_deployment(name, namespace, change, _content_type=MERGE)
    assert _containers(merge) == [("sidecar", "busybox:1.37")]
    assert merge.spec.template.spec.containers[0].env is None

    labels = apps.patch_namespaced_deployment(
        name, namespace, {"metadata": {"labels": {"tier": "web", "gone": None}}},
        _content_type=MERGE)
    assert labels.metadata.labels == {"tier": "web"}


@pytest.mark.kubectl
def test_kubectl_patch_types(kubectl: Any, namespace: str) -> None:
    name = unique("dep")
    ok(kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(_deployment(name))))

    def containers() -> list[tuple[str, str]]:
        got = json.loads(ok(kubectl("get", "deployment", name, "-n", namespace, "-o", "json")))
        return [(c["name"], c["image"]) for c in got["spec"]["template"]["spec"]["containers"]]

    strategic = kubectl("patch", "deployment", name, "-n", namespace, "--type", "strategic",
                        "-p", '{"spec":{"template":{"spec":{"containers":'
                              '[{"name":"app","image":"busybox:1.37"}]}}}}')
    assert ok(strategic).strip() == f"deployment.apps/{name} patched"
    assert containers() == [("app", "busybox:1.37"), ("sidecar", "busybox:1.36")]

    ok(kubectl("patch", "deployment", name, "-n", namespace, "--type", "json",
               "-p", '[{"op":"replace","path":"/spec/template/spec/containers/1/image",'
                     '"value":"busybox:1.37"}]'))
    assert containers() == [("app", "busybox:1.37"), ("sidecar", "busybox:1.37")]

    ok(kubectl("patch", "deployment", name, "-n", namespace, "--type", "merge",
               "-p", '{"spec":{"template":{"spec":{"containers":'
                     '[{"name":"only","image":"busybox:1.36","command":["true"]}]}}}}'))
    assert containers() == [("only", "busybox:1.36")]

    bad = kubectl("patch", "deployment", name, "-n", namespace, "--type", "json",
                  "-p", '[{"op":"replace","path":"/spec/nothing/here","value":1}]')
    assert bad.returncode == 1
    assert "doc is missing path: /spec/nothing/here" in bad.stderr

    # A patch that changes nothing writes nothing: the object kubectl gets back is the one
    # it read (a ConfigMap, which no controller updates in between).
    ok(kubectl("create", "configmap", name, "--from-literal=k=v", "-n", namespace))
    unchanged = kubectl("patch", "configmap", name, "-n", namespace, "--type", "merge",
                        "-p", '{"data":{"k":"v"}}')
    assert ok(unchanged).strip() == f"configmap/{name} patched (no change)"


def _configmap_yaml(name: str, data: dict[str, str]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name, "labels": {"app": "apply"}},
                           "data": data})


@pytest.mark.kubectl
def test_kubectl_apply_create_unchanged_configure(kubectl: Any, namespace: str) -> None:
    name = unique("cm")

    def apply(data: dict[str, str]) -> str:
        return ok(kubectl("apply", "-n", namespace, "-f", "-",
                          input=_configmap_yaml(name, data))).strip()

    def live() -> dict[str, Any]:
        return dict(json.loads(ok(kubectl("get", "configmap", name, "-n", namespace,
                                          "-o", "json"))))

    assert apply({"a": "1", "b": "2"}) == f"configmap/{name} created"
    first = live()
    last_applied = json.loads(
        first["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last_applied["data"] == {"a": "1", "b": "2"}

    assert apply({"a": "1", "b": "2"}) == f"configmap/{name} unchanged"
    assert live()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    # A key dropped from the file is removed (three-way merge); one added elsewhere stays.
    ok(kubectl("patch", "configmap", name, "-n", namespace, "-p", '{"data":{"extra":"x"}}'))
    assert apply({"a": "10"}) == f"configmap/{name} configured"
    assert live()["data"] == {"a": "10", "extra": "x"}


@pytest.mark.kubectl
def test_server_side_apply_with_kubectl(kubectl: Any, namespace: str) -> None:
    name = unique("cm")

    def apply(data: dict[str, str], *flags: str) -> Any:
        return kubectl("apply", "--server-side", *flags, "-n", namespace, "-f", "-",
                       input=_configmap_yaml(name, data))

    assert ok(apply({"a": "1"})).strip() == f"configmap/{name} serverside-applied"
    assert ok(apply({"a": "1", "b": "2"})).strip() == f"configmap/{name} serverside-applied"
    got = json.loads(ok(kubectl("get", "configmap", name, "-n", namespace, "-o", "json",
                                "--show-managed-fields")))
    assert got["data"] == {"a": "1", "b": "2"}
    applied = [m for m in got["metadata"]["managedFields"] if m["operation"] == "Apply"]
    assert [(m["manager"], m["apiVersion"], m["fieldsType"]) for m in applied] == [
        ("kubectl", "v1", "FieldsV1")]
    assert set(applied[0]["fieldsV1"]["f:data"]) - {"."} == {"f:a", "f:b"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (
        got["metadata"].get("annotations") or {})


def test_server_side_apply_with_client(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": "v"}}
    created = core.patch_namespaced_config_map(
        name, namespace, body, field_manager="fidelity-tests", _content_type=APPLY)
    assert created.data == {"k": "v"}
    assert created.metadata.uid
    entries = [(m.manager, m.operation) for m in created.metadata.managed_fields]
    assert entries == [("fidelity-tests", "Apply")]

    with pytest.raises(ApiException) as no_manager:
        core.patch_namespaced_config_map(name, namespace, body, _content_type=APPLY)
    refused = status_of(no_manager.value)
    assert (refused["code"], refused["reason"]) == (422, "Invalid")
    assert refused["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                  "Required value: is required for apply patch")
    assert refused["details"]["causes"] == [{
        "reason": "FieldValueRequired", "field": "fieldManager",
        "message": "Required value: is required for apply patch"}]
