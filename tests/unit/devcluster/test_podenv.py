"""Container environments (``makeEnvironmentVariables``) against the in-process API."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from sandboxkit.devcluster.api import Api
from sandboxkit.devcluster.podenv import ContainerConfigError, EnvResolver, expand
from sandboxkit.devcluster.resources import require

pytestmark = pytest.mark.unit

CONFIG_MAPS = require("", "v1", "configmaps")
SECRETS = require("", "v1", "secrets")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def api() -> Api:
    api = Api()
    api.create(CONFIG_MAPS, {"metadata": {"name": "cfg", "namespace": "default"},
                             "data": {"a": "1", "b": "2"}, "binaryData": {"bin": b64("raw")}})
    api.create(SECRETS, {"metadata": {"name": "sec", "namespace": "default"},
                         "data": {"token": b64("s3cret")}})
    return api


def pod(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1", **meta},
            "spec": {"nodeName": "devcluster-node", "serviceAccountName": "default"}}


def env_of(api: Api, container: dict[str, Any], **meta: Any) -> dict[str, str]:
    resolver = EnvResolver(api, host_ip="10.0.0.5", api_host="127.0.0.1", api_port=6443)
    return resolver.container_env(pod(**meta), {"name": "main", **container})


def test_base_variables_and_kubernetes_service(api: Api) -> None:
    env = env_of(api, {})
    assert env == {
        "HOSTNAME": "p",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "6443",
        "KUBERNETES_PORT": "tcp://127.0.0.1:6443",
        "KUBERNETES_PORT_6443_TCP": "tcp://127.0.0.1:6443",
        "KUBERNETES_PORT_6443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_6443_TCP_PORT": "6443",
        "KUBERNETES_PORT_6443_TCP_ADDR": "127.0.0.1",
    }


def test_env_from_with_prefix_then_env_overrides_and_expands(api: Api) -> None:
    env = env_of(api, {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"},
                    {"secretRef": {"name": "sec"}},
                    {"configMapRef": {"name": "absent", "optional": True}}],
        "env": [{"name": "CM_a", "value": "override"},
                {"name": "BOTH", "value": "$(CM_b)/$(token)/$$(CM_b)/$(UNSET)"}],
    })
    assert (env["CM_a"], env["CM_b"], env["CM_bin"], env["token"]) == (
        "override", "2", "raw", "s3cret")
    assert env["BOTH"] == "2/s3cret/$(CM_b)/$(UNSET)"
    assert not any(k.startswith("absent") for k in env)


def test_key_refs(api: Api) -> None:
    env = env_of(api, {"env": [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
        {"name": "OPT_KEY", "valueFrom": {"secretKeyRef": {
            "name": "sec", "key": "nope", "optional": True}}},
        {"name": "OPT_OBJ", "valueFrom": {"configMapKeyRef": {
            "name": "absent", "key": "a", "optional": True}}},
    ]})
    assert (env["A"], env["T"]) == ("1", "s3cret")
    assert "OPT_KEY" not in env and "OPT_OBJ" not in env


@pytest.mark.parametrize(("source", "message"), [
    ({"secretKeyRef": {"name": "sec", "key": "password"}},
     "couldn't find key password in Secret default/sec"),
    ({"configMapKeyRef": {"name": "cfg", "key": "zz"}},
     "couldn't find key zz in ConfigMap default/cfg"),
    ({"secretKeyRef": {"name": "gone", "key": "k"}}, 'secret "gone" not found'),
    ({"configMapKeyRef": {"name": "gone", "key": "k"}}, 'configmap "gone" not found'),
    ({"fieldRef": {"fieldPath": "status.phase"}}, "unsupported fieldPath: status.phase"),
])
def test_unresolvable_references_are_config_errors(
    api: Api, source: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContainerConfigError) as info:
        env_of(api, {"env": [{"name": "X", "valueFrom": source}]})
    assert str(info.value) == message


def test_missing_env_from_source(api: Api) -> None:
    with pytest.raises(ContainerConfigError, match=r'^secret "nope" not found$'):
        env_of(api, {"envFrom": [{"secretRef": {"name": "nope"}}]})


def test_downward_api_fields(api: Api) -> None:
    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
             "spec.serviceAccountName", "status.hostIP", "status.podIP",
             "metadata.labels['app']", "metadata.annotations['note']",
             "metadata.labels['missing']"]
    env = env_of(api, {"env": [{"name": f"V{i}", "valueFrom": {"fieldRef": {"fieldPath": p}}}
                               for i, p in enumerate(paths)]},
                 labels={"app": "web"}, annotations={"note": "hi"})
    assert [env[f"V{i}"] for i in range(len(paths))] == [
        "p", "default", "u-1", "devcluster-node", "default", "10.0.0.5", "10.0.0.5",
        "web", "hi", ""]


def test_resource_field_refs(api: Api) -> None:
    resources = {"limits": {"cpu": "1500m", "memory": "1Gi"}, "requests": {"memory": "256Mi"}}

    def ref(resource: str, divisor: str | None = None) -> dict[str, Any]:
        field: dict[str, Any] = {"resource": resource}
        if divisor:
            field["divisor"] = divisor
        return {"valueFrom": {"resourceFieldRef": field}}

    env = env_of(api, {"resources": resources, "env": [
        {"name": "CPU", **ref("limits.cpu")},
        {"name": "CPU_M", **ref("limits.cpu", "1m")},
        {"name": "MEM_MI", **ref("requests.memory", "1Mi")},
        {"name": "REQ_CPU", **ref("requests.cpu")},  # no request: the limit
    ]})
    assert (env["CPU"], env["CPU_M"], env["MEM_MI"], env["REQ_CPU"]) == ("2", "1500", "256", "2")
    unlimited = env_of(api, {"env": [{"name": "N", **ref("limits.cpu")}]})
    assert int(unlimited["N"]) >= 1  # the node's CPUs


def test_expand() -> None:
    assert expand("$(A) $$(A) $(B) $x", {"A": "1"}) == "1 $(A) $(B) $x"
    assert expand("$(A", {"A": "1"}) == "$(A"
    assert expand("end$", {}) == "end$"
