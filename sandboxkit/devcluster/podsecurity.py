"""Pod Security admission: the Pod Security Standards, enforced per namespace by labels.

A namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` (and optionally
``-version: v1.x``, default ``latest``) rejects pods that break the level; ``warn`` adds a
``Warning`` to the response; ``audit`` only annotates audit events, which the devcluster has
none of. As upstream: pods are checked on create and on updates that change a container;
workload kinds (Job, Deployment) are never rejected -- their pod template is evaluated
against the warn level (which defaults to the enforce level), so ``kubectl create`` prints
``Warning: would violate PodSecurity ...`` while the pod the controller creates is refused,
and the controller reports that in a FailedCreate event. Namespace labels are validated.

The checks are ``k8s.io/pod-security-admission/policy`` at the devcluster's version
(v1.32), with upstream's check order and wording, because clients and sandboxkit's
diagnostics read the messages. A ``-version`` label older than a check leaves that check
out; the per-version variants of a check (older sysctl lists) are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from .api import Api, User, add_warning
from .resources import ResourceType, require

__all__ = [
    "LEVELS",
    "evaluate",
    "forbidden_detail",
    "namespace_policy",
    "pod_security",
]

LABEL_PREFIX = "pod-security.kubernetes.io/"
LEVELS = ("privileged", "baseline", "restricted")
LATEST_MINOR = 32  # the devcluster's Kubernetes version: "latest"
NAMESPACES = require("", "v1", "namespaces")
PODS = require("", "v1", "pods")
# Workload kinds whose pod template sits at spec.template (the devcluster serves Job and
# Deployment; CronJob's and PodTemplate's templates sit elsewhere and are not served).
WORKLOAD_KINDS = ("Job", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
                  "ReplicationController")
_VERSION = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")

PodSpec = dict[str, Any]
Meta = dict[str, Any]
# (pod metadata, pod spec) -> (reason, detail) when the pod breaks the check, else None
CheckFn = Callable[[Meta, PodSpec], "tuple[str, str] | None"]


# -- levels and versions -------------------------------------------------------------------
@dataclass(frozen=True)
class LevelVersion:
    """``api.LevelVersion``: a level and the standard's version (None is "latest")."""

    level: str
    minor: int | None = None

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.minor is None else f'v1.{self.minor}'}"

    @property
    def effective_minor(self) -> int:
        return LATEST_MINOR if self.minor is None else min(self.minor, LATEST_MINOR)


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    warn: LevelVersion


def namespace_policy(labels: dict[str, str]) -> tuple[Policy, list[dict[str, str]]]:
    """``api.PolicyToEvaluate``: the namespace's policy and the causes of invalid labels.

    An invalid enforce level fails closed (restricted), an invalid warn level open
    (privileged); a namespace without an explicit warn level warns at its enforce level.
    """
    causes: list[dict[str, str]] = []

    def level(mode: str, fallback: str) -> str | None:
        value = labels.get(LABEL_PREFIX + mode)
        if value is None or value in LEVELS:
            return value
        causes.append(_invalid_label(mode, value, "must be one of " + ", ".join(LEVELS)))
        return fallback

    def version(mode: str) -> tuple[bool, int | None]:
        value = labels.get(f"{LABEL_PREFIX}{mode}-version")
        if value is None or value == "latest":
            return value is not None, None
        match = _VERSION.match(value)
        if not match:
            causes.append(_invalid_label(f"{mode}-version", value, 'must be "latest" or "v1.x"'))
            return True, None
        return True, int(match.group(1))

    enforce_level = level("enforce", "restricted")
    warn_level = level("warn", "privileged")
    _, enforce_minor = version("enforce")
    has_warn_version, warn_minor = version("warn")
    enforce = LevelVersion(enforce_level or "privileged", enforce_minor)
    warn = LevelVersion(warn_level or "privileged", warn_minor)
    valid_enforce = enforce_level is not None and not any(
        c["field"].endswith("/enforce]") for c in causes)
    if warn_level is None and valid_enforce and LEVELS.index(enforce.level) > LEVELS.index(
            warn.level):
        warn = LevelVersion(enforce.level, warn.minor if has_warn_version else enforce.minor)
    return Policy(enforce, warn), causes


def _invalid_label(mode: str, value: str, why: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "field": f"metadata.labels[{LABEL_PREFIX}{mode}]",
            "message": f'Invalid value: "{value}": {why}'}


