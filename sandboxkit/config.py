"""SandboxConfig: defaults < environment < arguments, validated before any API call.

Every field can be set from the environment as ``SANDBOXKIT_<FIELD>`` (upper case), and the
backend also from ``EXECUTION_BACKEND`` as in the seed design. Validation happens here, in
one place, so a typo such as ``memory="2Gb"`` fails with the field's name and a valid
example instead of an API error halfway through creating a sandbox.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from .errors import ConfigError
from .models import Resources

__all__ = [
    "BACKENDS",
    "DEFAULT_IMAGE",
    "EGRESS_LABEL",
    "MAX_OUTPUT_LIMIT",
    "MAX_QUANTITY",
    "MAX_SECONDS",
    "SANDBOX_APP_LABEL",
    "SECURITY_PROFILES",
    "SandboxConfig",
    "parse_env",
    "quantity_value",
    "validate_dns_label",
    "validate_quantity",
    "validate_text",
    "validate_timeout",
]

DEFAULT_IMAGE = "nikolaik/python-nodejs:python3.11-nodejs20-bullseye"
SANDBOX_APP_LABEL = ("app", "ci-fixer-sandbox")
BACKENDS = ("kubernetes", "docker", "local")
# Pod Security Standards levels a sandbox pod is built to pass (see manifests)
SECURITY_PROFILES = ("baseline", "restricted")
# Pod label the sandbox NetworkPolicy (k8s/policies/networkpolicy.yaml) opens egress for
EGRESS_LABEL = ("sandboxkit.io/egress", "allowed")
MiB = 1024 * 1024

# Bounds of the numeric settings, so a value no API server, Docker daemon or Python wait
# accepts fails here: whole seconds fit Kubernetes' int32 fields (68 years), quantities a
# 64-bit count of bytes (8Ei), and the output kept in memory per stream is at most 1 GiB.
MAX_SECONDS = 2**31 - 1
MAX_QUANTITY = Decimal(2) ** 63
MAX_OUTPUT_LIMIT = 1024 * MiB

_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eEinumkKMGTP]*[-+]?[0-9]*)")
_QUANTITY_SUFFIX = re.compile(r"|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][-+]?[0-9]+")
_QUANTITY_FACTORS = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# Every pattern is matched whole (fullmatch): `$` would also accept a trailing newline.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
# The characters of an image reference ([registry[:port]/]path[:tag][@digest], IPv6 hosts
# in brackets); the grammar's finer rules (lower-case paths...) are the runtime's to apply,
# so its InvalidImageName reaches the user as an ImagePullError.
_IMAGE = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9._/:@+\[\]-]*")
# What no string sent to an API can hold: NUL, and lone surrogates (UTF-8 cannot encode them)
_UNSENDABLE = re.compile("[\0\ud800-\udfff]")

Check = Callable[[str, Any], None]
"""``check(field_name, value)``: return if ``value`` is valid for the field, else raise
ConfigError naming ``field_name``."""


def validate_quantity(field_name: str, value: str, example: str) -> Decimal:
    """The number a Kubernetes quantity stands for (``"250m"`` -> 0.25, ``"2Gi"`` ->
    2147483648); ConfigError for anything else, including exponents no number survives."""
    match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if not match or not _QUANTITY_SUFFIX.fullmatch(match.group(2)):
        raise ConfigError(field_name, value, "not a Kubernetes quantity", example)
    number, suffix = Decimal(match.group(1)), match.group(2)
    try:
        if suffix in _QUANTITY_FACTORS:
            return number * _QUANTITY_FACTORS[suffix]
        return number.scaleb(int(suffix[1:]))
    except (ValueError, ArithmeticError):  # an exponent of thousands of digits, say
        raise ConfigError(field_name, value, "the exponent is out of range", example) from None


def quantity_value(value: str) -> Decimal:
    """A Kubernetes quantity as a number, for backends that take plain numbers (Docker's
    nano-CPUs and bytes) and for comparing requests with limits."""
    return validate_quantity("quantity", value, "2Gi")


def validate_dns_label(field_name: str, value: str, example: str = "my-sandbox") -> None:
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ConfigError(
            field_name, value,
            "must be a DNS-1123 label: at most 63 lower case alphanumeric characters or '-', "
            "starting and ending with an alphanumeric character",
            example,
        )


def _validate_subdomain(field_name: str, value: str, example: str) -> None:
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ConfigError(field_name, value, "must be a DNS-1123 subdomain", example)


def validate_timeout(field_name: str, value: float, example: str) -> None:
    """A timeout in seconds: a finite number above 0 and at most :data:`MAX_SECONDS`.

    One chained comparison rejects NaN (every comparison is false), infinities and ints too
    large for a float alike; bool is an int but never means a number of seconds.
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or not (
            0 < value <= MAX_SECONDS):
        raise ConfigError(field_name, value, f"must be a positive number of seconds, at most "
                          f"{MAX_SECONDS}", example)


