"""Defaulting, as Kubernetes' generated defaulters and create-time admission fill objects.

Clients read back what the server stored (``kubectl get -o yaml``, the sandbox widgets,
diagnostics that look at ``restartPolicy`` or tolerations), so a created object must come
back with the same fields a real API server would have added. Pods get, on top of the
PodSpec defaults shared with templates, what the ServiceAccount, Priority and
DefaultTolerationSeconds admission plugins add; templates inside Jobs and Deployments get
only the PodSpec defaults, as on a real cluster.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .quantity import QuantityError, canonical_quantity
from .resources import ResourceType

__all__ = ["apply_defaults", "default_job_selector"]

Obj = dict[str, Any]

_NOT_READY = "node.kubernetes.io/not-ready"
_UNREACHABLE = "node.kubernetes.io/unreachable"


def _sub(parent: Obj, key: str) -> Obj:
    """``parent[key]`` as a dict, created when missing or null."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image, ``IfNotPresent`` otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Obj | None) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: Obj) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if not container.get("imagePullPolicy") and container.get("image"):
        container["imagePullPolicy"] = _image_pull_policy(str(container["image"]))
    if not isinstance(container.get("resources"), dict):
        container["resources"] = {}
    _canonical_resources(container["resources"])
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe))


def _canonical_resources(resources: Obj) -> None:
    """Quantities as a real API server stores them: decoded, then printed canonically
    (``1000`` -> ``1k``, ``0.5`` -> ``500m``). Unparsable ones are left for validation."""
    for key in ("requests", "limits"):
        quantities = resources.get(key)
        if not isinstance(quantities, dict):
            continue
        for name, value in quantities.items():
            with contextlib.suppress(QuantityError):
                quantities[name] = canonical_quantity(str(value))


def _default_volume(volume: Obj) -> None:
    sources = set(volume) - {"name"}
    if not sources:
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "projected", "downwardAPI"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", 420)


def _default_pod_spec(spec: Obj) -> None:
    """What ``SetDefaults_PodSpec`` and friends add; shared by pods and pod templates."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            _default_volume(volume)


def _requests_from_limits(container: Obj) -> None:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    if not limits:
        return
    requests = resources.setdefault("requests", {})
    for name, quantity in limits.items():
        requests.setdefault(name, quantity)


def _default_pod(pod: Obj) -> None:
    spec = _sub(pod, "spec")
    _default_pod_spec(spec)
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _requests_from_limits(container)
    spec.setdefault("enableServiceLinks", True)
    # ServiceAccount admission; the deprecated alias mirrors the real name
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    # Priority admission, with no PriorityClass in play
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    # DefaultTolerationSeconds admission
    tolerations = spec.get("tolerations") or []
    present = {t.get("key") for t in tolerations
               if isinstance(t, dict) and t.get("effect") in (None, "", "NoExecute")}
    for key in (_NOT_READY, _UNREACHABLE):
        if key not in present:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": 300})
    spec["tolerations"] = tolerations


def _default_template(owner_spec: Obj) -> None:
    template = _sub(owner_spec, "template")
    _default_pod_spec(_sub(template, "spec"))


def _default_job(job: Obj) -> None:
    spec = _sub(job, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        failure_policy = spec.get("podFailurePolicy") is not None
        spec["podReplacementPolicy"] = "Failed" if failure_policy else "TerminatingOrFailed"
    _default_template(spec)
    metadata = _sub(job, "metadata")
    template_meta = _sub(spec["template"], "metadata")
    if not metadata.get("labels") and isinstance(template_meta.get("labels"), dict):
        # Kubernetes shares the very map, so the labels the selector generation later adds
        # to the template show up on the Job too; the alias keeps that behaviour.
        metadata["labels"] = template_meta["labels"]


def default_job_selector(job: Obj, uid: str) -> None:
    """Generate the selector and pod template labels of a Job created without manualSelector.

    Runs at create time, once the uid is known (the job strategy's ``generateSelector``).
    Labels the user already set are left alone; validation reports any conflict.
    """
    spec = _sub(job, "spec")
    if spec.get("manualSelector"):
        return
    name = (job.get("metadata") or {}).get("name", "")
    template_meta = _sub(_sub(spec, "template"), "metadata")
    labels = template_meta.get("labels")
    if not isinstance(labels, dict):
        labels = {}
        template_meta["labels"] = labels
    for key in ("job-name", "batch.kubernetes.io/job-name"):
        labels.setdefault(key, name)
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        labels.setdefault(key, uid)
    selector = _sub(spec, "selector")
    _sub(selector, "matchLabels").setdefault("batch.kubernetes.io/controller-uid", uid)


def _default_deployment(deployment: Obj) -> None:
    spec = _sub(deployment, "spec")
    spec.setdefault("replicas", 1)
    strategy = _sub(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _default_service(service: Obj) -> None:
    spec = _sub(service, "spec")
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def _default_namespace(namespace: Obj) -> None:
    metadata = _sub(namespace, "metadata")
    if metadata.get("name"):
        _sub(metadata, "labels")["kubernetes.io/metadata.name"] = metadata["name"]
    spec = _sub(namespace, "spec")
    spec.setdefault("finalizers", ["kubernetes"])
    _sub(namespace, "status").setdefault("phase", "Active")


def _default_secret(secret: Obj) -> None:
    if not secret.get("type"):
        secret["type"] = "Opaque"


def _default_binding(binding: Obj) -> None:
    for subject in binding.get("subjects") or []:
        if not isinstance(subject, dict):
            continue
        if subject.get("apiGroup") == "":
            del subject["apiGroup"]  # ServiceAccounts' group is "", which omitempty drops
        if "apiGroup" not in subject and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


def _default_network_policy(policy: Obj) -> None:
    spec = _sub(policy, "spec")
    for rules, ports_key in (("ingress", "ports"), ("egress", "ports")):
        for rule in spec.get(rules) or []:
            for port in (rule or {}).get(ports_key) or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types


def _default_pvc(claim: Obj) -> None:
    _sub(claim, "spec").setdefault("volumeMode", "Filesystem")


_DEFAULTERS = {
    ("", "Pod"): _default_pod,
    ("batch", "Job"): _default_job,
    ("apps", "Deployment"): _default_deployment,
    ("", "Service"): _default_service,
    ("", "Namespace"): _default_namespace,
    ("", "Secret"): _default_secret,
    ("", "PersistentVolumeClaim"): _default_pvc,
    ("rbac.authorization.k8s.io", "RoleBinding"): _default_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _default_binding,
    ("networking.k8s.io", "NetworkPolicy"): _default_network_policy,
}


def apply_defaults(rt: ResourceType, obj: Obj) -> None:
    """Fill defaulted fields of ``obj`` (a create or update body of type ``rt``) in place.

    Job selectors need the uid, which is assigned later: call :func:`default_job_selector`
    once it is known.
    """
    defaulter = _DEFAULTERS.get((rt.group, rt.kind))
    if defaulter is not None:
        defaulter(obj)