# -- helpers with upstream's wording -------------------------------------------------------
def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _containers(spec: PodSpec) -> Iterator[dict[str, Any]]:
    """``visitContainers``: init, regular, then ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quote(names)}"


def _windows(spec: PodSpec) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


def _offenders(
    items: Iterable[dict[str, Any]], found_in: Callable[[dict[str, Any]], list[str]]
) -> tuple[list[str], set[str]]:
    """The names of the containers (or volumes) in which ``found_in`` finds something, in
    order, and everything it found."""
    names: list[str] = []
    found: set[str] = set()
    for item in items:
        values = found_in(item)
        if values:
            names.append(item["name"])
            found.update(values)
    return names, found


def _setters(pod_bad: bool, containers: list[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(_containers_phrase(containers))
    return setters


# -- baseline checks -----------------------------------------------------------------------
def _app_armor(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    allowed = ("RuntimeDefault", "Localhost")
    bad_values: set[str] = set()
    pod_type = (_sc(spec).get("appArmorProfile") or {}).get("type")
    pod_bad = pod_type is not None and pod_type not in allowed
    if pod_bad:
        bad_values.add(pod_type)
    bad = []
    for c in _containers(spec):
        kind = (_sc(c).get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in allowed:
            bad.append(c["name"])
            bad_values.add(kind)
    setters = _setters(pod_bad, bad)
    values = sorted(bad_values)
    annotations = sorted(
        f'{k}="{v}"' for k, v in (meta.get("annotations") or {}).items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and v and v != "runtime/default" and not v.startswith("localhost/"))
    if annotations:
        values += annotations
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values)),
            f"{' and '.join(setters)} must not set AppArmor profile type to {_quote(values)}")


BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _capabilities_baseline(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad, caps = _offenders(_containers(spec), lambda c: [
        a for a in (_sc(c).get("capabilities") or {}).get("add") or []
        if a not in BASELINE_CAPABILITIES])
    if not bad:
        return None
    return ("non-default capabilities", f"{_containers_phrase(bad)} must not include "
            f"{_quote(sorted(caps))} in securityContext.capabilities.add")


def _host_namespaces(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return ("host namespaces", ", ".join(used)) if used else None


def _host_path_volumes(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    names = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if not names:
        return None
    return "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_quote(names)}"


def _host_ports(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad, ports = _offenders(_containers(spec), lambda c: [
        str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")])
    if not bad:
        return None
    return ("hostPort", f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
            f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")


def _privileged(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec) if _sc(c).get("privileged") is True]
    if not bad:
        return None
    return "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"


def _proc_mount(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad, kinds = _offenders(_containers(spec), lambda c: [
        m for m in [_sc(c).get("procMount")] if m is not None and m != "Default"])
    if not bad:
        return None
    return ("procMount", f"{_containers_phrase(bad)} must not set securityContext.procMount to "
            f"{_quote(sorted(kinds))}")


SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                           "container_engine_t"})


def _selinux(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad_types: set[str] = set()
    flags = {"user": False, "role": False}

    def valid(options: dict[str, Any]) -> bool:
        ok = True
        if options.get("type", "") not in SELINUX_TYPES:
            ok = False
            bad_types.add(options.get("type", ""))
        for key in flags:
            if options.get(key):
                ok, flags[key] = False, True
        return ok

    pod_options = _sc(spec).get("seLinuxOptions")
    pod_bad = pod_options is not None and not valid(pod_options)
    bad = [c["name"] for c in _containers(spec)
           if _sc(c).get("seLinuxOptions") is not None and not valid(_sc(c)["seLinuxOptions"])]
    setters = _setters(pod_bad, bad)
    if not setters:
        return None
    data = []
    if bad_types:
        data.append(f"{_plural('type', 'types', len(bad_types))} {_quote(sorted(bad_types))}")
    data += [f"{key} may not be set" for key, set_ in flags.items() if set_]
    return ("seLinuxOptions", f"{' and '.join(setters)} set forbidden "
            f"securityContext.seLinuxOptions: {'; '.join(data)}")


def _seccomp_valid(profile: dict[str, Any]) -> bool:
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def _seccomp_explicit(spec: PodSpec) -> tuple[bool, bool, list[str], set[str], list[str]]:
    """(pod set a valid profile, pod set a bad one, containers with bad ones, the bad values,
    containers without a profile)."""
    values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = pod_profile is not None and not _seccomp_valid(pod_profile)
    if pod_bad:
        values.add(pod_profile.get("type", ""))
    bad, unset = [], []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if profile is None:
            unset.append(c["name"])
        elif not _seccomp_valid(profile):
            bad.append(c["name"])
            values.add(profile.get("type", ""))
    return pod_profile is not None and not pod_bad, pod_bad, bad, values, unset


def _seccomp_forbidden(pod_bad: bool, bad: list[str], values: set[str]) -> tuple[str, str]:
    return ("seccompProfile", f"{' and '.join(_setters(pod_bad, bad))} must not set "
            f"securityContext.seccompProfile.type to {_quote(sorted(values))}")


def _seccomp_baseline(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    _, pod_bad, bad, values, _ = _seccomp_explicit(spec)
    return _seccomp_forbidden(pod_bad, bad, values) if pod_bad or bad else None


SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})


def _sysctls(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or []
           if s.get("name") not in SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def _windows_host_process(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    def host_process(obj: dict[str, Any]) -> bool:
        return (_sc(obj).get("windowsOptions") or {}).get("hostProcess") is True

    setters = _setters(host_process(spec), [c["name"] for c in _containers(spec)
                                            if host_process(c)])
    if not setters:
        return None
    return ("hostProcess", f"{' and '.join(setters)} must not set "
            "securityContext.windowsOptions.hostProcess=true")


# -- restricted checks ---------------------------------------------------------------------
def _allow_privilege_escalation(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    if _windows(spec):
        return None
    bad = [c["name"] for c in _containers(spec)
           if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return ("allowPrivilegeEscalation != false", f"{_containers_phrase(bad)} must set "
            "securityContext.allowPrivilegeEscalation=false")


def _capabilities_restricted(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    if _windows(spec):
        return None
    missing_drop = [c["name"] for c in _containers(spec)
                    if "ALL" not in ((_sc(c).get("capabilities") or {}).get("drop") or [])]
    adding, caps = _offenders(_containers(spec), lambda c: [
        a for a in (_sc(c).get("capabilities") or {}).get("add") or []
        if a != "NET_BIND_SERVICE"])
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set '
                       'securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_quote(sorted(caps))} "
                       "in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


ALLOWED_VOLUME_SOURCES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                          "persistentVolumeClaim", "projected", "secret")
KNOWN_VOLUME_SOURCES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi",
    "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile",
    "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume",
    "scaleIO", "storageos")


def _restricted_volumes(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    bad, kinds = _offenders(spec.get("volumes") or [], lambda v: [] if any(
        key in v for key in ALLOWED_VOLUME_SOURCES) else [
        next((k for k in KNOWN_VOLUME_SOURCES if k in v), "unknown")])
    if not bad:
        return None
    return ("restricted volume types",
            f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)} "
            f"{_plural('uses', 'use', len(bad))} "
            f"{_plural('restricted volume type', 'restricted volume types', len(kinds))} "
            f"{_quote(sorted(kinds))}")


def _run_as_non_root(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    pod_value = _sc(spec).get("runAsNonRoot")
    explicit = [c["name"] for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    implicit = [c["name"] for c in _containers(spec)
                if _sc(c).get("runAsNonRoot") is None and pod_value is not True]
    setters = _setters(pod_value is False, explicit)
    if setters:
        return ("runAsNonRoot != true",
                f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true",
                f"pod or {_containers_phrase(implicit)} must set "
                "securityContext.runAsNonRoot=true")
    return None


def _run_as_user(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    setters = _setters(_sc(spec).get("runAsUser") == 0,
                       [c["name"] for c in _containers(spec) if _sc(c).get("runAsUser") == 0])
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


def _seccomp_restricted(meta: Meta, spec: PodSpec) -> tuple[str, str] | None:
    if _windows(spec):
        return None
    pod_set, pod_bad, bad, values, unset = _seccomp_explicit(spec)
    if pod_bad or bad:
        return _seccomp_forbidden(pod_bad, bad, values)
    if unset and not pod_set:
        return ("seccompProfile", f"pod or {_containers_phrase(unset)} must set "
                'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')
    return None


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    fn: CheckFn
    since: int = 0  # the minor version that introduced it
    overrides: str = ""  # the baseline check it replaces at the restricted level


# Upstream orders by check ID (Go's byte order): baseline checks first, then restricted.
CHECKS = tuple(sorted(
    (
        Check("appArmorProfile", "baseline", _app_armor),
        Check("capabilities_baseline", "baseline", _capabilities_baseline),
        Check("hostNamespaces", "baseline", _host_namespaces),
        Check("hostPathVolumes", "baseline", _host_path_volumes),
        Check("hostPorts", "baseline", _host_ports),
        Check("privileged", "baseline", _privileged),
        Check("procMount", "baseline", _proc_mount),
        Check("seLinuxOptions", "baseline", _selinux),
        Check("seccompProfile_baseline", "baseline", _seccomp_baseline),
        Check("sysctls", "baseline", _sysctls),
        Check("windowsHostProcess", "baseline", _windows_host_process),
        Check("allowPrivilegeEscalation", "restricted", _allow_privilege_escalation, 8),
        Check("capabilities_restricted", "restricted", _capabilities_restricted, 22,
              "capabilities_baseline"),
        Check("restrictedVolumes", "restricted", _restricted_volumes, 0, "hostPathVolumes"),
        Check("runAsNonRoot", "restricted", _run_as_non_root),
        Check("runAsUser", "restricted", _run_as_user, 23),
        Check("seccompProfile_restricted", "restricted", _seccomp_restricted, 19,
              "seccompProfile_baseline"),
    ),
    key=lambda c: (c.level != "baseline", c.id.encode()),
))


def evaluate(level: LevelVersion, meta: Meta, spec: PodSpec) -> list[tuple[str, str]]:
    """The (reason, detail) of every check of ``level`` the pod fails, in upstream's order."""
    if level.level == "privileged":
        return []
    minor = level.effective_minor
    active = [c for c in CHECKS if c.since <= minor
              and (c.level == "baseline" or level.level == "restricted")]
    overridden = {c.overrides for c in active if c.overrides}
    return [result for c in active if c.id not in overridden
            for result in [c.fn(meta, spec)] if result is not None]