def validate_text(field_name: str, value: object, accepts: str, example: str) -> str:
    """``value`` if it is a string the API can carry: JSON bodies and exec URLs are UTF-8
    (a lone surrogate cannot be encoded) and no Kubernetes or Docker field holds a NUL."""
    if not isinstance(value, str):
        raise ConfigError(field_name, value, f"must be {accepts}", example)
    if _UNSENDABLE.search(value):
        raise ConfigError(field_name, value,
                          f"must be {accepts} without NUL characters or lone surrogates",
                          example)
    return value


def parse_env(pairs: Iterable[str] | None) -> dict[str, str]:
    """``--env K=V`` flags (the magics', the CLI's) as a mapping; the value may contain
    ``=`` and be empty."""
    env: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError("--env", pair, "expected NAME=VALUE", "--env CI=1")
        env[name] = value
    return env


def _optional(check: Check) -> Check:
    """``check``, with None also allowed: the field then means "the default at run time"."""

    def optional(field_name: str, value: Any) -> None:
        if value is not None:
            check(field_name, value)

    return optional


def _choice(choices: tuple[str, ...], why: str, example: str) -> Check:
    def choice(field_name: str, value: Any) -> None:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(field_name, value, why, example)

    return choice


def _count(low: int, high: int, unit: str, example: str) -> Check:
    """A whole number from ``low`` to ``high``: Kubernetes' integer fields reject floats and
    anything beyond their width, and ``True`` (an int to Python) is never a count."""

    def count(field_name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(field_name, value,
                              f"must be a whole number of {unit} from {low} to {high}", example)

    return count


def _flag(field_name: str, value: Any) -> None:
    """Exactly True or False: a truthy string such as ``"no"`` must not switch a flag on."""
    if not isinstance(value, bool):
        raise ConfigError(field_name, value, "must be True or False", "True")


def _image(field_name: str, value: Any) -> None:
    if not isinstance(value, str) or not _IMAGE.fullmatch(value):
        raise ConfigError(field_name, value,
                          "must be an image reference, [registry/]name[:tag][@digest], of "
                          "ASCII letters, digits and . _ - / : @ + [ ]", "python:3.11-slim")


def _absolute_path(field_name: str, value: Any) -> None:
    if not validate_text(field_name, value, "an absolute path", "/workspace").startswith("/"):
        raise ConfigError(field_name, value, "must be an absolute path", "/workspace")


def _kubeconfig(field_name: str, value: Any) -> None:
    """A path, given as a string or a ``pathlib.Path`` (what ``connect`` takes)."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    validate_text(field_name, path, "a path to a kubeconfig file", "~/.kube/config")


def _context(field_name: str, value: Any) -> None:
    validate_text(field_name, value, "a kubeconfig context name", "kind-kind")


def _docker_network(field_name: str, value: Any) -> None:
    name = validate_text(field_name, value, "a Docker network name", "bridge")
    if not name or not name.isprintable() or " " in name:
        raise ConfigError(field_name, value, "must name a Docker network", "bridge")


def _label_key(key: object) -> bool:
    """``[prefix/]name``: a DNS subdomain prefix and a name of at most 63 characters."""
    if not isinstance(key, str):
        return False
    prefix, slash, name = key.rpartition("/")
    return len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name)) and (
        not slash or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(prefix))))


def _labels(field_name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(field_name, value,
                          "must be a mapping of label keys to label values", "team=ci")
    for key, item in value.items():
        if not _label_key(key):
            raise ConfigError(field_name, key, "not a valid label key", "team=ci")
        if not isinstance(item, str) or len(item) > 63 or not _LABEL_VALUE.fullmatch(item):
            raise ConfigError(f"{field_name}[{key}]", item,
                              "not a valid label value: at most 63 letters, digits, '-', '_' "
                              "or '.', starting and ending with a letter or digit", "ci-fixer")


def _env(field_name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(field_name, value,
                          "must be a mapping of variable names to string values", "CI=1")
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise ConfigError(field_name, key, "not a valid environment variable name", "CI=1")
        validate_text(f"{field_name}[{key}]", item, "a string", "1")


_RESOURCE_EXAMPLES = {"cpu_request": "250m", "memory_request": "512Mi", "cpu_limit": "1",
                      "memory_limit": "2Gi"}


def _resources(field_name: str, value: Any) -> None:
    if not isinstance(value, Resources):
        raise ConfigError(field_name, value, "must be a sandboxkit.models.Resources",
                          "Resources(cpu_limit='2')")
    for name, example in _RESOURCE_EXAMPLES.items():
        quantity = getattr(value, name)
        if not 0 <= validate_quantity(f"{field_name}.{name}", quantity, example) <= MAX_QUANTITY:
            raise ConfigError(f"{field_name}.{name}", quantity,
                              "must be a quantity from 0 to 8Ei", example)


_CHECKS: dict[str, Check] = {
    "execution_backend": _choice(BACKENDS, f"supported backends are {', '.join(BACKENDS)}",
                                 "kubernetes"),
    "image": _image,
    "namespace": _optional(functools.partial(validate_dns_label, example="default")),
    "name": _optional(validate_dns_label),
    "resources": _resources,
    "service_account": functools.partial(_validate_subdomain, example="ci-fixer-sandbox"),
    "automount_service_account_token": _flag,
    "labels": _labels,
    "env": _env,
    "workdir": _optional(_absolute_path),
    "ttl_seconds_after_finished": _count(0, MAX_SECONDS, "seconds", "300"),
    "active_deadline_seconds": _count(1, MAX_SECONDS, "seconds", "14400"),
    "termination_grace_period_seconds": _count(0, MAX_SECONDS, "seconds", "2"),
    "startup_timeout": functools.partial(validate_timeout, example="300"),
    "command_timeout": _optional(functools.partial(validate_timeout, example="600")),
    "output_limit": _count(0, MAX_OUTPUT_LIMIT, "bytes", str(16 * MiB)),
    "keep_on_failure": _flag,
    "kubeconfig": _optional(_kubeconfig),
    "context": _optional(_context),
    "security_profile": _choice(SECURITY_PROFILES,
                                f"must be one of {', '.join(SECURITY_PROFILES)}", "restricted"),
    "workspace_pvc": _optional(functools.partial(_validate_subdomain, example="ci-workspace")),
    "workspace_path": _absolute_path,
    "allow_egress": _flag,
    "docker_network": _optional(_docker_network),
    "pool": _optional(functools.partial(validate_dns_label, example="warm")),
    "exec_session": _flag,
}
"""Each field's check, in one table: :meth:`SandboxConfig.validate` is one loop over the
fields, so a field added without a check fails every construction (KeyError) at once."""


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
    kubeconfig: str | os.PathLike[str] | None = None
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
    # Kubernetes backend only: init() claims an idle sandbox of this warm pool (see
    # sandboxkit.pool) and starts a new one, as without a pool, when none is idle.
    pool: str | None = None
    # Kubernetes and Docker: run commands through a few long-lived exec sessions (a loop
    # in the container) instead of one exec each; calls with stdin always use one exec.
    # Off (SANDBOXKIT_EXEC_SESSION=0) gives one exec per command; local has no exec.
    exec_session: bool = True

    def __post_init__(self) -> None:
        self.validate()
        # Own copies as plain dicts: the caller's mappings may change later, and asdict()
        # (which resolve uses) cannot copy every Mapping (a MappingProxyType, say).
        for name in ("labels", "env"):
            object.__setattr__(self, name, dict(getattr(self, name)))

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid field, in declaration order."""
        for each in fields(self):
            _CHECKS[each.name](each.name, getattr(self, each.name))

    @classmethod
    def resolve(
        cls, base: SandboxConfig | None = None, environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> SandboxConfig:
        """Defaults, then the environment (only when no ``base`` is given), then overrides.

        Overrides may name resource fields directly (``cpu_limit="2"``) or pass a
        :class:`Resources`; unknown names raise ConfigError listing the valid ones.
        """
        if base is not None and not isinstance(base, SandboxConfig):
            raise ConfigError("config", base, "must be a SandboxConfig or None",
                              "SandboxConfig(image='python:3.11')")
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
        given = overrides.get("resources")
        values["resources"] = Resources(**resources) if given is None else given
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
