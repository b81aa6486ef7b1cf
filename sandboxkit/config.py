"""SandboxConfig: defaults < environment < arguments, validated before any API call.

Every field can be set from the environment as ``SANDBOXKIT_<FIELD>`` (upper case), and the
backend also from ``EXECUTION_BACKEND`` as in the seed design. Validation happens here, in
one place, so a typo such as ``memory="2Gb"`` fails with the field's name and a valid
example instead of an API error halfway through creating a sandbox.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from .errors import ConfigError
from .models import Resources

__all__ = [
    "BACKENDS",
    "DEFAULT_IMAGE",
    "EGRESS_LABEL",
    "SANDBOX_APP_LABEL",
    "SECURITY_PROFILES",
    "SandboxConfig",
    "quantity_value",
    "validate_dns_label",
    "validate_quantity",
]

DEFAULT_IMAGE = "nikolaik/python-nodejs:python3.11-nodejs20-bullseye"
SANDBOX_APP_LABEL = ("app", "ci-fixer-sandbox")
BACKENDS = ("kubernetes", "docker", "local")
# Pod Security Standards levels a sandbox pod is built to pass (see manifests)
SECURITY_PROFILES = ("baseline", "restricted")
# Pod label the sandbox NetworkPolicy (k8s/policies/networkpolicy.yaml) opens egress for
EGRESS_LABEL = ("sandboxkit.io/egress", "allowed")
MiB = 1024 * 1024

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_SUFFIX = re.compile(r"^(|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][-+]?[0-9]+)$")
_QUANTITY_FACTORS = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def validate_quantity(field_name: str, value: str, example: str) -> None:
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if not match or not _QUANTITY_SUFFIX.match(match.group(2)):
        raise ConfigError(field_name, value, "not a Kubernetes quantity", example)


def quantity_value(value: str) -> Decimal:
    """A Kubernetes quantity as a number (``"250m"`` -> 0.25, ``"2Gi"`` -> 2147483648), for
    backends that take plain numbers (Docker's nano-CPUs and bytes)."""
    validate_quantity("quantity", value, "2Gi")
    match = _QUANTITY.match(value)
    assert match is not None  # validated above
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _QUANTITY_FACTORS[suffix]


def validate_dns_label(field_name: str, value: str, example: str = "my-sandbox") -> None:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise ConfigError(
            field_name, value,
            "must be a DNS-1123 label: at most 63 lower case alphanumeric characters or '-', "
            "starting and ending with an alphanumeric character",
            example,
        )


def _validate_subdomain(field_name: str, value: str, example: str) -> None:
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ConfigError(field_name, value, "must be a DNS-1123 subdomain", example)


def _validate_labels(labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key[: -len(name) - 1] if "/" in key else ""
        if len(name) > 63 or not _LABEL_NAME.match(name) or (
            prefix and not _DNS_SUBDOMAIN.match(prefix)
        ):
            raise ConfigError("labels", key, "not a valid label key", "team=ci")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ConfigError(f"labels[{key}]", value, "not a valid label value", "ci-fixer")


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes a sandbox. Construct with keywords; see :meth:`resolve`."""

    execution_backend: str = "kubernetes"
    image: str = DEFAULT_IMAGE
    namespace: str | None = None  # None: the kubeconfig context's namespace, else "default"
    name: str | None = None  # None: a generated "sandbox-xxxxxxxx"
    resources: Resources = field(default_factory=Resources)
    service_account: str = "ci-fixer-sandbox"
    automount_service_account_token: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    ttl_seconds_after_finished: int = 300
    # `tail -f /dev/null` never finishes, so the TTL alone never fires: bound the Job's life.
    active_deadline_seconds: int = 4 * 3600
    # `tail` as PID 1 ignores SIGTERM: a short grace period makes teardown quick.
    termination_grace_period_seconds: int = 2
    startup_timeout: float = 300.0
    command_timeout: float | None = 600.0
    output_limit: int = 16 * MiB
    keep_on_failure: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    # "restricted" passes the Pod Security Standard of that name (non-root uid 1000, no
    # privilege escalation, no capabilities, RuntimeDefault seccomp); "baseline" is the seed's pod
    security_profile: str = "baseline"
    workspace_pvc: str | None = None  # a PersistentVolumeClaim mounted at workspace_path
    workspace_path: str = "/workspace"
    allow_egress: bool = False  # label the pod so the sandbox NetworkPolicy allows egress
    # Docker backend only: the network the container joins. None means no network at all
    # ("none"), or Docker's default "bridge" when allow_egress is set: the same default-deny
    # the NetworkPolicy gives a pod. Name a network to reach services on it (compose, "host").
    docker_network: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid field."""
        if self.execution_backend not in BACKENDS:
            raise ConfigError("execution_backend", self.execution_backend,
                              f"supported backends are {', '.join(BACKENDS)}", "kubernetes")
        if not self.image or any(c.isspace() for c in self.image):
            raise ConfigError("image", self.image, "must be a non-empty image reference",
                              "python:3.11-slim")
        if self.namespace is not None:
            validate_dns_label("namespace", self.namespace, "default")
        if self.name is not None:
            validate_dns_label("name", self.name)
        _validate_subdomain("service_account", self.service_account, "ci-fixer-sandbox")
        r = self.resources
        validate_quantity("resources.cpu_request", r.cpu_request, "250m")
        validate_quantity("resources.memory_request", r.memory_request, "512Mi")
        validate_quantity("resources.cpu_limit", r.cpu_limit, "1")
        validate_quantity("resources.memory_limit", r.memory_limit, "2Gi")
        _validate_labels(self.labels)
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise ConfigError("env", key, "not a valid environment variable name", "CI=1")
        for name in ("workdir", "workspace_path"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.startswith("/")):
                raise ConfigError(name, value, "must be an absolute path", "/workspace")
        if self.security_profile not in SECURITY_PROFILES:
            raise ConfigError("security_profile", self.security_profile,
                              f"must be one of {', '.join(SECURITY_PROFILES)}", "restricted")
        if self.workspace_pvc is not None:
            _validate_subdomain("workspace_pvc", self.workspace_pvc, "ci-workspace")
        if self.docker_network is not None and (
                not isinstance(self.docker_network, str) or not self.docker_network
                or any(c.isspace() for c in self.docker_network)):
            raise ConfigError("docker_network", self.docker_network,
                              "must name a Docker network", "bridge")
        for name in ("ttl_seconds_after_finished", "active_deadline_seconds",
                     "termination_grace_period_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(name, value, "must be a non-negative integer", "300")
        if self.active_deadline_seconds == 0:
            raise ConfigError("active_deadline_seconds", 0, "must be positive", "14400")
        for name in ("startup_timeout", "command_timeout"):
            value = getattr(self, name)
            if value is None and name == "command_timeout":
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, value, "must be a positive number of seconds", "300")
        if not isinstance(self.output_limit, int) or self.output_limit < 0:
            raise ConfigError("output_limit", self.output_limit,
                              "must be a non-negative number of bytes", str(16 * MiB))

    @classmethod
    def resolve(
        cls, base: SandboxConfig | None = None, environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> SandboxConfig:
        """Defaults, then the environment (only when no ``base`` is given), then overrides.

        Overrides may name resource fields directly (``cpu_limit="2"``) or pass a
        :class:`Resources`; unknown names raise ConfigError listing the valid ones.
        """
        values: dict[str, Any] = (
            dataclasses.asdict(base) if base is not None else _from_environment(environ)
        )
        if base is not None:
            values["resources"] = base.resources
        resources = dataclasses.asdict(values.get("resources") or Resources())
        for key in list(overrides):
            if key in resources:
                resources[key] = overrides.pop(key)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(unknown[0], overrides[unknown[0]], "unknown setting",
                              ", ".join(sorted(known | set(resources))))
        values.update({k: v for k, v in overrides.items() if k != "resources"})
        values["resources"] = overrides.get("resources") or Resources(**resources)
        return cls(**values)


def _coerce(name: str, text: str, current: Any) -> Any:
    """Environment strings to the field's type."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"SANDBOXKIT_{name.upper()}", text, "not a boolean", "true")
        return lowered in ("1", "true", "yes")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"SANDBOXKIT_{name.upper()}", text, "not an integer",
                              "300") from None
    if isinstance(current, float) or name == "command_timeout":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"SANDBOXKIT_{name.upper()}", text, "not a number",
                              "300") from None
    if isinstance(current, Mapping):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        if not isinstance(parsed, dict):
            raise ConfigError(f"SANDBOXKIT_{name.upper()}", text, "not a mapping", "a=1,b=2")
        return {str(k): str(v) for k, v in parsed.items()}
    return text


def _from_environment(environ: Mapping[str, str] | None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {
        f.name: f.default if f.default is not dataclasses.MISSING
        else f.default_factory()  # type: ignore[misc]
        for f in fields(SandboxConfig)
    }
    if "EXECUTION_BACKEND" in env:
        values["execution_backend"] = env["EXECUTION_BACKEND"]
    resources = dataclasses.asdict(values["resources"])
    for key in resources:
        if f"SANDBOXKIT_{key.upper()}" in env:
            resources[key] = env[f"SANDBOXKIT_{key.upper()}"]
    values["resources"] = Resources(**resources)
    for name, current in list(values.items()):
        text = env.get(f"SANDBOXKIT_{name.upper()}")
        if text is not None and name != "resources":
            values[name] = _coerce(name, text, current)
    return values
