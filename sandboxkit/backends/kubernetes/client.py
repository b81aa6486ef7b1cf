"""Reach a cluster the way kubectl does, and hand out one ApiClient per thread.

Resolution follows kubectl, so a notebook, a script and a pod behave like the shell beside
them: an explicit kubeconfig path, else ``$KUBECONFIG`` (a path list, merged), else
``~/.kube/config``; only when none of those exists and ``KUBERNETES_SERVICE_HOST`` is set,
the in-cluster ServiceAccount config. The default namespace is the chosen context's
namespace, else (in a pod) the ServiceAccount's namespace file, else ``default``.

Why one ApiClient per thread: the official ``kubernetes.stream.stream`` helper patches
``api_client.request`` for the duration of a call, so two threads sharing a client can send
an ordinary GET through the WebSocket path (or the reverse). Watches run in their own threads
too, so every thread gets its own client built from one shared ``Configuration``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, BatchV1Api, Configuration, CoreV1Api

__all__ = [
    "IN_CLUSTER_NAMESPACE_FILE",
    "Connection",
    "connect",
    "connected",
    "in_cluster",
    "kubeconfig_files",
]

IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_KUBECONFIG = "~/.kube/config"


class Connection:
    """One cluster: a shared ``Configuration``, the default namespace, per-thread clients.

    ``source`` says where the settings came from ("kubeconfig /path (context x)" or
    "in-cluster"), for error messages and ``%sandbox_status``.
    """

    def __init__(self, configuration: Configuration, namespace: str, source: str) -> None:
        self.configuration = configuration
        self.namespace = namespace
        self.source = source
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak: a finished thread's client goes with its thread-local storage.
        self._clients: weakref.WeakSet[ApiClient] = weakref.WeakSet()

    @property
    def identity(self) -> str:
        """Which API server, reached how and as whom: a digest of the server URL, the TLS
        settings and the credentials.

        Connections with equal identities get equal answers from the server, so they may
        share a watch (:mod:`.watchers`); two with different credentials may not -- one may
        be denied what the other may see. A digest, so the secrets are not repeated in a key.
        """
        c = self.configuration
        parts = (c.host, sorted((c.api_key or {}).items()), sorted((c.api_key_prefix or {})
                 .items()), c.username, c.password, c.cert_file, c.key_file, c.ssl_ca_cert,
                 c.verify_ssl, c.proxy, getattr(c, "tls_server_name", None))
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def api_client(self) -> ApiClient:
        """This thread's client, created on first use (see the module docstring for why)."""
        api: ApiClient | None = getattr(self._local, "api", None)
        if api is None:
            api = self.new_api_client()
            self._local.api = api
            with self._lock:
                self._clients.add(api)
        return api

    def new_api_client(self) -> ApiClient:
        """A client no other caller holds (a short-lived thread's); the caller closes it."""
        from kubernetes.client import ApiClient

        return ApiClient(configuration=self.configuration)

    def core(self) -> CoreV1Api:
        from kubernetes.client import CoreV1Api

        return CoreV1Api(self.api_client())

    def batch(self) -> BatchV1Api:
        from kubernetes.client import BatchV1Api

        return BatchV1Api(self.api_client())

    def close(self) -> None:
        """Close every client handed out (their connection pools); safe to call twice."""
        with self._lock:
            clients, self._clients = list(self._clients), weakref.WeakSet()
        self._local = threading.local()
        for api in clients:
            with contextlib.suppress(Exception):  # closing a pool must not mask an error
                api.close()

    def __repr__(self) -> str:
        return f"Connection({self.configuration.host!r}, namespace={self.namespace!r})"


def kubeconfig_files(
    kubeconfig: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """The kubeconfig files kubectl would read, in order, keeping only those that exist."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]  # explicit: must exist, checked by the caller
    listed = env.get("KUBECONFIG", "")
    if listed:
        paths = [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    else:
        paths = [Path(DEFAULT_KUBECONFIG).expanduser()]
    return [p for p in paths if p.is_file()]


def in_cluster(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a pod whose in-cluster config kubectl would use."""
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT"))


def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    api_client: ApiClient | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """Resolve cluster settings as kubectl does; no API call is made.

    ``api_client`` reuses a client someone already configured (its ``Configuration`` is
    shared; the client itself is not, see the module docstring).
    """
    env = os.environ if environ is None else environ
    if api_client is not None:
        files = kubeconfig_files(kubeconfig, env) if kubeconfig else []
        namespace = _context_namespace(files, context) if files else None
        return Connection(api_client.configuration, namespace or "default", "api_client")

    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    files = kubeconfig_files(kubeconfig, env)
    if kubeconfig and not files[0].is_file():
        raise ConfigError("kubeconfig", str(kubeconfig), "no such file", "~/.kube/config")
    configuration = k8s_client.Configuration()
    if files:
        joined = os.pathsep.join(str(p) for p in files)
        try:
            k8s_config.load_kube_config(
                config_file=joined, context=context, client_configuration=configuration,
                persist_config=False,
            )
        except k8s_config.ConfigException as exc:
            field = "context" if context and "context" in str(exc).lower() else "kubeconfig"
            raise ConfigError(field, context if field == "context" else joined, str(exc),
                              "a context listed by `kubectl config get-contexts`") from exc
        namespace = _context_namespace(files, context)
        active = context or _current_context(files)
        return Connection(configuration, namespace or "default",
                          f"kubeconfig {joined} (context {active})")
    if in_cluster(env):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException as exc:
            raise ConfigError("kubeconfig", None, f"in-cluster config failed: {exc}",
                              "KUBECONFIG=~/.kube/config") from exc
        return Connection(configuration, _in_cluster_namespace() or "default", "in-cluster")
    raise ConfigError(
        "kubeconfig", None,
        "no cluster is configured (no $KUBECONFIG, no ~/.kube/config, not in a pod); "
        "point KUBECONFIG at a cluster or start a local one with "
        "`eval \"$(sandboxkit devcluster start)\"`",
        "KUBECONFIG=~/.kube/config",
    )


@contextlib.contextmanager
def connected(connection: Connection | None = None) -> Iterator[Connection]:
    """``connection``, or one resolved by :func:`connect` and closed on leaving the block:
    how functions taking ``connection=None`` (inventory, rbac, diagnostics) get a cluster."""
    if connection is not None:
        yield connection
        return
    made = connect()
    try:
        yield made
    finally:
        made.close()


def _contexts(files: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    from kubernetes import config as k8s_config

    try:
        contexts, active = k8s_config.list_kube_config_contexts(
            config_file=os.pathsep.join(str(p) for p in files)
        )
    except (k8s_config.ConfigException, OSError, ValueError):
        return [], None
    return list(contexts or []), active


def _current_context(files: list[Path]) -> str:
    _, active = _contexts(files)
    return str(active.get("name", "")) if active else ""


def _context_namespace(files: list[Path], context: str | None) -> str | None:
    """The namespace of ``context`` (or the current context), as kubectl's ``-n`` default."""
    contexts, active = _contexts(files)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if not chosen:
        return None
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _in_cluster_namespace() -> str | None:
    try:
        return Path(IN_CLUSTER_NAMESPACE_FILE).read_text().strip() or None
    except OSError:
        return None
