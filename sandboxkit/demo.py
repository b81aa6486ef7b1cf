"""``sandboxkit demo``: the whole library in one run, narrated step by step.

Why a demo and not a tutorial: a newcomer's first question is "does it work here?", and the
answer should take one command and under a minute. Every step uses the public API the way
an application would -- the cluster kubectl would use (or a devcluster started for the run),
RBAC applied by :func:`sandboxkit.rbac.apply`, sandboxes created *as* ``ci-fixer-app`` with
a TokenRequest token (least privilege, not the caller's admin rights), a command's stdout,
stderr and exit code, a sandbox that cannot start and :func:`sandboxkit.diagnose`'s
account of why -- and everything made is removed again, on failure too. Each line says
what a step did and how long it took.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from urllib3.exceptions import HTTPError

from . import rbac
from .backends.kubernetes.api import request_json, watch
from .backends.kubernetes.client import connect
from .errors import PermissionDenied, SandboxError, SandboxStartupError
from .fallback import ensure_cluster

if TYPE_CHECKING:
    from .backends.kubernetes.client import Connection
    from .backends.kubernetes.sandbox import KubernetesSandbox
    from .fallback import ClusterHandle

__all__ = ["BROKEN_IMAGE", "COMMANDS", "DEFAULT_IMAGE", "DEFAULT_NAMESPACE", "run"]

DEFAULT_NAMESPACE = "sandboxkit-demo"
# Small enough that a real cluster pulls it in seconds (the seed image is ~400 MB).
DEFAULT_IMAGE = "busybox:1.36"
# ".invalid" never resolves (RFC 2606): the pull fails at once with ErrImagePull.
BROKEN_IMAGE = "registry.invalid/sandboxkit/no-such-image:0.0.1"
COMMANDS = ("echo hello from the sandbox", "echo 'this goes to stderr' >&2", "exit 3")
# Questions put to the authorizer as ci-fixer-app: (what, group, resource, verb, namespace or
# None for the demo's own).
ACCESS_CHECKS = (
    ("create Jobs", "batch", "jobs", "create", None),
    ("exec into pods", "", "pods/exec", "create", None),
    ("create pods directly", "", "pods", "create", None),
    ("read Secrets in kube-system", "", "secrets", "get", "kube-system"),
)
NAMESPACE_TIMEOUT = 120.0
TOKEN_SECONDS = 600  # the shortest lifetime every API server accepts for a TokenRequest
_WIDTH = 10


class _Narrator:
    """Prints one block per step: duration, step name, what happened (continuation lines
    indented under it). A step that raises is printed as FAILED and the error propagates."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        lines: list[str] = []
        began = time.monotonic()
        try:
            yield lines
        except BaseException as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            self._block(began, name, [f"FAILED: {reason}"])
            raise
        self._block(began, name, lines or ["done"])

    def _block(self, began: float, name: str, lines: list[str]) -> None:
        indent = " " * (9 + _WIDTH)
        text = [f"{time.monotonic() - began:6.1f}s  {name:<{_WIDTH}}{lines[0]}"]
        text += [f"{indent}{line}".rstrip() for line in lines[1:]]
        self.say("\n".join(text))


def run(namespace: str = DEFAULT_NAMESPACE, *, image: str = DEFAULT_IMAGE,
        out: TextIO | None = None) -> None:
    """Run the demo in ``namespace``, printing to ``out`` (stdout); raises on a failure,
    after removing what it made: sandboxes, the namespace (if it made it, else the RBAC
    objects it created) and the devcluster (if it started one)."""
    log = _Narrator(out or sys.stdout)
    log.say(f"sandboxkit demo in namespace {namespace}")
    with contextlib.ExitStack() as stack:
        with log.step("cluster") as lines:
            cluster = ensure_cluster()
            lines.append(cluster.description)
            if cluster.isolation:
                lines.append(cluster.isolation)
        if cluster.started:
            stack.callback(_logged, log, "cleanup", lambda: _stop(cluster))
        else:
            stack.callback(cluster.close)
        admin = connect()
        stack.callback(admin.close)
        try:
            _prepare_namespace(log, stack, admin, namespace)
            app = _act_as_app(log, stack, admin, namespace)
            _run_commands(log, stack, app, namespace, image)
            _diagnose_broken(log, stack, app, admin, namespace)
        except HTTPError as exc:  # urllib3 gave up connecting (refused, DNS, TLS)
            cause = getattr(exc, "reason", None) or exc
            raise SandboxError(f"cannot reach the cluster at {admin.configuration.host} "
                               f"({cause}); check `kubectl cluster-info`") from exc
    log.say(f"demo finished in {time.monotonic() - log.began:.1f}s; nothing left running")


def _stop(cluster: ClusterHandle) -> list[str]:
    cluster.close()
    return ["devcluster stopped"]


def _logged(log: _Narrator, name: str, action: Callable[[], list[str]]) -> None:
    with log.step(name) as lines:
        lines += action()


