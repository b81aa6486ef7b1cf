"""The Kubernetes API as sandboxkit uses it: requests, their errors, watches, object fields.

Why one module: the Job lifecycle, the status feed, diagnostics, inventory, RBAC and the
demo all make the same raw-JSON requests, read the same watch streams and the same pod and
event fields; each reading them its own way would let a widget, ``init()`` and a diagnosis
disagree about one object. Nothing here knows about a sandbox's life (see
:mod:`.lifecycle`).

Errors: a refusal becomes a typed error in one place, :func:`status_error`, from the HTTP
status and the Kubernetes ``Status`` body, however the refusal arrived -- an
``ApiException`` from the generated client (:func:`api_error`, used by
:func:`request_json` and :func:`watch`) or a refused WebSocket upgrade of the exec client.

Responses are read as raw JSON: nothing here needs the client's models, and skipping their
deserialization keeps ``init()`` as fast as a hand-written create-and-watch script. Objects
are the API's dicts, the same shapes as watch events.

A watch that the server ends is resumed from the last resourceVersion seen; one that
answers 410 Gone (the version fell out of the server's history) is resumed by listing again.

Throttling: every request -- :func:`request_json`, and the open of each :func:`watch` -- is
sent through :func:`send`, which retries as client-go's ``rest.Request`` does: a 429 Too
Many Requests, or any 5xx, that carries ``Retry-After`` (an API server shedding load under
API Priority and Fairness or max-in-flight, one shutting down) is sent again after the
delay the server asked for, capped, at most :data:`MAX_RETRIES` times; then
:class:`~sandboxkit.errors.Throttled`. Without the header the refusal stands at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ...errors import (
    ExecError,
    PermissionDenied,
    QuotaExceeded,
    SandboxError,
    SandboxGone,
    Throttled,
)
from ...manifests import CONTAINER_NAME, sandbox_selector
from .client import Connection

__all__ = [
    "RBAC_MANIFEST",
    "JobRef",
    "WatchStream",
    "api_error",
    "container_status",
    "event_time",
    "is_running",
    "parse_status",
    "pod_events",
    "request_json",
    "retry_delay",
    "send",
    "spec_container",
    "spec_image",
    "status_error",
    "watch",
]

RBAC_MANIFEST = "k8s/rbac/k8s.yaml"
# A watch whose connection breaks is resumed; this many breaks in a row is an outage.
MAX_BROKEN_STREAMS = 5
# One watch request lasts at most this long; the server ends it and we resume from the last
# resourceVersion. Short enough that an abandoned watch never lingers for long.
WATCH_CHUNK_SECONDS = 60

# client-go's default (rest.Request.maxRetries): a request the server asked to retry later
# is sent at most this many more times.
MAX_RETRIES = 10
# The server's Retry-After is honoured up to this many seconds, so a misconfigured server
# (Retry-After: 3600) costs a bounded wait before Throttled, not an hour per attempt...
MAX_RETRY_DELAY = 10.0
# ...and waited at least this long, so "Retry-After: 0" is no busy loop.
MIN_RETRY_DELAY = 0.1

# What the RBAC authorizer writes into a 403's Status message.
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]*)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)"| at the cluster scope)?'
)
# Any message naming the identity (an authenticating proxy's or webhook's own wording).
_IDENTITY = re.compile(r'User "(?P<user>[^"]*)"')


@dataclass(frozen=True)
class JobRef:
    """The Job behind a sandbox; ``uid`` tells it apart from a later Job of the same name.

    ``selector`` finds its pods: the Job's own ``spec.selector`` (``controller-uid``), which
    holds for any Job, not only those sandboxkit labelled.
    """

    name: str
    namespace: str
    uid: str
    selector: str

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> JobRef:
        meta = job.get("metadata", {})
        match = (job.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        return cls(meta.get("name", ""), meta.get("namespace", ""), meta.get("uid", ""),
                   selector or sandbox_selector(meta.get("name", "")))


# --- refusals and their typed errors ------------------------------------------------------


def parse_status(body: Mapping[str, Any] | bytes | str | None) -> tuple[dict[str, Any], str]:
    """A refusal's body as ``(Status dict, message)``: the Status ``{}`` when the body is
    not a JSON object (a proxy's HTML page, an empty body), the message then its text."""
    if isinstance(body, Mapping):
        status = dict(body)
        return status, str(status.get("message") or "")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed = json.loads(text) if text.strip() else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed, str(parsed.get("message") or "")
    return {}, text.strip()


def status_error(
    code: int, body: Mapping[str, Any] | bytes | str | None, *, verb: str = "",
    resource: str = "", namespace: str = "", name: str = "", container: str | None = None,
    sandbox: str = "",
) -> SandboxError:
    """The typed error for a request the API server refused with HTTP ``code``.

    ``body`` is its Status (parsed, or the raw response body); ``verb``, ``resource``
    (``pods/exec``), ``namespace``, ``name`` (and ``container``) say what was asked, for
    when the body does not:

    - 401/403: :class:`QuotaExceeded` when quota admission refused, else
      :class:`PermissionDenied`. The RBAC authorizer's message (``User "u" cannot create
      resource "jobs" in API group "batch" in the namespace "ns"``) gives verb, resource,
      namespace and identity, and the error says how to grant them; another message keeps
      the request's own and whatever identity it names.
    - 404: :class:`SandboxGone` -- the object the request was about (the sandbox's pod, for
      an exec) does not exist any more.
    - anything else: :class:`ExecError`, with the Status's reason, the code and the Status.
    """
    status, message = parse_status(body)
    message = message or f"HTTP {code}"
    reason = str(status.get("reason") or "")
    if code in (401, 403):
        if "exceeded quota" in message:
            return QuotaExceeded(f"a ResourceQuota refused the sandbox: {message}",
                                 sandbox=sandbox, reason=reason or "Forbidden")
        return _permission_denied(code, message, verb=verb, resource=resource,
                                  namespace=namespace)
    where = f"{namespace}/{name}" if namespace else name
    if code == 404:
        kind = resource.partition("/")[0].removesuffix("s") or "object"
        return SandboxGone(f"{kind} {where} not found: {message}", reason=reason or "NotFound")
    where += f" container {container}" if container else ""
    return ExecError(f"{verb} {resource} on {where} refused ({code}): {message}",
                     reason=reason, code=code, status=status)


def _permission_denied(code: int, message: str, *, verb: str, resource: str,
                       namespace: str) -> PermissionDenied:
    match = _FORBIDDEN.search(message)
    if not match:
        identity = _IDENTITY.search(message)
        return PermissionDenied(
            f"{'unauthorized' if code == 401 else 'forbidden'}: {message}", verb=verb,
            resource=resource, namespace=namespace,
            identity=identity.group("user") if identity else "")
    group = match.group("group") or ""
    qualified = f"{match.group('resource')}.{group}" if group else match.group("resource")
    namespace = match.group("namespace") or ""
    verb, user = match.group("verb"), match.group("user")
    where = f"in namespace {namespace}" if namespace else "at cluster scope"
    ns_flag = f" -n {namespace}" if namespace else ""
    return PermissionDenied(
        f"{user} may not {verb} {qualified} {where}. Grant the sandbox RBAC "
        f"(kubectl apply{ns_flag} -f {RBAC_MANIFEST}) or check with "
        f"`kubectl auth can-i {verb} {qualified}{ns_flag}`. The API said: {message}",
        verb=verb, resource=qualified, namespace=namespace, identity=user,
    )


def api_error(exc: Exception, *, sandbox: str = "") -> Exception:
    """Translate an ApiException into the typed error a caller can act on.

    A 403 becomes what :func:`status_error` makes of it. Any other exception is returned
    unchanged: a 404, 409 or 410 means something different to each caller (attach: no such
    sandbox; delete: already gone; create: the name is taken; a watch: list again), so
    those callers catch the ApiException and branch on its ``status``.
    """
    if int(getattr(exc, "status", 0) or 0) != 403:
        return exc
    body = getattr(exc, "body", None) or getattr(exc, "reason", None) or str(exc)
    return status_error(403, body, sandbox=sandbox)


def _raise_translated(exc: Exception) -> NoReturn:
    translated = api_error(exc)
    if translated is exc:
        raise exc
    raise translated from exc


def retry_delay(exc: Exception) -> float | None:
    """Seconds to wait before sending the refused request again, None to give up at once.

    client-go's ``checkWait``: only a 429 or a 5xx, and only with a ``Retry-After`` of whole
    seconds (the form the API server sends); clamped to
    [:data:`MIN_RETRY_DELAY`, :data:`MAX_RETRY_DELAY`].
    """
    code = int(getattr(exc, "status", 0) or 0)
    if code != 429 and code < 500:
        return None
    headers = getattr(exc, "headers", None) or {}
    value = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), "")
    try:
        seconds = int(value.strip())
    except ValueError:  # absent, or an HTTP date: client-go does not wait for those either
        return None
    return min(max(float(seconds), MIN_RETRY_DELAY), MAX_RETRY_DELAY)


