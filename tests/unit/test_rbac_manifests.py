"""k8s/rbac/k8s.yaml against the seed design, read as written (no cluster).

The expected rule table is copied from the seed's text, not derived from sandboxkit.rbac,
so a change to either the manifest or SEED_RULES that drifts from the seed fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sandboxkit import rbac

REPO_MANIFEST = Path(__file__).parents[2] / "k8s" / "rbac" / "k8s.yaml"

# The seed: batch/jobs get, list, watch, create, update, patch, delete; pods get, list,
# watch, delete; pods/exec create; pods/log get; configmaps and secrets get, list, watch,
# create, update, patch, delete.
SEED_TABLE = {
    ("batch", "jobs"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    ("", "pods/exec"): {"create"},
    ("", "pods/log"): {"get"},
    ("", "configmaps"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "secrets"): {"get", "list", "watch", "create", "update", "patch", "delete"},
}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [obj for obj in yaml.safe_load_all(REPO_MANIFEST.read_text()) if obj]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def _rule_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def test_the_packaged_manifest_is_the_repository_one() -> None:
    assert rbac.manifest_path().read_text() == REPO_MANIFEST.read_text()


def test_kinds_and_names(objects: list[dict[str, Any]]) -> None:
    assert [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("v1", "ServiceAccount", "ci-fixer-app"),
        ("v1", "ServiceAccount", "ci-fixer-sandbox"),
        ("rbac.authorization.k8s.io/v1", "Role", "ci-fixer-sandbox-manager"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "ci-fixer-sandbox-binding"),
    ]
    assert (rbac.APP_SERVICE_ACCOUNT, rbac.SANDBOX_SERVICE_ACCOUNT, rbac.ROLE_NAME,
            rbac.BINDING_NAME) == ("ci-fixer-app", "ci-fixer-sandbox",
                                   "ci-fixer-sandbox-manager", "ci-fixer-sandbox-binding")


def test_every_object_is_labelled_and_names_no_namespace(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/part-of": "sandboxkit"}
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
    for subject in _by_kind(objects, "RoleBinding")[0]["subjects"]:
        assert "namespace" not in subject


def test_only_the_sandbox_account_opts_out_of_token_automount(
    objects: list[dict[str, Any]],
) -> None:
    automount = {o["metadata"]["name"]: o.get("automountServiceAccountToken")
                 for o in _by_kind(objects, "ServiceAccount")}
    assert automount == {"ci-fixer-app": None, "ci-fixer-sandbox": False}


def test_the_binding_grants_the_role_to_the_app_account_only(
    objects: list[dict[str, Any]],
) -> None:
    (binding,) = _by_kind(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ci-fixer-app"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "ci-fixer-sandbox-manager"}
    assert not _by_kind(objects, "ClusterRole") and not _by_kind(objects, "ClusterRoleBinding")


def test_the_role_has_exactly_the_seed_rules(objects: list[dict[str, Any]]) -> None:
    (role,) = _by_kind(objects, "Role")
    assert _rule_table(role["rules"]) == SEED_TABLE


def test_seed_rules_constant_equals_the_role(objects: list[dict[str, Any]]) -> None:
    (role,) = _by_kind(objects, "Role")
    constant: dict[tuple[str, str], set[str]] = {}
    for rule in rbac.SEED_RULES:
        assert (rule.api_group, rule.resource) not in constant, rule  # one entry per resource
        constant[(rule.api_group, rule.resource)] = set(rule.verbs)
    assert constant == _rule_table(role["rules"])


def test_load_manifests_places_objects_in_the_namespace_asked_for() -> None:
    placed = rbac.load_manifests("team-a")
    assert {o["metadata"]["namespace"] for o in placed} == {"team-a"}
    assert all("namespace" not in o["metadata"] for o in rbac.load_manifests())
