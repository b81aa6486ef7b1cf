"""Security profiles against Pod Security admission, on the devcluster or a real cluster.

A namespace labelled ``pod-security.kubernetes.io/enforce`` decides which sandboxes may
start: the default ("baseline") sandbox passes baseline but not restricted, and must fail
fast with a typed error rather than time out; ``security_profile="restricted"`` starts in a
restricted namespace and runs as a non-root user.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from sandbox_support import STARTUP_TIMEOUT, MakeSandbox, label_namespace
from workload_support import job_manifest, pod_spec, wait_for_event

from sandboxkit.errors import PodSecurityViolation

pytestmark = pytest.mark.integration

ENFORCE = "pod-security.kubernetes.io/enforce"


def test_restricted_namespace_refuses_the_default_sandbox_fast(
    make_sandbox: MakeSandbox, api_client: Any, namespace: str,
) -> None:
    label_namespace(api_client, namespace, {ENFORCE: "restricted"})
    sandbox = make_sandbox()
    assert sandbox.config.security_profile == "baseline"
    started = time.monotonic()
    with pytest.raises(PodSecurityViolation) as caught:
        sandbox.init()
    # the Job's FailedCreate ends the wait, not the startup timeout
    assert time.monotonic() - started < STARTUP_TIMEOUT / 4
    error = caught.value
    assert error.level == "restricted:latest"
    assert error.reason == "FailedCreate"
    assert "allowPrivilegeEscalation != false" in str(error)
    assert "security_profile='restricted'" in str(error)


def test_restricted_profile_starts_in_a_restricted_namespace_as_non_root(
    make_sandbox: MakeSandbox, api_client: Any, namespace: str,
) -> None:
    label_namespace(api_client, namespace, {ENFORCE: "restricted"})
    sandbox = make_sandbox(security_profile="restricted").init()
    pod = client.CoreV1Api(api_client).read_namespaced_pod(sandbox.pod_name, namespace)
    expected_uid = pod.spec.security_context.run_as_user
    assert pod.spec.security_context.run_as_non_root is True
    result = sandbox.run_command("id -u", check=True)
    assert int(result.stdout) == expected_uid != 0


def test_baseline_namespace_admits_the_default_sandbox(
    make_sandbox: MakeSandbox, api_client: Any, namespace: str,
) -> None:
    label_namespace(api_client, namespace, {ENFORCE: "baseline"})
    sandbox = make_sandbox().init()
    assert sandbox.run_command("echo ok", check=True).stdout == "ok\n"


def test_pod_create_is_refused_with_the_api_servers_wording(
    api_client: Any, namespace: str,
) -> None:
    label_namespace(api_client, namespace, {ENFORCE: "restricted"})
    pod = {"metadata": {"name": "plain"}, "spec": pod_spec(["tail", "-f", "/dev/null"])}
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod)
    assert caught.value.status == 403
    status = json.loads(caught.value.body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "plain" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "main" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities "
        '(container "main" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "main" must set '
        "securityContext.runAsNonRoot=true), seccompProfile (pod or container \"main\" must "
        'set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')


def test_a_job_is_admitted_with_a_warning_and_its_pod_refused(
    kubectl: Callable[..., Any], api_client: Any, namespace: str,
) -> None:
    label_namespace(api_client, namespace, {ENFORCE: "baseline"})
    manifest = job_manifest("hostnet", pod={"hostNetwork": True}, labels={"app": "psa-test"})
    created = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    assert 'Warning: would violate PodSecurity "baseline:latest": host namespaces ' \
           "(hostNetwork=true)" in created.stderr
    event = wait_for_event(client.CoreV1Api(api_client), namespace, "hostnet",
                           lambda e: e.reason == "FailedCreate")
    assert 'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)' \
        in event.message
    kubectl("delete", "-n", namespace, "job", "hostnet", "--cascade=foreground")


def test_invalid_policy_labels_are_refused(api_client: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        label_namespace(api_client, namespace, {ENFORCE: "strict"})
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert f'metadata.labels[{ENFORCE}]: Invalid value: "strict": must be one of privileged, ' \
           "baseline, restricted" in message