def send(call: Callable[..., Any], *args: Any,
         wait: Callable[[float], bool | None] | None = None, **kwargs: Any) -> Any:
    """``call(*args, _preload_content=False, **kwargs)``: the raw response, with a refusal
    that asks to be retried later (see :func:`retry_delay`) sent again, at most
    :data:`MAX_RETRIES` times, then :class:`Throttled`.

    Retrying a create is safe: a 429 (and a 5xx with Retry-After) means the server shed the
    request before acting on it. ``wait(seconds)`` sleeps between attempts; a watch passes
    one that its stop cuts short (returning True), so closing a watch never waits out a
    server's delay: the refusal is raised then. Other errors are raised untranslated, for
    the caller to branch on their status.
    """
    from kubernetes.client.exceptions import ApiException

    waited, attempts = 0.0, 0
    while True:
        attempts += 1
        try:
            return call(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            delay = retry_delay(exc)
            if delay is None:
                raise
            if attempts > MAX_RETRIES:
                _, message = parse_status(exc.body)
                raise Throttled(
                    f"the API server still refused the request after {attempts} attempts "
                    f"over {waited:.1f}s ({exc.status}: {message or exc.reason}); it is "
                    "overloaded or throttling this client (API Priority and Fairness): try "
                    "again later, or start fewer sandboxes at once",
                    code=int(exc.status), attempts=attempts, waited=waited,
                ) from exc
            if (wait or time.sleep)(delay):
                raise
            waited += delay


def request_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a generated API method and return its JSON body as a dict, errors translated,
    retried as :func:`send` says.

    Dicts rather than models: the same shapes as watch events, and no deserialization cost.
    """
    return _request_json(call, args, kwargs, None)


def _request_json(call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  wait: Callable[[float], bool | None] | None) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        response = send(call, *args, wait=wait, **kwargs)
    except ApiException as exc:
        _raise_translated(exc)
    try:
        return json.loads(response.data or b"{}")
    finally:
        response.release_conn()


# --- watches ------------------------------------------------------------------------------

class WatchStream:
    """Holds the response a watch is reading so another thread can cut it short."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: Any = None
        self._stop = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until :meth:`stop`; True when stopped."""
        return self._stop.wait(seconds)

    def attach(self, response: Any) -> None:
        with self._lock:
            self._response = response
            stopped = self._stop.is_set()
        if stopped:
            self._close(response)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            response = self._response
        if response is not None:
            self._close(response)

    @staticmethod
    def _close(response: Any) -> None:
        # shutdown() unblocks a read in progress in another thread (urllib3 >= 2.3); close()
        # then drops the connection: half-read, it must not go back to the pool.
        with contextlib.suppress(Exception):
            shutdown = getattr(response, "shutdown", None)
            if shutdown is not None:
                shutdown()
        with contextlib.suppress(Exception):
            response.close()


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line


def watch(
    list_call: Callable[..., Any], *args: Any, resource_version: str | None,
    deadline: float, stream: WatchStream | None = None, **kwargs: Any,
) -> Iterator[tuple[str, Any]]:
    """Yield ``(type, object)`` until ``deadline``, surviving server timeouts and 410.

    Without ``resource_version`` it lists first. Every list -- the first one and the relist
    after a 410 -- is yielded as ``("SYNC", items)``: the complete current set, so a consumer
    tracking deletions learns what vanished while it could not watch. Objects are dicts.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    stream = stream or WatchStream()

    def relist() -> str:
        listing = _request_json(list_call, args, kwargs, stream.wait)
        pending.append(("SYNC", listing.get("items") or []))
        return str(listing.get("metadata", {}).get("resourceVersion", ""))

    pending: list[tuple[str, Any]] = []
    broken = 0  # consecutive streams that broke before delivering an event
    rv = resource_version if resource_version is not None else relist()
    while not stream.stopped:
        yield from pending
        pending.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            response = send(
                list_call, *args, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                timeout_seconds=max(1, min(WATCH_CHUNK_SECONDS, int(remaining) + 1)),
                wait=stream.wait, **kwargs,
            )
        except ApiException as exc:
            if exc.status == 410:
                rv = relist()
                continue
            _raise_translated(exc)
        stream.attach(response)
        finished = False
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        rv = relist()
                        break
                    raise SandboxError(f"watch failed: {obj.get('message', obj)}")
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if time.monotonic() >= deadline:
                    return
                broken = 0
                if kind != "BOOKMARK":
                    yield kind, obj
            else:
                finished = True
        except (ProtocolError, ReadTimeoutError, ConnectionError):
            # The connection broke mid-stream (an API server restart, a proxy's idle
            # timeout): resume from the last version seen, as client-go's reflector does.
            if stream.stopped:
                return
            broken += 1
            if broken > MAX_BROKEN_STREAMS:
                raise
            continue
        except Exception:
            if stream.stopped:
                return
            raise
        finally:
            # A fully read response may go back to the pool; one we left early may not.
            with contextlib.suppress(Exception):
                response.release_conn() if finished else response.close()


# --- pods and events ----------------------------------------------------------------------


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The sandbox container's status in a pod ({} before the kubelet reports one); the
    first container's for a pod sandboxkit did not make, so diagnostics still read it."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER_NAME),
                statuses[0] if statuses else {})


