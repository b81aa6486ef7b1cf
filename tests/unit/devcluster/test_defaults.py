"""Defaulting matches what a real API server stores."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster.defaults import apply_defaults, default_job_selector
from sandboxkit.devcluster.resources import ResourceType, lookup


def rt(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


def test_pod_defaults() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}]}}
    apply_defaults(rt("", "pods"), pod)
    spec = pod["spec"]
    assert {k: spec[k] for k in ("restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy",
                                 "schedulerName", "securityContext", "serviceAccountName",
                                 "serviceAccount", "enableServiceLinks", "priority",
                                 "preemptionPolicy")} == {
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
        "securityContext": {}, "serviceAccountName": "default", "serviceAccount": "default",
        "enableServiceLinks": True, "priority": 0, "preemptionPolicy": "PreemptLowerPriority"}
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    container = spec["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}


def test_existing_values_and_tolerations_kept() -> None:
    pod: dict[str, Any] = {"spec": {
        "restartPolicy": "Never", "serviceAccountName": "runner",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 10}],
        "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}
    apply_defaults(rt("", "pods"), pod)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccount"] == "runner"
    assert [t["key"] for t in pod["spec"]["tolerations"]] == [
        "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    assert pod["spec"]["tolerations"][0]["tolerationSeconds"] == 10
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


@pytest.mark.parametrize(("image", "policy"), [
    ("busybox", "Always"),
    ("busybox:latest", "Always"),
    ("busybox:1.36", "IfNotPresent"),
    ("localhost:5000/app", "Always"),
    ("localhost:5000/app:v1", "IfNotPresent"),
    ("busybox@sha256:abc", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "c", "image": image}]}}
    apply_defaults(rt("", "pods"), pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_job_defaults_and_selector() -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"}, "spec": {"template": {
        "metadata": {"labels": {"app": "sb"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i:1"}]}}}}
    apply_defaults(rt("batch", "jobs"), job)
    default_job_selector(job, "uid-9")
    spec = job["spec"]
    assert {k: spec[k] for k in ("parallelism", "completions", "backoffLimit", "completionMode",
                                 "suspend", "podReplacementPolicy")} == {
        "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": False, "podReplacementPolicy": "TerminatingOrFailed"}
    assert "manualSelector" not in spec
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-9"}}
    expected = {"app": "sb", "controller-uid": "uid-9", "job-name": "j",
                "batch.kubernetes.io/controller-uid": "uid-9",
                "batch.kubernetes.io/job-name": "j"}
    assert spec["template"]["metadata"]["labels"] == expected
    # the Job shares its template's label map, as in Kubernetes
    assert job["metadata"]["labels"] == expected
    template_spec = spec["template"]["spec"]
    assert template_spec["dnsPolicy"] == "ClusterFirst"
    assert "serviceAccountName" not in template_spec
    assert "tolerations" not in template_spec


def test_job_parallelism_only() -> None:
    job: dict[str, Any] = {"spec": {"parallelism": 3, "template": {"spec": {}}}}
    apply_defaults(rt("batch", "jobs"), job)
    assert job["spec"]["parallelism"] == 3
    assert "completions" not in job["spec"]


def test_manual_selector_left_alone() -> None:
    job: dict[str, Any] = {"metadata": {"name": "j"},
                           "spec": {"manualSelector": True, "selector": {"matchLabels": {"a": "b"}},
                                    "template": {"metadata": {"labels": {"a": "b"}}}}}
    default_job_selector(job, "u")
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert job["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


def test_deployment_defaults() -> None:
    deployment: dict[str, Any] = {"spec": {"template": {"spec": {"containers": []}}}}
    apply_defaults(rt("apps", "deployments"), deployment)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_service_namespace_secret_defaults() -> None:
    service: dict[str, Any] = {"spec": {"ports": [{"port": 80}]}}
    apply_defaults(rt("", "services"), service)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["sessionAffinity"] == "None"
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]

    namespace: dict[str, Any] = {"metadata": {"name": "team"}}
    apply_defaults(rt("", "namespaces"), namespace)
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    assert namespace["spec"] == {"finalizers": ["kubernetes"]}
    assert namespace["status"] == {"phase": "Active"}

    secret: dict[str, Any] = {"metadata": {"name": "s"}}
    apply_defaults(rt("", "secrets"), secret)
    assert secret["type"] == "Opaque"


def test_binding_subject_api_groups() -> None:
    binding: dict[str, Any] = {"subjects": [{"kind": "ServiceAccount", "name": "a"},
                                            {"kind": "User", "name": "u"}]}
    apply_defaults(rt("rbac.authorization.k8s.io", "rolebindings"), binding)
    # a ServiceAccount's group is "", which the API server never serializes (omitempty)
    assert [s.get("apiGroup") for s in binding["subjects"]] == [
        None, "rbac.authorization.k8s.io"]
