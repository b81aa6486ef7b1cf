"""Security profile, workspace volume and egress label: config validation and the Job they make.

Whether a profile's pod passes its Pod Security level is asked of the devcluster's
implementation of the standard, which its own tests hold to the standard's tables.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sandboxkit import SandboxConfig
from sandboxkit.config import EGRESS_LABEL, SECURITY_PROFILES
from sandboxkit.devcluster.podsecurity import LevelVersion, evaluate
from sandboxkit.errors import ConfigError
from sandboxkit.manifests import CONTAINER_NAME, job_manifest

pytestmark = pytest.mark.unit


def template(**settings: Any) -> dict[str, Any]:
    return job_manifest(SandboxConfig(**settings), "sb", "me")["spec"]["template"]


def violations(level: str, pod: dict[str, Any]) -> list[str]:
    return [reason for reason, _ in evaluate(LevelVersion(level), pod["metadata"], pod["spec"])]


def test_defaults_keep_the_seed_pod() -> None:
    config = SandboxConfig.resolve(environ={})
    assert (config.security_profile, config.workspace_pvc, config.workspace_path,
            config.allow_egress) == ("baseline", None, "/workspace", False)
    pod = template()
    assert "securityContext" not in pod["spec"] and "volumes" not in pod["spec"]
    (container,) = pod["spec"]["containers"]
    assert "securityContext" not in container and "volumeMounts" not in container
    assert EGRESS_LABEL[0] not in pod["metadata"]["labels"]


@pytest.mark.parametrize(("profile", "pvc", "egress"), list(itertools.product(
    SECURITY_PROFILES, (None, "ci-workspace"), (False, True))))
def test_every_combination_passes_its_level(profile: str, pvc: str | None,
                                           egress: bool) -> None:
    pod = template(security_profile=profile, workspace_pvc=pvc, allow_egress=egress)
    assert violations(profile, pod) == []
    assert (EGRESS_LABEL[0] in pod["metadata"]["labels"]) is egress
    assert bool(pod["spec"].get("volumes")) is bool(pvc)


def test_baseline_profile_does_not_pass_restricted() -> None:
    assert violations("restricted", template()) == [
        "allowPrivilegeEscalation != false", "unrestricted capabilities",
        "runAsNonRoot != true", "seccompProfile"]


def test_restricted_profile_runs_as_a_non_root_user() -> None:
    spec = template(security_profile="restricted")["spec"]
    pod_context = spec["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    # an explicit uid: runAsNonRoot alone refuses images whose default user is root
    assert pod_context["runAsUser"] > 0 and pod_context["runAsGroup"] > 0
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_egress_label_is_on_the_pod_only() -> None:
    job = job_manifest(SandboxConfig(allow_egress=True), "sb", "me")
    key, value = EGRESS_LABEL
    assert job["spec"]["template"]["metadata"]["labels"][key] == value
    assert key not in job["metadata"]["labels"]


def test_workspace_claim_is_mounted_and_becomes_the_workdir() -> None:
    spec = template(workspace_pvc="ci-workspace", workspace_path="/src")["spec"]
    (volume,) = spec["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "ci-workspace"}
    (container,) = spec["containers"]
    assert container["name"] == CONTAINER_NAME
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/src"}]
    assert container["workingDir"] == "/src"


def test_an_explicit_workdir_wins_over_the_workspace() -> None:
    spec = template(workspace_pvc="ci-workspace", workdir="/tmp")["spec"]
    assert spec["containers"][0]["workingDir"] == "/tmp"
    assert "workingDir" not in template(workspace_path="/src")["spec"]["containers"][0]


@pytest.mark.parametrize(("setting", "value", "field"), [
    ({"security_profile": "strict"}, "strict", "security_profile"),
    ({"security_profile": "privileged"}, "privileged", "security_profile"),
    ({"workspace_pvc": "Not_A_Name"}, "Not_A_Name", "workspace_pvc"),
    ({"workspace_pvc": ""}, "", "workspace_pvc"),
    ({"workspace_path": "workspace"}, "workspace", "workspace_path"),
])
def test_invalid_settings_raise_config_error(setting: dict[str, Any], value: str,
                                             field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SandboxConfig(**setting)
    assert caught.value.field == field and caught.value.value == value


def test_unknown_profile_error_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="must be one of baseline, restricted"):
        SandboxConfig(security_profile="strict")


def test_settings_come_from_the_environment() -> None:
    config = SandboxConfig.resolve(environ={
        "SANDBOXKIT_SECURITY_PROFILE": "restricted", "SANDBOXKIT_WORKSPACE_PVC": "ws",
        "SANDBOXKIT_WORKSPACE_PATH": "/w", "SANDBOXKIT_ALLOW_EGRESS": "true"})
    assert (config.security_profile, config.workspace_pvc, config.workspace_path,
            config.allow_egress) == ("restricted", "ws", "/w", True)
    with pytest.raises(ConfigError):
        SandboxConfig.resolve(environ={"SANDBOXKIT_SECURITY_PROFILE": "none"})
