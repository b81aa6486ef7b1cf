"""Create/update validation: field paths, reasons and the API server's exact wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sandboxkit.devcluster.defaults import apply_defaults, default_job_selector
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.resources import ResourceType, lookup
from sandboxkit.devcluster.validation import validate


def rt(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


PODS = rt("", "pods")
JOBS = rt("batch", "jobs")
NAMESPACES = rt("", "namespaces")
SERVICES = rt("", "services")
ROLEBINDINGS = rt("rbac.authorization.k8s.io", "rolebindings")
CLUSTERROLEBINDINGS = rt("rbac.authorization.k8s.io", "clusterrolebindings")
ROLES = rt("rbac.authorization.k8s.io", "roles")
CONFIGMAPS = rt("", "configmaps")
QUOTAS = rt("", "resourcequotas")
DEPLOYMENTS = rt("apps", "deployments")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def pod(name: str = "p", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }
    apply_defaults(PODS, body)
    return body


def invalid(resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None = None
            ) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate(resource, obj, old=old)
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"
    return caught.value


def causes(error: ApiError) -> list[tuple[str, str]]:
    assert error.details is not None
    return [(c["field"], c["message"]) for c in error.details["causes"]]


def test_valid_pod_passes() -> None:
    validate(PODS, pod())


def test_bad_pod_name_exact_message() -> None:
    error = invalid(PODS, pod("Bad_Name"))
    assert error.message == (
        f'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}')
    assert error.details is not None
    assert error.details["causes"] == [{
        "reason": "FieldValueInvalid", "field": "metadata.name",
        "message": f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}'}]
    assert error.details["name"] == "Bad_Name"
    assert error.details["kind"] == "Pod"


def test_name_or_generate_name_required() -> None:
    body = pod()
    del body["metadata"]["name"]
    error = invalid(PODS, body)
    assert causes(error) == [("metadata.name",
                              "Required value: name or generateName is required")]


def test_generate_name_trailing_dash_is_fine() -> None:
    body = pod()
    body["metadata"]["generateName"] = "sandbox-"
    validate(PODS, body)


def test_namespace_and_service_names_are_labels() -> None:
    error = invalid(NAMESPACES, {"metadata": {"name": "a.b"}})
    assert causes(error) == [("metadata.name", 'Invalid value: "a.b": must not contain dots')]
    error = invalid(NAMESPACES, {"metadata": {"name": "Team"}})
    assert causes(error) == [("metadata.name", f'Invalid value: "Team": {LABEL_MSG}')]
    error = invalid(SERVICES, {"metadata": {"name": "1svc", "namespace": "default"}})
    assert causes(error)[0][1].startswith(
        'Invalid value: "1svc": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character")


def test_cluster_scoped_namespace_forbidden() -> None:
    error = invalid(NAMESPACES, {"metadata": {"name": "ok", "namespace": "x"}})
    assert causes(error) == [("metadata.namespace", "Forbidden: not allowed on this type")]


def test_labels_checked() -> None:
    body = pod()
    body["metadata"]["labels"] = {"ok": "bad value"}
    error = invalid(PODS, body)
    assert causes(error)[0][0] == "metadata.labels"
    assert causes(error)[0][1].startswith('Invalid value: "bad value": a valid label must be')


def test_pod_spec_errors_in_kubernetes_order() -> None:
    body = pod(restartPolicy="Sometimes")
    body["spec"]["containers"] = [{"name": "Main"}, {"name": "x", "image": "i"},
                                  {"name": "x", "image": "i"}]
    error = invalid(PODS, body)
    assert causes(error) == [
        ("spec.containers[0].name", f'Invalid value: "Main": {LABEL_MSG}'),
        ("spec.containers[0].image", "Required value"),
        ("spec.containers[2].name", 'Duplicate value: "x"'),
        ("spec.restartPolicy",
         'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ]
    assert error.message.startswith('Pod "p" is invalid: [spec.containers[0].name: ')


def test_containers_required() -> None:
    body = pod()
    body["spec"]["containers"] = []
    assert causes(invalid(PODS, body)) == [("spec.containers", "Required value")]


def test_requests_above_limits() -> None:
    body = pod()
    body["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"},
                                                  "requests": {"cpu": "1500m", "memory": "1Gi"}}
    assert causes(invalid(PODS, body)) == [(
        "spec.containers[0].resources.requests",
        'Invalid value: "1500m": must be less than or equal to cpu limit of 1')]


def test_unparseable_quantity_is_bad_request() -> None:
    body = pod()
    body["spec"]["containers"][0]["resources"] = {"limits": {"memory": "lots"}}
    with pytest.raises(ApiError) as caught:
        validate(PODS, body)
    assert caught.value.code == 400
    assert caught.value.message == (
        'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular '
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_volume_mount_must_name_a_volume() -> None:
    body = pod()
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/d"}]
    assert causes(invalid(PODS, body)) == [
        ("spec.containers[0].volumeMounts[0].name", 'Not found: "data"')]


def test_pod_update_allows_image_only() -> None:
    old = pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "busybox:2"
    validate(PODS, new, old=old)
    new["spec"]["restartPolicy"] = "Never"
    error = invalid(PODS, new, old=old)
    field, message = causes(error)[0]
    assert field == "spec"
    assert message.startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
        "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
        "(allow it to be set to 1 if it was previously negative)\n")
    assert "spec.restartPolicy" in message


def test_pod_name_immutable() -> None:
    old = pod()
    new = copy.deepcopy(old)
    new["metadata"]["name"] = "q"
    assert ("metadata.name", 'Invalid value: "q": field is immutable') in causes(
        invalid(PODS, new, old=old))


def job(restart: str | None = "Never", **spec: Any) -> dict[str, Any]:
    template_spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if restart:
        template_spec["restartPolicy"] = restart
    body: dict[str, Any] = {
        "metadata": {"name": "j", "namespace": "default", "uid": "uid-1"},
        "spec": {"template": {"spec": template_spec}, **spec},
    }
    apply_defaults(JOBS, body)
    default_job_selector(body, "uid-1")
    return body


def test_valid_job_passes() -> None:
    validate(JOBS, job())


def test_job_restart_policy_always_rejected() -> None:
    error = invalid(JOBS, job(restart=None))
    assert error.message == (
        'Job.batch "j" is invalid: spec.template.spec.restartPolicy: Unsupported value: '
        '"Always": supported values: "OnFailure", "Never"')


@pytest.mark.parametrize(("field", "value"), [
    ("backoffLimit", -1), ("activeDeadlineSeconds", -5), ("ttlSecondsAfterFinished", -1),
    ("parallelism", -2),
])
def test_job_negative_fields(field: str, value: int) -> None:
    assert causes(invalid(JOBS, job(**{field: value}))) == [
        (f"spec.{field}", f"Invalid value: {value}: must be greater than or equal to 0")]


def test_job_selector_must_match_template() -> None:
    body = job(manualSelector=True)
    body["spec"]["selector"] = {"matchLabels": {"app": "x"}}
    error = invalid(JOBS, body)
    field, message = causes(error)[0]
    assert field == "spec.template.metadata.labels"
    assert message == ("Invalid value: map[string]string(nil): `selector` does not match "
                       "template `labels`")
    body["spec"]["template"]["metadata"] = {"labels": {"app": "y"}}
    assert causes(invalid(JOBS, body))[0][1] == (
        'Invalid value: map[string]string{"app":"y"}: `selector` does not match template '
        "`labels`")


def test_job_template_and_selector_immutable() -> None:
    old = job()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert [f for f, _ in causes(invalid(JOBS, new, old=old))] == ["spec.template"]
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": "uid-1",
                                               "x": "y"}}
    new["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    fields = [f for f, _ in causes(invalid(JOBS, new, old=old))]
    assert "spec.selector" in fields


def test_deployment_template_must_restart_always() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "i"}]}}},
    }
    apply_defaults(DEPLOYMENTS, body)
    assert causes(invalid(DEPLOYMENTS, body)) == [(
        "spec.template.spec.restartPolicy",
        'Unsupported value: "Never": supported values: "Always"')]


def binding(**overrides: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "rb", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
        **overrides,
    }


def test_role_binding_rules() -> None:
    validate(ROLEBINDINGS, binding())
    error = invalid(ROLEBINDINGS, binding(roleRef={}, subjects=[{"kind": "Robot",
                                                                 "name": "x"}]))
    assert causes(error) == [
        ("roleRef.apiGroup",
         'Unsupported value: "": supported values: "rbac.authorization.k8s.io"'),
        ("roleRef.kind", 'Unsupported value: "": supported values: "Role", "ClusterRole"'),
        ("roleRef.name", "Required value"),
        ("subjects[0].kind",
         'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
    ]


def test_cluster_role_binding_needs_sa_namespace() -> None:
    body = binding(subjects=[{"kind": "ServiceAccount", "name": "sa"}])
    body["roleRef"]["kind"] = "ClusterRole"
    del body["metadata"]["namespace"]
    assert causes(invalid(CLUSTERROLEBINDINGS, body)) == [
        ("subjects[0].namespace", "Required value")]


def test_role_ref_immutable() -> None:
    old = binding()
    new = binding(roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "other"})
    assert causes(invalid(ROLEBINDINGS, new, old=old)) == [(
        "roleRef", 'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
        'Kind:"Role", Name:"other"}: cannot change roleRef')]


def test_role_rule_requirements() -> None:
    body = {"metadata": {"name": "r", "namespace": "default"}, "rules": [{"resources": ["pods"]}]}
    assert causes(invalid(ROLES, body)) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[0].apiGroups",
         "Required value: resource rules must supply at least one api group"),
    ]


def test_configmap_keys() -> None:
    body = {"metadata": {"name": "c", "namespace": "default"}, "data": {"bad key": "v"}}
    field, message = causes(invalid(CONFIGMAPS, body))[0]
    assert field == "data[bad key]"
    assert message.startswith('Invalid value: "bad key": a valid config key must consist of')


def test_quota_values() -> None:
    body = {"metadata": {"name": "q", "namespace": "default"}, "spec": {"hard": {"cpu": "-1"}}}
    assert causes(invalid(QUOTAS, body)) == [
        ("spec.hard[cpu]", 'Invalid value: "-1": must be greater than or equal to 0')]
    body["spec"]["hard"]["cpu"] = "x"
    with pytest.raises(ApiError) as caught:
        validate(QUOTAS, body)
    assert caught.value.code == 400