def _prepare_namespace(log: _Narrator, stack: contextlib.ExitStack, admin: Connection,
                       namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    with log.step("namespace") as lines:
        core = admin.core()
        try:
            existing = request_json(core.read_namespace, namespace)
        except PermissionDenied:  # a namespace admin may not read Namespace objects
            existing = {}
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None and existing.get("status", {}).get("phase") == "Terminating":
            _wait_namespace_gone(admin, namespace)  # a previous run's, still being deleted
            existing = None
        if existing is None:
            request_json(core.create_namespace, {
                "metadata": {"name": namespace, "labels": {"sandboxkit.io/demo": "true"}}})
            lines.append(f"{namespace} created")
            stack.callback(_logged, log, "cleanup",
                           lambda: _delete_namespace(admin, namespace))
        else:
            lines.append(f"{namespace} exists; it stays, only what the demo adds is removed")
    with log.step("rbac") as lines:
        applied = rbac.apply(namespace, connection=admin)
        lines += applied
        created = [line for line in applied if line.endswith(" created")]
        if existing is not None and len(created) == len(applied):
            stack.callback(_logged, log, "cleanup",
                           lambda: rbac.uninstall(namespace, connection=admin))


def _act_as_app(log: _Narrator, stack: contextlib.ExitStack, admin: Connection,
                namespace: str) -> Connection:
    """A connection as ci-fixer-app, and what the authorizer says it may and may not do."""
    with log.step("identity") as lines:
        app = rbac.connect_as(rbac.APP_SERVICE_ACCOUNT, namespace, connection=admin,
                              expiration_seconds=TOKEN_SECONDS)
        stack.callback(app.close)
        name = rbac.whoami(app) or app.source
        lines.append(f"acting as {name} (TokenRequest token, {TOKEN_SECONDS // 60} min)")
        for what, group, resource, verb, where in ACCESS_CHECKS:
            allowed, _ = rbac.can_i(app, group, resource, verb, where or namespace)
            lines.append(f"may {what}: {'yes' if allowed else 'no'}")
    return app


def _sandbox(app: Connection, namespace: str, image: str, **overrides: object
             ) -> KubernetesSandbox:
    from .backends.kubernetes.sandbox import KubernetesSandbox

    return KubernetesSandbox(image, namespace, api_client=app.api_client(), **overrides)


def _teardown(sandbox: KubernetesSandbox) -> list[str]:
    sandbox.teardown(wait=True)
    return [f"{sandbox.name} deleted (Job and pod gone)"]


def _run_commands(log: _Narrator, stack: contextlib.ExitStack, app: Connection,
                  namespace: str, image: str) -> None:
    with log.step("sandbox") as lines:
        sandbox = _sandbox(app, namespace, image)
        stack.callback(_logged, log, "teardown", lambda: _teardown(sandbox))
        stages: list[str] = []
        sandbox.init(on_progress=lambda stage, _detail: stages.append(stage))
        lines.append(f"{sandbox.name} running, image {image} ({' > '.join(stages)})")
    for command in COMMANDS:
        with log.step("exec") as lines:
            result = sandbox.run_command(command)
            lines.append(f"$ {command}")
            for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                shown = text.rstrip("\n").splitlines() or ["(empty)"]
                lines += [f"{stream}: {shown[0]}", *(f"        {s}" for s in shown[1:])]
            lines.append(f"exit code: {result.exit_code}")


def _diagnose_broken(log: _Narrator, stack: contextlib.ExitStack, app: Connection,
                     admin: Connection, namespace: str) -> None:
    """A sandbox whose image cannot be pulled, kept after the failure so that
    :func:`sandboxkit.diagnose` can read its Job, pod and events."""
    from .diagnostics import diagnose

    with log.step("broken") as lines:
        broken = _sandbox(app, namespace, BROKEN_IMAGE, keep_on_failure=True)
        stack.callback(_logged, log, "teardown", lambda: _teardown(broken))
        try:
            broken.init()
        except SandboxStartupError as exc:
            lines.append(f"{broken.name}, image {BROKEN_IMAGE}: {type(exc).__name__} "
                         f"({exc.reason or 'no reason'})")
        else:
            raise SandboxError(f"{broken.name} started with image {BROKEN_IMAGE}, which "
                               "should not exist: the demo cannot show a diagnosis")
    with log.step("diagnose") as lines:
        # As the admin: ci-fixer-app's Role has no access to events, which say the most.
        lines += diagnose(broken.name, namespace, connection=admin).to_text().splitlines()


def _delete_namespace(admin: Connection, namespace: str) -> list[str]:
    request_json(admin.core().delete_namespace, namespace)
    _wait_namespace_gone(admin, namespace)
    return [f"namespace {namespace} deleted"]


def _wait_namespace_gone(admin: Connection, namespace: str) -> None:
    """Watch (not poll) until ``namespace`` no longer exists."""
    deadline = time.monotonic() + NAMESPACE_TIMEOUT
    for kind, obj in watch(admin.core().list_namespace, resource_version=None,
                           deadline=deadline, field_selector=f"metadata.name={namespace}"):
        if (kind == "SYNC" and not obj) or kind == "DELETED":
            return
    raise SandboxError(f"namespace {namespace} still exists after {NAMESPACE_TIMEOUT:g}s; "
                       f"see `kubectl get namespace {namespace} -o yaml`")
