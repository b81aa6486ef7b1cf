"""The HTTP face of the devcluster: routing, content negotiation, watch streaming.

This module only translates HTTP to :class:`~sandboxkit.devcluster.api.Api` calls and back.
Who the caller is, whether they may act, and how pods are reached are injected through
:class:`Services`, so the wire format lives in one place and each policy in its own module.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from . import errors, openapi, patch, resources, tables, throttle
from .api import (
    PROPAGATION_POLICIES,
    Api,
    User,
    add_warning,
    collect_warnings,
    unsupported_propagation,
)
from .requestinfo import RequestInfo, parse_request
from .resources import ResourceType

__all__ = ["MAX_REQUEST_BYTES", "Services", "build_app", "warning_header"]

# The API server refuses request bodies over 3 MiB.
MAX_REQUEST_BYTES = 3 * 1024 * 1024
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-sandboxkit-devcluster",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_JSON = "application/json"
JOB_DELETE_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
    "to remove them or set propagationPolicy=Orphan to suppress this warning"
)
_TRUE = ("true", "1")


@dataclass
class Services:
    """The policies the HTTP layer delegates to.

    ``authenticate`` and ``authorize`` raise :class:`errors.ApiError` (401/403);
    ``review`` answers the create-only authorization/authentication review kinds;
    ``connect`` serves ``pods/exec`` and ``pods/log``; ``token`` answers TokenRequests;
    ``throttle`` refuses requests with 429 on demand (:mod:`.throttle`).
    """

    api: Api
    authenticate: Callable[[web.Request], User]
    authorize: Callable[[User, RequestInfo], None]
    review: Callable[[ResourceType, dict[str, Any], User], dict[str, Any]]
    token: Callable[[str, str, dict[str, Any]], dict[str, Any]]
    connect: Callable[[web.Request, RequestInfo, dict[str, Any]], Awaitable[web.StreamResponse]]
    throttle: throttle.Throttle = field(default_factory=throttle.Throttle)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type=_JSON
    )


def _status_success(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """What the registry returns for an object deleted at once (``finalizeDelete``).

    ``StatusDetails`` fields are ``omitempty``: a core-group resource has no ``group`` key.
    """
    meta = obj["metadata"]
    details = errors.status_details(meta["name"], rt.group, rt.plural)
    if meta.get("uid"):
        details["uid"] = meta["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _list_item(obj: dict[str, Any]) -> dict[str, Any]:
    """List items omit apiVersion and kind, as the API server serializes typed lists."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


