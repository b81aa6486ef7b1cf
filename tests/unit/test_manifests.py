"""The Job manifest against every field the seed design fixes, plus what sandboxkit adds."""

from __future__ import annotations

import os
import socket

from sandboxkit import SandboxConfig
from sandboxkit.manifests import (
    ID_LABEL,
    OWNER_ANNOTATION,
    job_manifest,
    new_sandbox_name,
    owner_description,
    sandbox_selector,
)


def _manifest(**overrides: object) -> dict:  # type: ignore[type-arg]
    config = SandboxConfig.resolve(environ={}, namespace="ci", **overrides)
    return job_manifest(config, "sandbox-abc123", "me@host pid=1")


def test_seed_fields() -> None:
    job = _manifest()
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    meta = job["metadata"]
    assert meta["name"] == "sandbox-abc123" and meta["namespace"] == "ci"
    assert meta["labels"]["app"] == "ci-fixer-sandbox"
    assert meta["labels"][ID_LABEL] == "sandbox-abc123"
    assert meta["annotations"][OWNER_ANNOTATION] == "me@host pid=1"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 300
    assert spec["activeDeadlineSeconds"] == 4 * 3600
    template = spec["template"]
    # The pod carries the labels too: that is how a sandbox's pod is found.
    assert template["metadata"]["labels"]["app"] == "ci-fixer-sandbox"
    assert template["metadata"]["labels"][ID_LABEL] == "sandbox-abc123"
    pod = template["spec"]
    assert pod["serviceAccountName"] == "ci-fixer-sandbox"
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] == 2
    (container,) = pod["containers"]
    assert container["command"] == ["tail", "-f", "/dev/null"]
    assert container["image"] == "nikolaik/python-nodejs:python3.11-nodejs20-bullseye"
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "2Gi"},
        "requests": {"cpu": "250m", "memory": "512Mi"},
    }
    assert "workingDir" not in container


def test_config_shapes_the_manifest() -> None:
    job = _manifest(
        image="busybox", cpu_limit="2", memory_request="1Gi", env={"CI": "1", "A": "b c"},
        workdir="/workspace", labels={"team": "ci"}, ttl_seconds_after_finished=60,
        active_deadline_seconds=600, termination_grace_period_seconds=5,
        service_account="other", automount_service_account_token=True,
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "busybox"
    assert container["resources"]["limits"]["cpu"] == "2"
    assert container["resources"]["requests"]["memory"] == "1Gi"
    assert container["env"] == [{"name": "CI", "value": "1"}, {"name": "A", "value": "b c"}]
    assert container["workingDir"] == "/workspace"
    assert job["metadata"]["labels"]["team"] == "ci"
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5
    assert pod["serviceAccountName"] == "other"
    assert pod["automountServiceAccountToken"] is True


def test_user_labels_cannot_replace_the_sandbox_labels() -> None:
    job = _manifest(labels={"app": "mine", ID_LABEL: "other"})
    assert job["metadata"]["labels"]["app"] == "ci-fixer-sandbox"
    assert job["metadata"]["labels"][ID_LABEL] == "sandbox-abc123"


def test_names_and_selectors() -> None:
    name = new_sandbox_name()
    assert name.startswith("sandbox-") and len(name) == len("sandbox-") + 8
    SandboxConfig(name=name)  # a valid DNS-1123 label
    assert new_sandbox_name() != name
    assert sandbox_selector() == "app=ci-fixer-sandbox"
    assert sandbox_selector("x") == f"app=ci-fixer-sandbox,{ID_LABEL}=x"


def test_owner_names_user_host_and_process() -> None:
    owner = owner_description(kernel="k-1")
    assert socket.gethostname() in owner and f"pid={os.getpid()}" in owner
    assert owner.endswith("kernel=k-1")
