"""Pod Security admission: the standard's rules, table by table, and the plugin's answers.

The tables follow the Pod Security Standards page (kubernetes.io/docs/concepts/security/
pod-security-standards): each row is one control, a pod that breaks it, and the reason the
API server prints for it, so a check that stops firing, or fires at the wrong level, fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandboxkit.devcluster import podsecurity
from sandboxkit.devcluster.api import Api, collect_warnings
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.podsecurity import LevelVersion, evaluate, namespace_policy
from sandboxkit.devcluster.resources import require

pytestmark = pytest.mark.unit

NAMESPACES = require("", "v1", "namespaces")
PODS = require("", "v1", "pods")
JOBS = require("batch", "v1", "jobs")
BASELINE, RESTRICTED = LevelVersion("baseline"), LevelVersion("restricted")


def restricted_pod() -> dict[str, Any]:
    """A pod every check passes: the starting point each row breaks in one place."""
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "busybox", "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        },
    }


def breaking(path: str, value: Any) -> dict[str, Any]:
    """``restricted_pod`` with ``value`` set at a dotted path (``c`` is the container)."""
    pod = copy.deepcopy(restricted_pod())
    target = pod["spec"]
    keys = path.split(".")
    if keys[0] == "c":
        target, keys = target["containers"][0], keys[1:]
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    return pod


def reasons(level: LevelVersion, pod: dict[str, Any]) -> list[str]:
    return [reason for reason, _ in evaluate(level, pod["metadata"], pod["spec"])]


# control, the breaking change, the reason -- baseline controls fail both levels
BASELINE_ROWS = [
    ("host namespaces", "hostNetwork", True, "host namespaces"),
    ("host PID", "hostPID", True, "host namespaces"),
    ("privileged", "c.securityContext.privileged", True, "privileged"),
    ("capabilities", "c.securityContext.capabilities.add", ["SYS_ADMIN"], None),
    ("hostPath", "volumes", [{"name": "h", "hostPath": {"path": "/"}}], None),
    ("host ports", "c.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort"),
    ("SELinux", "securityContext.seLinuxOptions", {"type": "spc_t"}, "seLinuxOptions"),
    ("/proc mount", "c.securityContext.procMount", "Unmasked", "procMount"),
    ("seccomp", "securityContext.seccompProfile", {"type": "Unconfined"}, "seccompProfile"),
    ("sysctls", "securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}],
     "forbidden sysctls"),
    ("AppArmor", "c.securityContext.appArmorProfile", {"type": "Unconfined"},
     "forbidden AppArmor profile"),
    ("HostProcess", "c.securityContext.windowsOptions", {"hostProcess": True}, "hostProcess"),
]
# the restricted level words these two differently from baseline
RESTRICTED_WORDING = {"capabilities": "unrestricted capabilities",
                      "hostPath": "restricted volume types"}
BASELINE_WORDING = {"capabilities": "non-default capabilities", "hostPath": "hostPath volumes"}

RESTRICTED_ROWS = [
    ("volume types", "volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}],
     "restricted volume types"),
    ("privilege escalation", "c.securityContext.allowPrivilegeEscalation", True,
     "allowPrivilegeEscalation != false"),
    ("running as non-root", "securityContext.runAsNonRoot", False, "runAsNonRoot != true"),
    ("running as non-root user", "securityContext.runAsUser", 0, "runAsUser=0"),
    ("seccomp unset", "securityContext.seccompProfile", None, "seccompProfile"),
    ("capabilities unset", "c.securityContext.capabilities", None,
     "unrestricted capabilities"),
    ("capabilities not dropped", "c.securityContext.capabilities", {"drop": ["CHOWN"]},
     "unrestricted capabilities"),
    ("capabilities added", "c.securityContext.capabilities",
     {"drop": ["ALL"], "add": ["CHOWN"]}, "unrestricted capabilities"),
]


def test_the_starting_pod_passes_both_levels() -> None:
    assert reasons(BASELINE, restricted_pod()) == []
    assert reasons(RESTRICTED, restricted_pod()) == []


@pytest.mark.parametrize(("control", "path", "value", "reason"), BASELINE_ROWS,
                         ids=[r[0] for r in BASELINE_ROWS])
def test_baseline_controls(control: str, path: str, value: Any, reason: str | None) -> None:
    pod = breaking(path, value)
    assert reasons(BASELINE, pod) == [reason or BASELINE_WORDING[control]]
    assert reasons(RESTRICTED, pod) == [reason or RESTRICTED_WORDING[control]]
    assert reasons(LevelVersion("privileged"), pod) == []


@pytest.mark.parametrize(("control", "path", "value", "reason"), RESTRICTED_ROWS,
                         ids=[r[0] for r in RESTRICTED_ROWS])
def test_restricted_controls(control: str, path: str, value: Any, reason: str) -> None:
    pod = breaking(path, value)
    assert reasons(BASELINE, pod) == []
    assert reasons(RESTRICTED, pod) == [reason]


@pytest.mark.parametrize(("path", "value"), [
    ("c.securityContext.capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
    ("volumes", [{"name": v, v: {}} for v in ("emptyDir", "configMap", "secret", "projected",
                                             "downwardAPI", "persistentVolumeClaim")]),
    ("securityContext.seccompProfile", {"type": "Localhost", "localhostProfile": "p.json"}),
    ("securityContext.sysctls", [{"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]),
    ("securityContext.seLinuxOptions", {"type": "container_t", "level": "s0:c1"}),
    ("c.securityContext.procMount", "Default"),
])
def test_what_the_standard_allows_passes_restricted(path: str, value: Any) -> None:
    assert reasons(RESTRICTED, breaking(path, value)) == []


def test_container_level_settings_satisfy_pod_level_requirements() -> None:
    pod = restricted_pod()
    pod["spec"].pop("securityContext")
    pod["spec"]["containers"][0]["securityContext"].update(
        runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert reasons(RESTRICTED, pod) == []


def test_windows_pods_skip_the_linux_only_controls() -> None:
    pod = breaking("c.securityContext", {})
    pod["spec"]["os"] = {"name": "windows"}
    assert reasons(RESTRICTED, pod) == []


def test_older_versions_leave_out_later_checks() -> None:
    pod = breaking("securityContext.runAsUser", 0)
    assert reasons(LevelVersion("restricted", 22), pod) == []  # runAsUser came in v1.23
    assert reasons(LevelVersion("restricted", 23), pod) == ["runAsUser=0"]


def test_namespace_policy_defaults_warn_to_enforce_and_validates_labels() -> None:
    policy, causes = namespace_policy({"pod-security.kubernetes.io/enforce": "baseline",
                                       "pod-security.kubernetes.io/enforce-version": "v1.30"})
    assert (str(policy.enforce), str(policy.warn), causes) == (
        "baseline:v1.30", "baseline:v1.30", [])
    policy, _ = namespace_policy({"pod-security.kubernetes.io/enforce": "baseline",
                                  "pod-security.kubernetes.io/warn": "restricted"})
    assert str(policy.warn) == "restricted:latest"
    policy, causes = namespace_policy({"pod-security.kubernetes.io/enforce": "strict"})
    assert str(policy.enforce) == "restricted:latest"  # fails closed
    assert [c["field"] for c in causes] == [
        "metadata.labels[pod-security.kubernetes.io/enforce]"]


def cluster(labels: dict[str, str]) -> Api:
    api = Api()
    api.create(NAMESPACES, {"metadata": {"name": "ns", "labels": labels}})
    api.admission.append(podsecurity.pod_security)
    return api


def test_enforce_refuses_pods_and_names_every_violation() -> None:
    api = cluster({"pod-security.kubernetes.io/enforce": "restricted"})
    pod = breaking("c.securityContext.allowPrivilegeEscalation", True)
    pod["spec"]["hostNetwork"] = True
    with pytest.raises(ApiError) as caught:
        api.create(PODS, pod)
    assert caught.value.code == 403
    assert caught.value.message == (
        'pods "p" is forbidden: violates PodSecurity "restricted:latest": host namespaces '
        "(hostNetwork=true), allowPrivilegeEscalation != false (container \"c\" must set "
        "securityContext.allowPrivilegeEscalation=false)")


def test_workloads_are_admitted_with_a_warning() -> None:
    api = cluster({"pod-security.kubernetes.io/enforce": "restricted"})
    template = breaking("hostPID", True)
    job = {"metadata": {"name": "j", "namespace": "ns"},
           "spec": {"template": {"metadata": {}, "spec": {
               **template["spec"], "restartPolicy": "Never"}}}}
    with collect_warnings() as warnings:
        api.create(JOBS, job)
    assert warnings == [
        'would violate PodSecurity "restricted:latest": host namespaces (hostPID=true)']


def test_warn_level_warns_on_pods_enforce_allows() -> None:
    api = cluster({"pod-security.kubernetes.io/warn": "restricted"})
    with collect_warnings() as warnings:
        api.create(PODS, breaking("securityContext.runAsUser", 0))
    assert warnings == ['would violate PodSecurity "restricted:latest": runAsUser=0 '
                        "(pod must not set runAsUser=0)"]


def test_namespace_labels_are_validated_on_change_only() -> None:
    api = cluster({})
    namespace = api.get(NAMESPACES, None, "ns")
    namespace["metadata"]["labels"] = {"pod-security.kubernetes.io/warn-version": "1.30"}
    with pytest.raises(ApiError) as caught:
        api.update(NAMESPACES, namespace)
    assert caught.value.code == 422
    assert 'Invalid value: "1.30": must be "latest" or "v1.x"' in caught.value.message

    # a namespace already carrying the invalid label (from before the plugin) may still change
    stale = cluster({"pod-security.kubernetes.io/warn-version": "1.30"})
    namespace = stale.get(NAMESPACES, None, "ns")
    namespace["metadata"]["annotations"] = {"note": "kept"}
    assert stale.update(NAMESPACES, namespace)["metadata"]["annotations"] == {"note": "kept"}
