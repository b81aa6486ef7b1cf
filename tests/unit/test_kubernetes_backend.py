"""The Kubernetes backend's pure parts: connection resolution, argv building, error parsing,
pod diagnosis and watch resumption -- everything that can be proven without a cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from sandboxkit.backends.archive import remote_split as _remote_split
from sandboxkit.backends.base import command_argv
from sandboxkit.backends.kubernetes import client as k8s_client
from sandboxkit.backends.kubernetes.api import (
    JobRef,
    api_error,
    is_running,
    parse_status,
    status_error,
    watch,
)
from sandboxkit.backends.kubernetes.lifecycle import describe_pod_problem, job_event_problem
from sandboxkit.errors import (
    ConfigError,
    ExecError,
    ImagePullError,
    PermissionDenied,
    PodSecurityViolation,
    QuotaExceeded,
    SandboxGone,
    SandboxStartupError,
    ServiceAccountMissing,
    Unschedulable,
)

# --- connection ---------------------------------------------------------------------------


def _kubeconfig(path: Path, namespace: str | None, *, server: str = "https://10.0.0.1:6443",
                context: str = "ctx") -> Path:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": context, "context": ctx},
                     {"name": "other", "context": {**ctx, "namespace": "elsewhere"}}],
        "current-context": context,
    }))
    return path


def test_explicit_kubeconfig_and_context_namespace(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "config", "team-a")
    conn = k8s_client.connect(path, environ={})
    assert conn.namespace == "team-a"
    assert conn.configuration.host == "https://10.0.0.1:6443"
    assert "ctx" in conn.source
    other = k8s_client.connect(path, "other", environ={})
    assert other.namespace == "elsewhere"


def test_context_without_namespace_means_default(tmp_path: Path) -> None:
    conn = k8s_client.connect(_kubeconfig(tmp_path / "config", None), environ={})
    assert conn.namespace == "default"


def test_kubeconfig_env_list_is_merged_as_kubectl_does(tmp_path: Path) -> None:
    first = _kubeconfig(tmp_path / "a", "from-a")
    missing = tmp_path / "missing"
    env = {"KUBECONFIG": f"{missing}:{first}", "HOME": str(tmp_path)}
    assert k8s_client.kubeconfig_files(environ=env) == [first]
    assert k8s_client.connect(environ=env).namespace == "from-a"


def test_in_cluster_config_when_no_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes import config as k8s_config

    def fake_incluster(client_configuration: Any = None, **_: Any) -> None:
        client_configuration.host = "https://kubernetes.default.svc"

    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("pod-ns\n")
    monkeypatch.setattr(k8s_config, "load_incluster_config", fake_incluster)
    monkeypatch.setattr(k8s_client, "IN_CLUSTER_NAMESPACE_FILE", str(namespace_file))
    monkeypatch.setattr(k8s_client, "DEFAULT_KUBECONFIG", str(tmp_path / "no-such-config"))
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    conn = k8s_client.connect(environ=env)
    assert conn.source == "in-cluster"
    assert conn.namespace == "pod-ns"
    assert conn.configuration.host == "https://kubernetes.default.svc"


def test_no_cluster_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s_client, "DEFAULT_KUBECONFIG", str(tmp_path / "no-such-config"))
    with pytest.raises(ConfigError, match="devcluster start"):
        k8s_client.connect(environ={})
    with pytest.raises(ConfigError) as caught:
        k8s_client.connect(tmp_path / "absent", environ={})
    assert caught.value.field == "kubeconfig"


def test_one_client_per_thread(tmp_path: Path) -> None:
    import threading

    conn = k8s_client.connect(_kubeconfig(tmp_path / "config", None), environ={})
    mine = conn.api_client()
    assert conn.api_client() is mine
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(conn.api_client()))
    thread.start()
    thread.join()
    assert seen[0] is not mine
    assert seen[0].configuration is mine.configuration
    conn.close()


# --- argv ---------------------------------------------------------------------------------


def _run_locally(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_plain_command_is_sh_c() -> None:
    assert command_argv("echo hi") == ["/bin/sh", "-c", "echo hi"]


def test_env_and_workdir_values_are_data_not_shell(tmp_path: Path) -> None:
    odd = tmp_path / "-odd dir $(x)"
    odd.mkdir()
    tricky = "a b $(touch pwned) `id` 'q' \"d\" ;|&\n\\"
    argv = command_argv('printf "%s|" "$V" "$(pwd)"', env={"V": tricky}, workdir=str(odd))
    assert _run_locally(argv) == f"{tricky}|{odd}|"
    assert not (tmp_path / "pwned").exists()


def test_relative_workdir_starting_with_dash(tmp_path: Path) -> None:
    (tmp_path / "-x").mkdir()
    argv = command_argv("pwd", workdir="-x")
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out.strip() == str(tmp_path / "-x")


@pytest.mark.parametrize("name", ["", "A=B", "-flag", "NUL\0"])
def test_bad_env_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        command_argv("true", env={name: "x"})


def test_remote_paths_split_safely() -> None:
    assert _remote_split("/tmp/a/b", "src") == ("/tmp/a", "b")
    assert _remote_split("/tmp/into/", "src") == ("/tmp/into", "src")
    assert _remote_split("rel", "src") == (".", "rel")
    assert _remote_split("-dir/-file", "src") == ("./-dir", "./-file")


# --- errors from the API ------------------------------------------------------------------


def _api_exception(status: int, message: str) -> ApiException:
    body = json.dumps({"kind": "Status", "status": "Failure", "message": message,
                       "reason": "Forbidden", "code": status})
    return ApiException(status=status, reason="Forbidden", body=body)


def test_forbidden_is_parsed_into_permission_denied() -> None:
    message = ('jobs.batch is forbidden: User "system:serviceaccount:ns:bot" cannot create '
               'resource "jobs" in API group "batch" in the namespace "ns"')
    error = api_error(_api_exception(403, message))
    assert isinstance(error, PermissionDenied)
    assert (error.verb, error.resource, error.namespace, error.identity) == (
        "create", "jobs.batch", "ns", "system:serviceaccount:ns:bot")
    assert "kubectl auth can-i create jobs.batch -n ns" in str(error)


def test_forbidden_core_and_cluster_scope() -> None:
    message = ('nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" '
               "at the cluster scope")
    error = api_error(_api_exception(403, message))
    assert isinstance(error, PermissionDenied)
    assert (error.verb, error.resource, error.namespace, error.identity) == (
        "list", "nodes", "", "alice")
    exec_message = ('pods "p" is forbidden: User "bob" cannot create resource "pods/exec" in '
                    'API group "" in the namespace "ci"')
    exec_error = api_error(_api_exception(403, exec_message))
    assert isinstance(exec_error, PermissionDenied)
    assert exec_error.resource == "pods/exec"


def test_quota_403_and_other_statuses() -> None:
    quota = api_error(_api_exception(403, 'jobs.batch "x" is forbidden: exceeded quota: q'))
    assert isinstance(quota, QuotaExceeded)
    other = _api_exception(500, "boom")
    assert api_error(other) is other


def test_forbidden_without_a_status_body_is_still_permission_denied() -> None:
    error = api_error(ApiException(status=403, reason="Forbidden"))
    assert isinstance(error, PermissionDenied)
    assert str(error) == "forbidden: Forbidden"


def test_409_and_404_stay_api_exceptions_for_their_callers() -> None:
    for code in (404, 409, 410):
        original = _api_exception(code, "whatever")
        assert api_error(original) is original


# The exec client's refused WebSocket upgrade: an HTTP status and a Status body (raw bytes).
_EXEC = {"verb": "create", "resource": "pods/exec", "namespace": "ci", "name": "p"}


def _status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "status": "Failure", "reason": reason,
                       "message": message, "code": code}).encode()


def test_refused_exec_403_names_what_rbac_refused() -> None:
    body = _status_body(403, "Forbidden", 'pods "p" is forbidden: User "bob" cannot create '
                        'resource "pods/exec" in API group "" in the namespace "ci"')
    error = status_error(403, body, **_EXEC)
    assert isinstance(error, PermissionDenied)
    assert (error.verb, error.resource, error.namespace, error.identity) == (
        "create", "pods/exec", "ci", "bob")
    assert "kubectl auth can-i create pods/exec -n ci" in str(error)


def test_refused_exec_401_and_unparsed_403_keep_the_request_as_what_was_refused() -> None:
    unauthorized = status_error(401, b"Unauthorized", **_EXEC)
    assert isinstance(unauthorized, PermissionDenied)
    assert (unauthorized.verb, unauthorized.resource, unauthorized.namespace,
            unauthorized.identity) == ("create", "pods/exec", "ci", "")
    assert str(unauthorized) == "unauthorized: Unauthorized"
    webhook = status_error(403, _status_body(403, "Forbidden",
                                             'User "carol" is not allowed by policy x'), **_EXEC)
    assert isinstance(webhook, PermissionDenied)
    assert (webhook.verb, webhook.resource, webhook.identity) == ("create", "pods/exec",
                                                                  "carol")


def test_refused_exec_404_means_the_pod_is_gone() -> None:
    gone = status_error(404, _status_body(404, "NotFound", 'pods "p" not found'), **_EXEC)
    assert isinstance(gone, SandboxGone)
    assert gone.reason == "NotFound"
    assert str(gone) == 'pod ci/p not found: pods "p" not found'
    bare = status_error(404, b"", **_EXEC)  # no Status at all: still NotFound, still gone
    assert isinstance(bare, SandboxGone) and bare.reason == "NotFound"
    assert "HTTP 404" in str(bare)


def test_refused_exec_other_codes_are_exec_errors_with_the_status() -> None:
    body = _status_body(400, "BadRequest", 'container "x" is not valid for pod "p"')
    error = status_error(400, body, container="x", **_EXEC)
    assert isinstance(error, ExecError) and not isinstance(error, PermissionDenied)
    assert (error.reason, error.code) == ("BadRequest", 400)
    assert error.status == json.loads(body)
    assert "ci/p container x" in str(error) and "is not valid" in str(error)
    proxy = status_error(502, b"<html>Bad Gateway</html>", **_EXEC)
    assert isinstance(proxy, ExecError)
    assert (proxy.reason, proxy.code, proxy.status) == ("", 502, {})
    assert "<html>Bad Gateway</html>" in str(proxy)


def test_quota_refusal_is_quota_exceeded_however_it_arrives() -> None:
    message = 'pods "p" is forbidden: exceeded quota: q, requested: pods=1'
    parsed = {"kind": "Status", "reason": "Forbidden", "message": message}
    error = status_error(403, parsed, sandbox="sb")
    assert isinstance(error, QuotaExceeded)
    assert (error.sandbox, error.reason) == ("sb", "Forbidden")


def test_parse_status_accepts_dicts_bytes_text_and_garbage() -> None:
    status = {"kind": "Status", "message": "m"}
    assert parse_status(status) == (status, "m")
    assert parse_status(json.dumps(status).encode()) == (status, "m")
    assert parse_status("  not json \n") == ({}, "not json")
    assert parse_status(b"[1, 2]") == ({}, "[1, 2]")  # JSON, but not a Status
    assert parse_status(b"\xff\xfe") == ({}, "\ufffd\ufffd")
    assert parse_status(None) == ({}, "")


# --- pod and event diagnosis --------------------------------------------------------------


def _pod(phase: str = "Pending", waiting: dict[str, str] | None = None,
         conditions: list[dict[str, str]] | None = None, running: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}} if running else {"waiting": waiting or {}}
    return {
        "metadata": {"name": "sb-abc", "uid": "u1"},
        "spec": {"containers": [{"name": "sandbox", "image": "busybox"}]},
        "status": {"phase": phase, "conditions": conditions or [],
                   "containerStatuses": [{"name": "sandbox", "state": state}]},
    }


def test_running_pod() -> None:
    assert is_running(_pod("Running", running=True))
    assert not is_running(_pod("Pending"))
    assert describe_pod_problem(_pod("Running", running=True), "sb") is None
    assert describe_pod_problem(_pod(waiting={"reason": "ContainerCreating"}), "sb") is None


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_pull_reasons(reason: str) -> None:
    error = describe_pod_problem(_pod(waiting={"reason": reason, "message": "kubelet says"}),
                                 "sb")
    assert isinstance(error, ImagePullError)
    assert error.image == "busybox" and error.reason == reason
    assert "kubelet says" in str(error)


def test_unschedulable_condition() -> None:
    pod = _pod(conditions=[{"type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient cpu."}])
    error = describe_pod_problem(pod, "sb")
    assert isinstance(error, Unschedulable)
    assert "Insufficient cpu" in str(error)


def test_failed_pod_before_running() -> None:
    pod = _pod("Failed")
    pod["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"reason": "Error", "exitCode": 127}}
    error = describe_pod_problem(pod, "sb")
    assert type(error) is SandboxStartupError and error.reason == "Error"


def test_job_events() -> None:
    job = JobRef("sb", "ns", "uid", "x=y")
    quota = job_event_problem({"reason": "FailedCreate", "message": (
        'Error creating: pods "sb-x" is forbidden: exceeded quota: q, requested: pods=1')}, job)
    assert isinstance(quota, QuotaExceeded)
    missing = job_event_problem({"reason": "FailedCreate", "message": (
        'Error creating: pods "sb-" is forbidden: error looking up service account ns/sa: '
        'serviceaccount "sa" not found')}, job)
    assert isinstance(missing, ServiceAccountMissing)
    assert "kubectl apply -n ns -f k8s/rbac/k8s.yaml" in str(missing)
    refused = job_event_problem({"reason": "FailedCreate", "message": (
        'Error creating: pods "sb-x" is forbidden: violates PodSecurity "restricted:latest": '
        'runAsUser=0 (pod must not set runAsUser=0)')}, job)
    assert isinstance(refused, PodSecurityViolation)
    assert refused.level == "restricted:latest"
    assert "runAsUser=0 (pod must not set runAsUser=0)" in str(refused)
    other = job_event_problem({"reason": "FailedCreate", "message": "Internal error occurred"},
                               job)
    assert type(other) is SandboxStartupError
    assert job_event_problem({"reason": "SuccessfulCreate", "message": ""}, job) is None


# --- watch resumption ---------------------------------------------------------------------


class _Response:
    def __init__(self, lines: list[dict[str, Any]] | None = None,
                 data: dict[str, Any] | None = None) -> None:
        self._payload = b"".join(json.dumps(line).encode() + b"\n" for line in lines or [])
        self.data = json.dumps(data).encode() if data is not None else b""

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        # Split mid-line to prove lines are reassembled.
        for i in range(0, len(self._payload), 7):
            yield self._payload[i:i + 7]

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def _obj(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


def test_watch_relists_on_410_and_resumes() -> None:
    calls: list[dict[str, Any]] = []
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    script = [
        _Response([{"type": "ADDED", "object": _obj("a", "5")}, gone]),
        _Response(data={"metadata": {"resourceVersion": "20"}, "items": [_obj("a", "19")]}),
        _Response([{"type": "BOOKMARK", "object": _obj("", "21")},
                   {"type": "DELETED", "object": _obj("a", "22")}]),
    ]

    def list_call(*args: Any, **kwargs: Any) -> _Response:
        calls.append(kwargs)
        if not script:
            raise AssertionError("no more responses")
        return script.pop(0)

    events = []
    for kind, obj in watch(list_call, "ns", resource_version="1", deadline=1e18):
        events.append((kind, obj if kind == "SYNC" else obj["metadata"]["name"]))
        if kind == "DELETED":
            break
    assert events == [("ADDED", "a"), ("SYNC", [_obj("a", "19")]), ("DELETED", "a")]
    assert calls[0]["resource_version"] == "1" and calls[0]["watch"] is True
    assert "watch" not in calls[1]  # the relist
    assert calls[2]["resource_version"] == "20"


def test_watch_relists_when_the_request_itself_is_410() -> None:
    responses: list[Any] = [
        ApiException(status=410, reason="Gone"),
        _Response(data={"metadata": {"resourceVersion": "7"}, "items": []}),
        _Response([{"type": "ADDED", "object": _obj("b", "8")}]),
    ]
    seen_rv: list[str] = []

    def list_call(*args: Any, **kwargs: Any) -> _Response:
        seen_rv.append(kwargs.get("resource_version", "list"))
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    stream = watch(list_call, "ns", resource_version="1", deadline=1e18)
    assert next(stream) == ("SYNC", [])
    assert next(stream)[1]["metadata"]["name"] == "b"
    assert seen_rv == ["1", "list", "7"]


# --- import weight ------------------------------------------------------------------------


def test_import_is_light_and_works_without_ipython() -> None:
    code = (
        "import sys\n"
        "sys.modules['IPython'] = None; sys.modules['ipywidgets'] = None\n"
        "import sandboxkit\n"
        "assert 'kubernetes' not in sys.modules, 'kubernetes imported eagerly'\n"
        "from sandboxkit import create_sandbox, KubernetesSandbox, SandboxConfig, CommandResult\n"
        "assert set(sandboxkit.__all__) >= {'create_sandbox', 'KubernetesSandbox',"
        " 'SandboxConfig', 'CommandResult'}\n"
        "sandbox = create_sandbox(image='busybox', namespace='x')\n"
        "assert isinstance(sandbox, KubernetesSandbox) and sandbox.pod_name is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_watch_resumes_a_broken_stream_from_the_last_version() -> None:
    from urllib3.exceptions import ProtocolError

    class Broken(_Response):
        def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
            yield from super().stream(amt, decode_content)
            raise ProtocolError("Connection broken: IncompleteRead")

    responses = [Broken([{"type": "ADDED", "object": _obj("c", "30")}]),
                 _Response([{"type": "MODIFIED", "object": _obj("c", "31")}])]
    seen_rv: list[str] = []

    def list_call(*args: Any, **kwargs: Any) -> _Response:
        seen_rv.append(kwargs["resource_version"])
        return responses.pop(0)

    stream = watch(list_call, "ns", resource_version="29", deadline=1e18)
    assert [next(stream)[0], next(stream)[0]] == ["ADDED", "MODIFIED"]
    assert seen_rv == ["29", "30"]


# --- the exec wrapper's watchdog -------------------------------------------------------
# Its `sleep` is killed with SIGKILL: a SIGTERM could reach the freshly forked child before it
# exec'd `sleep`, be caught by the inherited trap and be lost, and `wait` would then sit out
# the whole timeout.


def test_exec_wrapper_returns_promptly_when_a_timeout_is_set() -> None:
    import time

    from sandboxkit.backends.wrapper import WRAPPER

    slow = []
    for i in range(300):
        started = time.monotonic()
        subprocess.run(["/bin/sh", "-c", WRAPPER, "sandboxkit-exec", "n", "2", "",
                        "/bin/sh", "-c", "echo out; exit 66"], capture_output=True, check=False)
        if time.monotonic() - started > 1.5:
            slow.append(i)
    assert not slow, f"{len(slow)} of 300 quick commands waited out the 2 s watchdog"
