"""kubectl commands built on client-go's typed clients, which send protobuf request bodies.

``auth can-i``, ``create token`` and the ``kubectl create <kind>`` generators encode their
request as ``application/vnd.kubernetes.protobuf`` and never retry with JSON, so each of
these fails outright against a server that cannot read protobuf. Run against a real
cluster, they document the behaviour the devcluster has to match.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytestmark = pytest.mark.kubectl


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _get(kubectl: Any, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(_ok(kubectl("get", *what, "-n", namespace, "-o", "json"))))


def test_auth_can_i(kubectl: Any, namespace: str) -> None:
    assert _ok(kubectl("auth", "can-i", "create", "jobs", "-n", namespace)).strip() == "yes"
    denied = kubectl("auth", "can-i", "create", "jobs", "-n", namespace,
                     f"--as=system:serviceaccount:{namespace}:default")
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    listing = _ok(kubectl("auth", "can-i", "--list", "-n", namespace,
                          f"--as=system:serviceaccount:{namespace}:default"))
    assert "selfsubjectaccessreviews.authorization.k8s.io" in listing


def test_create_token(kubectl: Any, namespace: str) -> None:
    deadline = time.monotonic() + 30
    while True:  # the default ServiceAccount appears shortly after the namespace
        result = kubectl("create", "token", "default", "-n", namespace, "--duration=1h")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert _ok(result).strip().count(".") == 2


def test_create_generators_store_the_objects_they_describe(kubectl: Any, namespace: str) -> None:
    def create(*args: str) -> None:
        _ok(kubectl("create", *args, "-n", namespace))

    create("configmap", "c", "--from-literal=a=b")
    create("secret", "generic", "s", "--from-literal=a=b")
    create("serviceaccount", "s")
    create("role", "r", "--verb=get", "--resource=pods")
    create("rolebinding", "rb", "--role=r", f"--serviceaccount={namespace}:s")
    create("quota", "q", "--hard=pods=20,configmaps=9")
    create("deployment", "d", "--image=busybox", "--replicas=0")

    assert _get(kubectl, namespace, "configmap", "c")["data"] == {"a": "b"}
    secret = _get(kubectl, namespace, "secret", "s")
    assert (secret["type"], secret["data"]) == ("Opaque", {"a": "Yg=="})
    assert _get(kubectl, namespace, "role", "r")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    binding = _get(kubectl, namespace, "rolebinding", "rb")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "s",
                                    "namespace": namespace}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "r"}
    assert _get(kubectl, namespace, "resourcequota", "q")["spec"]["hard"] == {
        "configmaps": "9", "pods": "20"}
    assert _get(kubectl, namespace, "deployment", "d")["spec"]["replicas"] == 0
    assert _ok(kubectl("auth", "can-i", "get", "pods", "-n", namespace,
                       f"--as=system:serviceaccount:{namespace}:s")).strip() == "yes"

    for kind, name in (("configmap", "c"), ("secret", "s"), ("serviceaccount", "s"),
                       ("role", "r"), ("rolebinding", "rb"), ("resourcequota", "q"),
                       ("deployment", "d")):
        _ok(kubectl("delete", kind, name, "-n", namespace))


def test_create_job_runs(kubectl: Any, namespace: str) -> None:
    _ok(kubectl("create", "job", "j", "-n", namespace, "--image=busybox",
                "--", "sh", "-c", "echo hi"))
    _ok(kubectl("wait", "--for=condition=complete", "job/j", "-n", namespace,
                "--timeout=120s", timeout=150))
    assert _ok(kubectl("logs", "job/j", "-n", namespace)).strip() == "hi"
