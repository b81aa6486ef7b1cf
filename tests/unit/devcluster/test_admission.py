"""Admission plugins: rejections worded as the API server words them, and their defaults."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster import admission
from sandboxkit.devcluster.api import SYSTEM_USER, Api
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.resources import ResourceType, require

pytestmark = pytest.mark.unit

PODS = require("", "v1", "pods")
JOBS = require("batch", "v1", "jobs")
CONFIG_MAPS = require("", "v1", "configmaps")


def cluster(*objects: tuple[ResourceType, dict[str, Any]]) -> Api:
    """A real, empty-but-for-``objects`` API (no admission: these tests call plugins).

    A ``status`` in an object is written through the status subresource after the create,
    which (as on a real server) ignores it.
    """
    api = Api()
    for rt, obj in objects:
        created = api.create(rt, obj)
        if "status" in obj:
            created["status"] = {**(created.get("status") or {}), **obj["status"]}
            api.update(rt, created, subresource="status")
    return api


def ns(name: str, **status: Any) -> tuple[ResourceType, dict[str, Any]]:
    return require("", "v1", "namespaces"), {"metadata": {"name": name}, "status": status}


def sa(name: str = "default", namespace: str = "default", **extra: Any
       ) -> tuple[ResourceType, dict[str, Any]]:
    return require("", "v1", "serviceaccounts"), {
        "metadata": {"name": name, "namespace": namespace}, **extra}


def quota(hard: dict[str, str], name: str = "q") -> tuple[ResourceType, dict[str, Any]]:
    return require("", "v1", "resourcequotas"), {
        "metadata": {"name": name, "namespace": "default"}, "spec": {"hard": hard}}


def pod(name: str = "p", requests: dict[str, str] | None = None,
        limits: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]},
        "status": {"phase": "Running"},
    }


def run(plugin, api, rt, obj, operation: str = "CREATE") -> dict[str, Any]:
    plugin(api, rt, operation, obj, None, SYSTEM_USER)
    return obj


def rejection(plugin, api, rt, obj) -> ApiError:
    with pytest.raises(ApiError) as info:
        run(plugin, api, rt, obj)
    return info.value


def test_missing_namespace_is_not_found() -> None:
    err = rejection(admission.namespace_lifecycle, cluster(), PODS, pod())
    assert (err.code, err.reason) == (404, "NotFound")
    assert err.message == 'namespaces "default" not found'


def test_terminating_namespace_forbids_new_content() -> None:
    api = cluster(ns("default", phase="Terminating"))
    err = rejection(admission.namespace_lifecycle, api, JOBS,
                    {"metadata": {"name": "j", "namespace": "default"}})
    assert err.code == 403
    assert err.message == ('jobs.batch "j" is forbidden: unable to create new content in '
                           "namespace default because it is being terminated")
    assert err.details["causes"][0]["reason"] == "NamespaceTerminating"
    # updates of what is already there are still allowed
    run(admission.namespace_lifecycle, api, JOBS,
        {"metadata": {"name": "j", "namespace": "default"}}, "UPDATE")


def test_missing_service_account_names_the_generate_name_prefix() -> None:
    obj = pod("job1-x2b4z", generateName="job1-")
    obj["spec"]["serviceAccountName"] = "foo"
    err = rejection(admission.service_account, cluster(sa()), PODS, obj)
    assert err.code == 403
    assert err.message == ('pods "job1-" is forbidden: error looking up service account '
                           'default/foo: serviceaccount "foo" not found')


def test_service_account_defaults_and_mounts_the_token() -> None:
    obj = run(admission.service_account, cluster(sa()), PODS, pod())
    spec = obj["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    (volume,) = spec["volumes"]
    assert volume["name"].startswith("kube-api-access-") and len(volume["name"]) == 21
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert spec["containers"][0]["volumeMounts"] == [{
        "name": volume["name"], "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]


def test_automount_false_on_the_account_skips_the_token() -> None:
    api = cluster(sa(automountServiceAccountToken=False))
    assert "volumes" not in run(admission.service_account, api, PODS, pod())["spec"]


def test_limit_ranger_defaults_and_annotates() -> None:
    limit_range = (require("", "v1", "limitranges"), {
        "metadata": {"name": "lr", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"},
                             "defaultRequest": {"cpu": "100m"}}]}})
    obj = run(admission.limit_ranger, cluster(limit_range), PODS, pod())
    assert obj["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m"}, "limits": {"cpu": "500m"}}
    assert obj["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu request for container app; cpu limit for container app")


def test_limit_ranger_rejects_above_max() -> None:
    limit_range = (require("", "v1", "limitranges"), {
        "metadata": {"name": "lr", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}})
    err = rejection(admission.limit_ranger, cluster(limit_range), PODS,
                    pod(requests={"cpu": "500m"}, limits={"cpu": "1500m"}))
    assert err.message == ('pods "p" is forbidden: maximum cpu usage per Container is 1, '
                           "but limit is 1500m.")


def test_quota_exceeded_message() -> None:
    api = cluster(
        quota({"requests.cpu": "2", "requests.memory": "1Gi", "pods": "10"}),
        (PODS, pod("a", requests={"cpu": "1500m", "memory": "512Mi"})),
        (PODS, {**pod("done", requests={"cpu": "1"}), "status": {"phase": "Succeeded"}}),
    )
    err = rejection(admission.resource_quota, api, PODS,
                    pod("b-k7x2q", generateName="b-",
                        requests={"cpu": "1", "memory": "256Mi"}))
    assert err.code == 403
    assert err.message == (
        'pods "b-k7x2q" is forbidden: exceeded quota: q, requested: requests.cpu=1, '
        "used: requests.cpu=1500m, limited: requests.cpu=2")


def test_quota_pod_count() -> None:
    api = cluster(quota({"pods": "1"}), (PODS, pod("a")))
    err = rejection(admission.resource_quota, api, PODS, pod("b"))
    assert err.message == ('pods "b" is forbidden: exceeded quota: q, requested: pods=1, '
                           "used: pods=1, limited: pods=1")


def test_quota_requires_tracked_compute_resources() -> None:
    api = cluster(quota({"limits.cpu": "2", "requests.memory": "1Gi"}))
    err = rejection(admission.resource_quota, api, PODS, pod(requests={"cpu": "1"}))
    assert err.message == ('pods "p" is forbidden: failed quota: q: must specify limits.cpu '
                           "for: app; requests.memory for: app")


def job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox", "command": ["true"]}]}}}}


def test_quota_counts_objects() -> None:
    api = cluster(quota({"count/jobs.batch": "1", "configmaps": "5"}), (JOBS, job("old")))
    err = rejection(admission.resource_quota, api, JOBS, job("new"))
    assert err.message == ('jobs.batch "new" is forbidden: exceeded quota: q, requested: '
                           "count/jobs.batch=1, used: count/jobs.batch=1, "
                           "limited: count/jobs.batch=1")
    run(admission.resource_quota, api, CONFIG_MAPS,
        {"metadata": {"name": "cm", "namespace": "default"}})


def test_namespace_usage_sums_in_canonical_form() -> None:
    api = cluster((PODS, pod("a", requests={"memory": "512Mi", "cpu": "250m"})),
                      (PODS, pod("b", requests={"memory": "1Gi", "cpu": "750m"})))
    (_, q) = quota({"requests.memory": "4Gi", "requests.cpu": "4", "count/pods": "9"})
    used = admission.namespace_usage(api, q)
    assert {k: str(v) for k, v in used.items()} == {
        "requests.memory": "1536Mi", "requests.cpu": "1", "count/pods": "2"}