class Handler:
    """Request handlers bound to one cluster's services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.api = services.api

    # -- plumbing ------------------------------------------------------------------------
    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        with collect_warnings() as warnings:
            try:
                response = await handler(request)
            except errors.ApiError as exc:
                response = _json(exc.status(), exc.code)
            except web.HTTPRequestEntityTooLarge:
                return _json(errors.too_large().status(), 413)
            if not response.prepared:
                for text in warnings:
                    response.headers.add("Warning", warning_header(text))
            return response

    @staticmethod
    async def _read(request: web.Request) -> bytes:
        """The request body, refused with 413 past the API server's 3 MiB limit."""
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            raise errors.too_large()
        raw = await request.read()
        if len(raw) > MAX_REQUEST_BYTES:
            raise errors.too_large()
        return raw

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return self._decode(await self._read(request), request.content_type)

    @staticmethod
    def _decode(raw: bytes, content_type: str) -> dict[str, Any]:
        """JSON, YAML or Kubernetes protobuf (typed client-go clients never fall back to JSON)."""
        from . import protobuf

        if content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(raw)
        if content_type and "json" not in content_type and "yaml" not in content_type \
                and content_type != "application/octet-stream":
            raise errors.ApiError(
                415, "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json, application/yaml",
            )
        try:
            body = yaml.safe_load(raw) if "yaml" in content_type else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(
                f"the object provided is unrecognized or could not be decoded: {exc}"
            ) from None
        if not isinstance(body, dict):
            raise errors.bad_request("Object 'Kind' is missing in the request body")
        return body

    # -- entry point ---------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        info = parse_request(request.method, request.path, request.query)
        user = self.services.authenticate(request)
        # Flow control sits between authentication and authorization, as in kube-apiserver.
        refused = self.services.throttle.refuse(info)
        if refused is not None:
            return refused
        self.services.authorize(user, info)
        if request.path == throttle.PATH:
            return await self.services.throttle.serve(request)
        if not info.is_resource_request:
            return self._non_resource(request.path)
        rt = resources.lookup(info.group, info.version, info.resource)
        if rt is None:
            raise errors.no_route()
        if info.namespace and not rt.namespaced and info.resource != "namespaces":
            raise errors.no_route()
        if info.subresource and info.subresource not in rt.subresources:
            raise errors.no_route()
        namespace = info.namespace if rt.namespaced else None
        method = request.method
        if info.subresource in ("exec", "attach", "log"):
            pod = self.api.get(rt, namespace, info.name)
            return await self.services.connect(request, info, pod)
        if info.subresource == "token" and method == "POST":
            body = await self._body(request)
            self.api.get(rt, namespace, info.name)
            return _json(self.services.token(namespace or "", info.name, body), 201)
        if info.subresource == "binding" and method == "POST":
            body = await self._body(request)
            target = (body.get("target") or {}).get("name", "")
            if not target:
                raise errors.invalid("Binding", "", info.name, [{
                    "field": "target.name", "reason": "FieldValueRequired",
                    "message": "Required value"}])
            uid = (body.get("metadata") or {}).get("uid")
            self.api.bind(namespace or "", info.name, target, uid=uid)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Success", "code": 201}, 201)
        if rt.ephemeral:
            if method != "POST":
                raise errors.method_not_allowed()
            body = await self._body(request)
            return _json(self.services.review(rt, body, user), 201)
        if info.verb == "watch":
            return await self._watch(request, rt, namespace, info.name)
        if info.verb == "list":
            return self._list(request, rt, namespace)
        if info.verb == "get":
            obj = self.api.get(rt, namespace, info.name)
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json(tables.to_table(rt, [obj], obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if info.verb == "create":
            return await self._create(request, rt, namespace, user, info)
        if info.verb == "update":
            return await self._update(request, rt, namespace, info, user)
        if info.verb == "patch":
            return await self._patch(request, rt, namespace, info, user)
        if info.verb == "delete":
            return await self._delete(request, rt, namespace, info.name)
        if info.verb == "deletecollection":
            return await self._delete_collection(request, rt, namespace)
        raise errors.method_not_allowed()

    def _non_resource(self, path: str) -> web.StreamResponse:
        path = path.rstrip("/") or "/"
        if path == "/version":
            return _json(SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/api":
            return _json({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            })
        if path == "/apis":
            return _json(resources.api_groups())
        if path == "/openapi/v3":
            return _json(openapi.index())
        if path.startswith("/openapi/v3/"):
            parts = path.split("/")[3:]
            gv = ("", parts[1]) if parts[0] == "api" and len(parts) == 2 else (
                (parts[1], parts[2]) if parts[0] == "apis" and len(parts) == 3 else None)
            document = openapi.group_version_document(*gv) if gv else None
            if document is not None:
                return _json(document)
        parts = path.strip("/").split("/")
        listing = None
        if parts[0] == "api" and len(parts) == 2:
            listing = resources.resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            listing = resources.resource_list(parts[1], parts[2])
        elif parts[0] == "apis" and len(parts) == 2:
            for group in resources.api_groups()["groups"]:
                if group["name"] == parts[1]:
                    return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if listing is not None:
            return _json(listing)
        raise errors.no_route()

    # -- reads ---------------------------------------------------------------------------
    def _list(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        items, rv = self.api.list(
            rt, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
        )
        if tables.wants_table(request.headers.get("Accept", "")):
            return _json(tables.to_table(rt, items, rv))
        return _json({
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": rv},
            "items": [_list_item(item) for item in items],
        })

    async def _watch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str
    ) -> web.StreamResponse:
        field_selector = request.query.get("fieldSelector")
        if name:
            by_name = f"metadata.name={name}"
            field_selector = f"{field_selector},{by_name}" if field_selector else by_name
        matches = self.api.matcher(rt, request.query.get("labelSelector"), field_selector)
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        try:
            watch = self.api.store.watch(rt, namespace, request.query.get("resourceVersion"),
                                         matches)
        except errors.ApiError as exc:
            if exc.code != 410:
                raise
            await response.prepare(request)
            await self._send_event(response, "ERROR", exc.status())
            return response
        await response.prepare(request)
        try:
            async for type_, obj in self._events(watch.queue, timeout):
                if as_table:
                    obj = tables.to_table(rt, [obj], obj["metadata"].get("resourceVersion", ""))
                await self._send_event(response, type_, obj)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.api.store.stop_watch(watch)
        return response

    @staticmethod
    async def _events(
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None], timeout: float
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                return
            if item is None:
                return
            yield item

    @staticmethod
    async def _send_event(response: web.StreamResponse, type_: str, obj: dict[str, Any]) -> None:
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n"
        await response.write(line.encode())

    # -- writes --------------------------------------------------------------------------
    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        return request.query.get("dryRun") == "All"

    @staticmethod
    def _check_namespace(rt: ResourceType, body: dict[str, Any], namespace: str | None) -> None:
        meta = body.setdefault("metadata", {}) if isinstance(body.get("metadata"), dict) else None
        if meta is None:
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            given = meta.get("namespace")
            if given and given != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace

    def _check_kind(self, rt: ResourceType, body: dict[str, Any]) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})" if api_version != rt.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    async def _create(
        self, request: web.Request, rt: ResourceType, namespace: str | None, user: User,
        info: RequestInfo,
    ) -> web.Response:
        if info.name and not info.subresource:
            raise errors.method_not_allowed()
        body = await self._body(request)
        self._check_kind(rt, body)
        self._check_namespace(rt, body, namespace)
        created = self.api.create(rt, body, user=user, dry_run=self._dry_run(request))
        return _json(created, 201)

    async def _update(
        self, request: web.Request, rt: ResourceType, namespace: str | None, info: RequestInfo,
        user: User,
    ) -> web.Response:
        body = await self._body(request)
        self._check_kind(rt, body)
        self._check_namespace(rt, body, namespace)
        given = body["metadata"].get("name")
        if given != info.name:
            raise errors.bad_request(
                f"the name of the object ({given}) does not match the name on the URL "
                f"({info.name})"
            )
        updated = self.api.update(rt, body, subresource=info.subresource or None, user=user,
                                  dry_run=self._dry_run(request))
        return _json(updated)

    async def _patch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, info: RequestInfo,
        user: User,
    ) -> web.Response:
        raw = await self._read(request)
        content_type = request.content_type
        dry_run = self._dry_run(request)
        self._validate_patch_options(request, content_type == patch.APPLY_PATCH)
        if content_type == patch.APPLY_PATCH:
            applied = self._decode(raw, "yaml")
            self._check_namespace(rt, applied, namespace)
            manager = request.query.get("fieldManager", "")
            force = request.query.get("force", "") in _TRUE
            current = self.api.get_or_none(rt, namespace, info.name)
            merged = patch.server_side_apply(current, applied, manager, force)
            if current is None:
                merged["metadata"]["name"] = info.name
                return _json(self.api.create(rt, merged, user=user, dry_run=dry_run), 201)
            return _json(self.api.update(rt, merged, subresource=info.subresource or None,
                                         user=user, dry_run=dry_run))
        current = self.api.get(rt, namespace, info.name)
        patched = patch.apply_patch(content_type, current, raw, rt.kind)
        if patched["metadata"].get("resourceVersion") == current["metadata"]["resourceVersion"]:
            # A patch applies to the latest version unless it names another one.
            patched["metadata"].pop("resourceVersion", None)
        patched["metadata"]["name"] = info.name
        if rt.namespaced:
            patched["metadata"]["namespace"] = namespace
        return _json(self.api.update(rt, patched, subresource=info.subresource or None, user=user,
                                     dry_run=dry_run))

    @staticmethod
    def _validate_patch_options(request: web.Request, apply: bool) -> None:
        """``ValidatePatchOptions``, which runs before the object is even read: an apply
        names its field manager, and only an apply may force."""
        causes = []
        if apply and not request.query.get("fieldManager"):
            causes.append({"reason": "FieldValueRequired", "field": "fieldManager",
                           "message": "Required value: is required for apply patch"})
        if not apply and "force" in request.query:
            causes.append({"reason": "FieldValueForbidden", "field": "force",
                           "message": "Forbidden: may not be specified for non-apply patch"})
        if causes:
            raise errors.invalid("PatchOptions", "meta.k8s.io", "", causes)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        """DeleteOptions from the body or, without one, the query (as the API server reads
        them). ``orphanDependents`` is kept as sent: it decides the 202 and the warning."""
        options: dict[str, Any] = {}
        raw = await request.read() if request.can_read_body else b""
        if raw.strip():
            options = self._decode(raw, request.content_type)
        else:
            query = request.query
            for key in ("propagationPolicy", "gracePeriodSeconds"):
                if key in query:
                    options[key] = query[key]
            if "orphanDependents" in query:
                options["orphanDependents"] = query["orphanDependents"] in _TRUE
            if query.get("dryRun") == "All":
                options["dryRun"] = ["All"]
        self._validate_delete_options(options)
        orphan = options.get("orphanDependents")
        if isinstance(orphan, bool) and not options.get("propagationPolicy"):
            options["propagationPolicy"] = "Orphan" if orphan else "Background"
        if "gracePeriodSeconds" in options and options["gracePeriodSeconds"] is not None:
            try:
                options["gracePeriodSeconds"] = int(options["gracePeriodSeconds"])
            except (TypeError, ValueError):
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        options["dryRun"] = options.get("dryRun") == ["All"] or request.query.get(
            "dryRun") == "All"
        return options

    @staticmethod
    def _validate_delete_options(options: dict[str, Any]) -> None:
        """``ValidateDeleteOptions``, which the delete handler runs before reading the object,
        so a bad policy is a 422 even for an object that does not exist."""
        policy = options.get("propagationPolicy")
        if policy is not None and options.get("orphanDependents") is not None:
            raise errors.invalid("DeleteOptions", "meta.k8s.io", "", [{
                "reason": "FieldValueInvalid", "field": "propagationPolicy",
                "message": f'Invalid value: "{policy}": orphanDependents and '
                           "deletionPropagation cannot be both set"}])
        if policy is not None and policy not in PROPAGATION_POLICIES:
            raise unsupported_propagation(str(policy))

    @staticmethod
    def _warn_on_delete(rt: ResourceType, options: dict[str, Any]) -> None:
        """batch/v1 Jobs orphan their pods by default; the Job registry warns a client that
        left the policy unset (kubectl prints it as ``Warning: ...``)."""
        if rt.kind == "Job" and rt.group == "batch" and not options.get("propagationPolicy"):
            add_warning(JOB_DELETE_WARNING)

    def _delete_one(
        self, rt: ResourceType, namespace: str | None, name: str, options: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Delete one object: the reply is the object while it lingers (grace period or
        finalizers) and the registry's Success Status once it is gone (pods, which the
        registry returns on delete, excepted).

        The code is 200 either way; 202 only when the client explicitly asked for
        ``orphanDependents: false`` and the object is still there, as the delete handler does.
        """
        obj = self.api.delete(
            rt, namespace, name,
            propagation_policy=options.get("propagationPolicy"),
            grace_period_seconds=options.get("gracePeriodSeconds"),
            preconditions=options.get("preconditions"),
            dry_run=bool(options.get("dryRun")),
        )
        if self.api.store.exists(rt, namespace, name):
            return (202 if options.get("orphanDependents") is False else 200), obj
        return 200, obj if rt.kind == "Pod" else _status_success(rt, obj)

    async def _delete(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str
    ) -> web.Response:
        options = await self._delete_options(request)
        code, body = self._delete_one(rt, namespace, name, options)
        self._warn_on_delete(rt, options)
        return _json(body, code)

    async def _delete_collection(
        self, request: web.Request, rt: ResourceType, namespace: str | None
    ) -> web.Response:
        options = await self._delete_options(request)
        items, rv = self.api.list(rt, namespace, request.query.get("labelSelector"),
                                  request.query.get("fieldSelector"))
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                _, body = self._delete_one(rt, meta.get("namespace"), meta["name"], options)
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
                continue
            deleted.append(_list_item(body if body.get("kind") != "Status" else item))
        self._warn_on_delete(rt, options)
        return _json({"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                      "metadata": {"resourceVersion": rv}, "items": deleted})


def warning_header(text: str) -> str:
    """``net.NewWarningHeader``: code 299, no agent, the text as an HTTP quoted-string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def build_app(services: Services) -> web.Application:
    """The aiohttp application; every path goes through one dispatcher."""
    handler = Handler(services)
    app = web.Application(middlewares=[handler.middleware], client_max_size=MAX_REQUEST_BYTES + 1)
    app.router.add_route("*", "/{tail:.*}", handler.dispatch)

    async def start_watch_cache(_: web.Application) -> None:
        # Watches resume only from versions the server has seen while serving, as with a
        # real API server's watch cache (see Store.compact).
        services.api.store.compact()

    app.on_startup.append(start_watch_cache)
    return app
