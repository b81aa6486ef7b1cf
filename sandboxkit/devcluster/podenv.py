"""Container environments, as the kubelet's ``makeEnvironmentVariables`` builds them.

A container's environment is, in order: ``HOSTNAME``, the ``KUBERNETES_SERVICE_*`` and
``KUBERNETES_PORT_*`` variables of the ``kubernetes`` Service (pointing at this API server),
every key of its ``envFrom`` ConfigMaps and Secrets (with their prefix), then its ``env``
entries: literal values with ``$(VAR)`` expansion against what came before, and
``valueFrom`` a ConfigMap or Secret key, a ``fieldRef`` (the downward API) or a
``resourceFieldRef``. Lookups that fail the way they fail on a node raise
:class:`ContainerConfigError` with the kubelet's message, which the pod worker reports as
the container's ``CreateContainerConfigError``.

Differences: every pod shares the host network, so ``status.podIP`` is the node's address;
a ``resourceFieldRef`` naming a limit the container lacks resolves against the host's CPU
count and memory rather than a node's allocatable.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .api import Api
from .quantity import parse_quantity
from .resources import ResourceType, require

__all__ = ["ContainerConfigError", "EnvResolver", "expand"]

CONFIG_MAPS = require("", "v1", "configmaps")
SECRETS = require("", "v1", "secrets")


class ContainerConfigError(Exception):
    """A container's configuration cannot be built (CreateContainerConfigError).

    Raised for its environment here, and by the pod worker for its volumes and user.
    """


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay, ``$$`` escapes ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


class EnvResolver:
    """Builds containers' environments from the API (ConfigMaps, Secrets) and the node."""

    def __init__(self, api: Api, host_ip: str, api_host: str, api_port: int) -> None:
        self.api = api
        self.host_ip = host_ip
        self.api_host = api_host
        self.api_port = api_port

    def container_env(self, pod: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, str]:
        """The environment of container ``spec`` of ``pod``."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        env: dict[str, str] = {"HOSTNAME": meta["name"], **self._service_env()}
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._lookup(CONFIG_MAPS, ns, source["configMapRef"], "configmap")
            else:
                data = self._lookup(SECRETS, ns, source.get("secretRef", {}), "secret")
            for key, value in (data or {}).items():
                env[prefix + key] = value
        for var in spec.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            value = self._value_from(pod, spec, var["valueFrom"])
            if value is not None:
                env[name] = value
        return env

    def _service_env(self) -> dict[str, str]:
        host, port = self.api_host, str(self.api_port)
        url = f"tcp://{host}:{port}"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": url,
            f"KUBERNETES_PORT_{port}_TCP": url,
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def _lookup(
        self, rt: ResourceType, ns: str, ref: Mapping[str, Any], what: str
    ) -> dict[str, str] | None:
        """The decoded data of a ConfigMap or Secret; None when missing and optional."""
        obj = self.api.get_or_none(rt, ns, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'{what} "{ref.get("name", "")}" not found')
        data = dict(obj.get("data") or {})
        if rt is SECRETS:
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        data.update({k: base64.b64decode(v).decode(errors="replace")
                     for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _value_from(
        self, pod: Mapping[str, Any], spec: Mapping[str, Any], source: Mapping[str, Any]
    ) -> str | None:
        ns = pod["metadata"]["namespace"]
        for key, rt, what in (("configMapKeyRef", CONFIG_MAPS, "configmap"),
                              ("secretKeyRef", SECRETS, "secret")):
            if key in source:
                ref = source[key]
                data = self._lookup(rt, ns, ref, what)
                if data is None:
                    return None
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise ContainerConfigError(
                        f"couldn't find key {ref['key']} in {rt.kind} {ns}/{ref.get('name', '')}"
                    )
                return data[ref["key"]]
        if "fieldRef" in source:
            return self._field(pod, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            return _resource_field(spec, source["resourceFieldRef"])
        return None

    def _field(self, pod: Mapping[str, Any], path: str) -> str:
        meta, spec = pod["metadata"], pod["spec"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        simple = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
            "status.podIP": self.host_ip,
            "status.podIPs": self.host_ip,
        }
        if path not in simple:
            raise ContainerConfigError(f"unsupported fieldPath: {path}")
        return simple[path]


def _resource_field(spec: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, resource = ref["resource"].partition(".")
    res = (spec.get("resources") or {})
    value = (res.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(resource)
    amount = parse_quantity(value) if value is not None else _allocatable(resource)
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(amount / divisor))


def _allocatable(resource: str) -> Decimal:
    """Node capacity used when a resourceFieldRef names a limit the container lacks."""
    if resource == "cpu":
        return Decimal(os.cpu_count() or 1)
    if resource == "memory":
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return Decimal(line.split()[1]) * 1024
    return Decimal(0)
