"""Assemble and run a devcluster: storage, API, controllers, kubelet and the HTTPS server.

``run`` is what ``sandboxkit devcluster run`` and the background process execute. It
stays in the foreground until SIGTERM or SIGINT, then stops serving, stops the
controllers and the kubelet, and kills every pod process before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from . import admission, authz, bootstrap, errors, resources
from .api import Api, User
from .authn import CertSubject, authenticate
from .connect import Connector
from .controllers import all_controllers
from .images import ImageTable
from .kubeconfig import write_kubeconfig
from .kubelet import Kubelet
from .pki import ensure_pki, server_ssl_context
from .process import STATE_FILE, write_state
from .requestinfo import RequestInfo
from .resources import ResourceType, require
from .runtime import ContainerRuntime
from .server import Services, build_app
from .tokens import TokenIssuer, token_request_response

__all__ = ["run", "serve"]

PODS = require("", "v1", "pods")
SERVICE_ACCOUNTS = require("", "v1", "serviceaccounts")
NAMESPACES = require("", "v1", "namespaces")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
RBAC_GROUP = "rbac.authorization.k8s.io"


def _live_uid(api: Api, rt: ResourceType) -> Any:
    """uid of a live object (None if missing or being deleted): what token checks need."""

    def lookup(namespace: str, name: str) -> str | None:
        try:
            obj = api.get(rt, namespace, name)
        except errors.ApiError:
            return None
        if obj["metadata"].get("deletionTimestamp"):
            return None
        return str(obj["metadata"]["uid"])

    return lookup


class Policies:
    """Authentication, authorization and the review/token endpoints for one cluster."""

    def __init__(self, api: Api, issuer: TokenIssuer) -> None:
        self.api = api
        self.issuer = issuer
        self.rbac = authz.RbacAuthorizer(self._rbac_objects)

    def _rbac_objects(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        rt = resources.lookup_kind(f"{RBAC_GROUP}/v1", kind)
        assert rt is not None, kind
        return self.api.list(rt, namespace or None)[0]

    def authenticate(self, request: web.Request) -> User:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        cert = CertSubject.from_peercert(peercert) if peercert else None
        return authenticate(
            cert, request.headers, self.issuer.verify,
            _live_uid(self.api, SERVICE_ACCOUNTS), _live_uid(self.api, PODS),
            authorize=self.rbac.authorize,
        )

    def authorize(self, user: User, info: RequestInfo) -> None:
        if info.is_resource_request:
            rt = resources.lookup(info.group, info.version, info.resource)
            namespaced = rt.namespaced if rt else bool(info.namespace)
            attrs = authz.Attributes(
                user, info.verb, info.group, info.resource, info.subresource,
                (info.namespace or "") if namespaced or info.resource == "namespaces" else "",
                info.name,
            )
        else:
            attrs = authz.Attributes(user, info.verb, resource_request=False, path=info.path)
        decision = self.rbac.authorize(attrs)
        if not decision.allowed:
            raise authz.forbidden_error(attrs, decision.reason)

    def review(self, rt: ResourceType, body: dict[str, Any], user: User) -> dict[str, Any]:
        spec = body.get("spec") or {}
        if rt.kind == "SelfSubjectReview":
            info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
            if user.uid:
                info["uid"] = user.uid
            status: dict[str, Any] = {"userInfo": info}
        elif rt.kind == "SelfSubjectRulesReview":
            status = self.rbac.rules_for(user, spec.get("namespace", ""))
        else:
            subject = user if rt.kind == "SelfSubjectAccessReview" else authz.review_user(spec)
            decision = self.rbac.authorize(authz.review_attributes(spec, subject))
            status = authz.access_review_status(decision)
        metadata = body.get("metadata") or {}
        metadata.setdefault("creationTimestamp", None)
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata,
                "spec": spec, "status": status}

    def token(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        account = self.api.get(SERVICE_ACCOUNTS, namespace, name)
        return token_request_response(
            self.issuer, account, body, lambda pod: self.api.get(PODS, namespace, pod)
        )


def _bootstrap(api: Api) -> None:
    for name in SYSTEM_NAMESPACES:
        api.create(NAMESPACES, {"metadata": {"name": name}})
    for obj in bootstrap.bootstrap_objects():
        rt = resources.lookup_kind(obj["apiVersion"], obj["kind"])
        assert rt is not None, obj["kind"]
        api.create(rt, obj)


async def serve(
    directory: Path, port: int = 0, *, ready_fd: int | None = None, isolation: str = "auto",
    watch_pid: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until process ``watch_pid`` exits); then tear
    everything down, pods included."""
    # Opened first, while the starter waits for our ready line: the pid cannot be reused yet.
    starter = _open_pidfd(watch_pid)
    directory.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(directory)
    issuer = TokenIssuer.load_or_create(directory)
    api = Api()
    api.admission.extend(admission.default_plugins())
    node_dir = directory / "node"  # the kubelet's: pods' files and claims' data
    controllers = all_controllers(api, root_ca_pem=pki.ca_cert.read_text(), node_dir=node_dir)
    for controller in controllers:
        controller.start()
    _bootstrap(api)

    # Bind first so the kubelet can give pods the API's address before anything serves.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    bound_port = listener.getsockname()[1]
    url = f"https://127.0.0.1:{bound_port}"

    runtime = ContainerRuntime(node_dir, isolation=isolation, hidden=_private_paths(directory))
    print(f"devcluster: {runtime.describe()}", flush=True)
    kubelet = Kubelet(api, runtime, ImageTable.load(), api_port=bound_port)
    kubelet.start()
    policies = Policies(api, issuer)
    app = build_app(Services(
        api=api, authenticate=policies.authenticate, authorize=policies.authorize,
        review=policies.review, token=policies.token, connect=Connector(kubelet),
    ))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener, ssl_context=server_ssl_context(pki)).start()

    write_kubeconfig(directory / "kubeconfig", url, pki.ca_cert.read_bytes(),
                     pki.admin_cert.read_bytes(), pki.admin_key.read_bytes())
    write_state(directory, url, runtime.describe())
    print(f"devcluster: serving {url}; export KUBECONFIG={directory / 'kubeconfig'}", flush=True)
    if ready_fd is not None:
        os.write(ready_fd, f"ready {url}\n".encode())
        os.close(ready_fd)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if starter is not None:
        def starter_exited() -> None:
            loop.remove_reader(starter)  # a pidfd stays readable: hear it once
            print(f"devcluster: process {watch_pid} that started it exited", flush=True)
            stopping.set()

        loop.add_reader(starter, starter_exited)
    try:
        await stopping.wait()
    finally:
        if starter is not None:
            loop.remove_reader(starter)
            os.close(starter)
        print("devcluster: stopping", flush=True)
        api.store.close_all_watches()
        await runner.cleanup()
        await kubelet.stop()
        for controller in reversed(controllers):
            await controller.stop()
        await runtime.shutdown()
        (directory / STATE_FILE).unlink(missing_ok=True)


def _private_paths(directory: Path) -> list[Path]:
    """What pods must never see: this server's directory (keys, tokens, kubeconfig, logs)
    and the kubeconfigs of whoever started it."""
    kubeconfigs = os.environ.get("KUBECONFIG", "").split(os.pathsep)
    return [directory, Path.home() / ".kube", *(Path(p) for p in kubeconfigs if p)]


def _open_pidfd(pid: int | None) -> int | None:
    """A pidfd for ``pid`` (readable once it exits); SystemExit if it is already gone."""
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise SystemExit(
            f"devcluster: process {pid} that started it is gone; not starting") from None


def run(directory: Path, port: int = 0, *, ready_fd: int | None = None,
        watch_pid: int | None = None) -> int:
    """Run a devcluster in the foreground; returns the process exit status."""
    isolation = os.environ.get("SANDBOXKIT_DEVCLUSTER_ISOLATION", "auto")
    logging.basicConfig(
        level=os.environ.get("SANDBOXKIT_DEVCLUSTER_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(Path(directory).expanduser().resolve(), port, ready_fd=ready_fd,
                          isolation=isolation, watch_pid=watch_pid))
    print("devcluster: stopped", file=sys.stderr, flush=True)
    return 0