def forbidden_detail(results: list[tuple[str, str]]) -> str:
    """``AggregateCheckResult.ForbiddenDetail``: ``reason (detail), reason (detail)``."""
    return ", ".join(f"{reason} ({detail})" if detail else reason for reason, detail in results)


# -- the admission plugin ------------------------------------------------------------------
def _template(obj: dict[str, Any]) -> tuple[Meta, PodSpec] | None:
    """The pod metadata and spec a workload kind will create pods from."""
    template = (obj.get("spec") or {}).get("template")
    if template is None:
        return None
    return template.get("metadata") or {}, template.get("spec") or {}


def _significant_update(pod: dict[str, Any], old: dict[str, Any]) -> bool:
    """``isSignificantPodUpdate``: only container changes (image, securityContext...) count;
    the kubelet's status writes and label edits are never re-evaluated."""
    for key in ("containers", "initContainers", "ephemeralContainers"):
        if (pod.get("spec") or {}).get(key) != (old.get("spec") or {}).get(key):
            return True
    return False


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return meta.get("name") or meta.get("generateName") or ""


def pod_security(
    api: Api, rt: ResourceType, operation: str, obj: dict[str, Any],
    old: dict[str, Any] | None, user: User,
) -> None:
    """The PodSecurity admission plugin (validating; runs after the mutating ones)."""
    if rt is NAMESPACES:
        _validate_namespace(obj, old)
        return
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not namespace or not rt.namespaced:
        return
    if rt is PODS:
        if operation == "UPDATE" and old is not None and not _significant_update(obj, old):
            return
        subject: tuple[Meta, PodSpec] | None = (obj.get("metadata") or {}, obj.get("spec") or {})
    elif rt.kind in WORKLOAD_KINDS:
        subject = _template(obj)
    else:
        return
    if subject is None:
        return
    try:
        labels = api.get(NAMESPACES, None, namespace)["metadata"].get("labels") or {}
    except errors.ApiError:
        return  # NamespaceLifecycle has already answered for a missing namespace
    policy, _ = namespace_policy(labels)
    meta, spec = subject
    if rt is PODS:
        failed = evaluate(policy.enforce, meta, spec)
        if failed:
            raise errors.ApiError(
                403, "Forbidden",
                f'pods "{_name(obj)}" is forbidden: violates PodSecurity "{policy.enforce}": '
                f"{forbidden_detail(failed)}",
                errors.status_details(_name(obj), "", "pods"))
    failed = evaluate(policy.warn, meta, spec)
    if failed:
        add_warning(f'would violate PodSecurity "{policy.warn}": {forbidden_detail(failed)}')


def _validate_namespace(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Invalid policy labels are refused on create, and on an update that changes them."""
    _, causes = namespace_policy((obj.get("metadata") or {}).get("labels") or {})
    if not causes:
        return
    if old is not None:
        _, old_causes = namespace_policy((old.get("metadata") or {}).get("labels") or {})
        if old_causes == causes:
            return
    raise errors.invalid("Namespace", "", _name(obj), causes)