def spec_container(pod: dict[str, Any]) -> dict[str, Any]:
    """The sandbox container's spec in a pod (or a pod template)."""
    containers = pod.get("spec", {}).get("containers") or [{}]
    return next((c for c in containers if c.get("name") == CONTAINER_NAME), containers[0])


def spec_image(pod: dict[str, Any]) -> str:
    """The image the sandbox container asks for (the status's image is what was pulled)."""
    return str(spec_container(pod).get("image", ""))


def is_running(pod: dict[str, Any]) -> bool:
    """Phase Running and the sandbox container running: commands can be exec'd now."""
    if pod.get("status", {}).get("phase") != "Running":
        return False
    return "running" in (container_status(pod).get("state") or {})


def pod_events(conn: Connection, namespace: str, uids: list[str]) -> list[dict[str, Any]]:
    """Events about the given objects, oldest first."""
    events: list[dict[str, Any]] = []
    for uid in uids:
        if uid:
            listing = request_json(conn.core().list_namespaced_event, namespace,
                                   field_selector=f"involvedObject.uid={uid}")
            events.extend(listing.get("items") or [])
    return sorted(events, key=event_time)


def event_time(event: dict[str, Any]) -> str:
    """When an event last happened, as an RFC 3339 string that sorts by time: core/v1
    events carry ``lastTimestamp``, events.k8s.io-style ones only ``eventTime``."""
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or event.get("metadata", {}).get("creationTimestamp") or "")
