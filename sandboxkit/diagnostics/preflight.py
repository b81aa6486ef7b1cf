"""preflight(): can a default sandbox start in this namespace? Asked before creating one.

Checks, in order (a check that cannot pass makes the later ones meaningless, so it ends
the list): the API server answers, and as whom; the namespace exists; the sandboxkit RBAC
is installed and grants the caller what sandboxes need (:func:`sandboxkit.rbac.verify`);
every ResourceQuota has room for one more sandbox of the configured size; the image.

The image check is deliberately modest: nothing here starts a pod (a preflight that
creates workloads would need the very permissions it is checking, and would leave objects
behind when interrupted). It checks the reference's syntax (what the kubelet reports as
InvalidImageName) and reads the namespace's recent kubelet events for that image: a
``Pulled`` proves a node got it, a ``Failed`` that it could not. With neither, it says it
could not tell; the first sandbox's startup will, with a typed ImagePullError.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import rbac
from ..backends.kubernetes.api import RBAC_MANIFEST, event_time, request_json
from ..backends.kubernetes.client import Connection, connected
from ..config import SandboxConfig, quantity_value
from ..errors import PermissionDenied
from .access import rbac_objects_finding, unreachable_finding
from .report import Diagnosis, Finding
from .rules import event_line

if TYPE_CHECKING:
    import pandas

__all__ = ["preflight", "sandbox_needs"]

# The image reference grammar of github.com/distribution/reference: optional registry
# host[:port]/, lower-case path components, optional :tag and @algorithm:digest.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
    r":[0-9a-fA-F]{32,})?$")


def sandbox_needs(config: SandboxConfig) -> dict[str, Decimal]:
    """What one sandbox counts against a ResourceQuota, by quota resource name."""
    res = config.resources
    cpu, memory = quantity_value(res.cpu_request), quantity_value(res.memory_request)
    return {
        "pods": Decimal(1), "count/pods": Decimal(1), "count/jobs.batch": Decimal(1),
        "cpu": cpu, "requests.cpu": cpu, "memory": memory, "requests.memory": memory,
        "limits.cpu": quantity_value(res.cpu_limit),
        "limits.memory": quantity_value(res.memory_limit),
    }


def preflight(namespace: str | None = None, *, image: str | None = None,
              connection: Connection | None = None) -> Diagnosis:
    """Whether a sandbox (the configured defaults, ``image`` if given) can start in
    ``namespace`` (None: the connection's); ``.ok`` is False when one cannot."""
    config = SandboxConfig.resolve(**({"image": image} if image else {}))
    with connected(connection) as conn:
        ns = namespace or config.namespace or conn.namespace
        findings: list[Finding] = []
        for check in (_api, _namespace, _rbac, _quota, _image):
            found = check(conn, ns, config)
            findings += found
            if check in (_api, _namespace) and any(f.severity == "error" for f in found):
                break
        return Diagnosis("preflight", ns, tuple(findings))


def _api(conn: Connection, namespace: str, config: SandboxConfig) -> list[Finding]:
    from kubernetes.client import VersionApi

    host = conn.configuration.host
    try:
        version = request_json(VersionApi(conn.api_client()).get_code)
    except Exception as exc:  # unreachable, TLS, 401: every one means "no cluster"
        return [unreachable_finding(conn, exc)]
    identity = rbac.whoami(conn) or "an identity the cluster does not name"
    return [Finding("ok", f"API server {host} answers (Kubernetes "
                          f"{version.get('gitVersion', '?')}) as {identity}",
                    f"settings from {conn.source}", "", "Reachable")]


def _namespace(conn: Connection, namespace: str, config: SandboxConfig) -> list[Finding]:
    from kubernetes.client.exceptions import ApiException

    try:
        found = request_json(conn.core().read_namespace, namespace)
    except PermissionDenied:
        return []  # a namespaced identity may not read namespaces; the checks below will tell
    except ApiException as exc:
        if exc.status != 404:
            raise
        return [Finding("error", f"namespace {namespace} does not exist",
                        f'404 NotFound: namespaces "{namespace}" not found',
                        f"kubectl create namespace {namespace}\n"
                        f"kubectl apply -n {namespace} -f {RBAC_MANIFEST}", "NotFound")]
    phase = (found.get("status") or {}).get("phase", "")
    if phase == "Terminating":
        return [Finding("error", f"namespace {namespace} is being deleted",
                        "status.phase: Terminating", "use another namespace", "Terminating")]
    return [Finding("ok", f"namespace {namespace} exists", f"status.phase: {phase}", "",
                    "Active")]


def _rbac(conn: Connection, namespace: str, config: SandboxConfig) -> list[Finding]:
    findings: list[Finding] = []
    try:
        report = rbac.verify(namespace, connection=conn)
    except PermissionDenied as exc:
        report = None
        findings.append(Finding("warning", "could not ask the cluster what you may do",
                                str(exc), "", "Forbidden"))
    blocked = report is None or not report[report["expected"] & ~report["allowed"]].empty
    installed = rbac_objects_finding(conn, namespace, sandbox_account=config.service_account,
                                     blocking=blocked)
    if installed is not None:
        findings.append(installed)
    if report is not None:
        findings += _access(report, namespace)
    return findings


def _access(report: pandas.DataFrame, namespace: str) -> list[Finding]:
    """The verify() report as findings: what is denied (error), what is extra (info)."""
    denied = report[report["expected"] & ~report["allowed"]]
    extra = report[~report["expected"] & report["allowed"]]
    verdict = report.attrs["verdict"]
    findings: list[Finding] = []
    if len(denied):
        listed = ", ".join(f"{r.verb} {r.resource}" for r in denied.itertuples())
        findings.append(Finding(
            "error", f"you may not do what sandboxes need: {listed}", verdict,
            f"kubectl apply -n {namespace} -f {RBAC_MANIFEST} and run as "
            f"{rbac.APP_SERVICE_ACCOUNT}, or add to your Role:\n{report.attrs['missing_yaml']}",
            "Forbidden"))
    else:
        findings.append(Finding("ok", "you may do everything sandboxes need",
                                f"{len(report) - len(extra)} access reviews as expected", "",
                                "Allowed"))
    if len(extra):
        listed = ", ".join(f"{r.verb} {r.resource}{_where(str(r.namespace), namespace)}"
                           for r in extra.itertuples())
        findings.append(Finding(
            "info", f"you hold {len(extra)} permissions sandboxes do not need ({listed})",
            verdict, f"fine for an administrator; an agent should run as "
            f"{rbac.APP_SERVICE_ACCOUNT} (k8s/deployment.yaml)", "Allowed"))
    return findings


def _where(scope: str, namespace: str) -> str:
    return "" if scope == namespace else f" in {scope}" if scope else " cluster-wide"


def _quota(conn: Connection, namespace: str, config: SandboxConfig) -> list[Finding]:
    try:
        quotas = request_json(conn.core().list_namespaced_resource_quota,
                              namespace).get("items") or []
    except PermissionDenied:
        return [Finding("info", "could not read the namespace's ResourceQuotas",
                        "list resourcequotas: forbidden", "", "Forbidden")]
    needs = sandbox_needs(config)
    findings: list[Finding] = []
    room: list[int] = []
    for quota in quotas:
        name = quota["metadata"]["name"]
        # spec.hard is the limit as written; status.used is the quota controller's count
        # (absent for a moment after the quota is created: nothing counted yet).
        status = quota.get("status") or {}
        for resource, hard_text in sorted(((quota.get("spec") or {}).get("hard") or {}).items()):
            need = needs.get(resource)
            if not need:
                continue
            hard = quantity_value(str(hard_text))
            used = quantity_value(str((status.get("used") or {}).get(resource, "0")))
            room.append(math.floor((hard - used) / need))
            if used + need > hard:
                findings.append(Finding(
                    "error", f"ResourceQuota {name} has no room for a sandbox's {resource}",
                    f"{resource}: used {(status.get('used') or {}).get(resource, '0')} of "
                    f"{hard_text}; a sandbox needs {_shown(config, resource)}",
                    f"free some: sandboxkit gc -n {namespace}\n"
                    f"or raise it: kubectl edit resourcequota {name} -n {namespace}\n"
                    "or ask for less (cpu_request, memory_request, cpu_limit, memory_limit)",
                    "ExceededQuota"))
    if not quotas:
        return [Finding("ok", "no ResourceQuota limits the namespace", "", "", "NoQuota")]
    if not findings:
        findings.append(Finding(
            "ok", f"the ResourceQuotas leave room for {max(min(room, default=0), 0)} more "
            "sandboxes of this size" if room else "the ResourceQuotas do not limit sandboxes",
            ", ".join(q["metadata"]["name"] for q in quotas), "", "QuotaRoom"))
    return findings


def _shown(config: SandboxConfig, resource: str) -> str:
    res = config.resources
    return {"cpu": res.cpu_request, "requests.cpu": res.cpu_request,
            "memory": res.memory_request, "requests.memory": res.memory_request,
            "limits.cpu": res.cpu_limit, "limits.memory": res.memory_limit}.get(resource, "1")


def _image(conn: Connection, namespace: str, config: SandboxConfig) -> list[Finding]:
    image = config.image
    if not _REFERENCE.match(image):
        return [Finding("error", f"{image!r} is not a valid image reference",
                        "the kubelet would report InvalidImageName",
                        "use a lower-case repository with an optional :tag, e.g. python:3.11",
                        "InvalidImageName")]
    try:
        events = request_json(conn.core().list_namespaced_event, namespace).get("items") or []
    except PermissionDenied:
        events = []
    quoted = f'image "{image}"'
    pulls = sorted((e for e in events if e.get("reason") in ("Pulled", "Failed")
                    and quoted in (e.get("message") or "")), key=event_time)
    if not pulls:
        return [Finding("info", f"image {image} not verified: no pod in {namespace} pulled it "
                                "recently", "no Pulled or Failed event names it",
                        "the first sandbox pulls it (a large image can take minutes); a "
                        "missing one fails that start with ImagePullError", "NotChecked")]
    latest: dict[str, Any] = pulls[-1]
    if latest.get("reason") == "Pulled":
        return [Finding("ok", f"image {image} was pulled by a node", event_line(latest), "",
                        "Pulled")]
    return [Finding("error", f"image {image} failed to pull recently", event_line(latest),
                    f"check the name and tag exist: docker manifest inspect {image}; a private "
                    "registry needs imagePullSecrets", "ErrImagePull")]
