"""Throttling on demand: 429 Too Many Requests, as kube-apiserver's flow control sends it.

A real API server sheds load in its max-in-flight or API Priority and Fairness filter,
which runs after authentication and before authorization: it answers ``429`` with a
``Retry-After`` header and Go's ``http.Error`` body ``Too many requests, please try again
later.`` (``text/plain``). The devcluster never runs short of capacity, so a test that
must see a client honour that arms it instead, over HTTP, for the next N requests:

``PUT /debug/sandboxkit/throttle`` with ``{"requests": N, "retryAfterSeconds": S}`` and
optionally ``"namespace": NS`` (only requests in that namespace count, so a test on a
shared server throttles its own) and ``"status": true`` (a ``metav1.Status`` body --
reason ``TooManyRequests``, ``details.retryAfterSeconds`` -- the shape
``apierrors.NewTooManyRequests`` gives, instead of the filter's text). ``GET`` reads the
state, ``DELETE`` disarms. Every resource request counts, watches and execs included (APF
throttles a watch's start as well); the admin is not exempt, unlike on a real server,
where ``system:masters`` is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import errors
from .requestinfo import RequestInfo

__all__ = ["MESSAGE", "PATH", "Throttle"]

PATH = "/debug/sandboxkit/throttle"
MESSAGE = "Too many requests, please try again later."


@dataclass
class Throttle:
    """How many of the next resource requests to refuse, and how."""

    remaining: int = 0
    retry_after: int = 1
    namespace: str | None = None
    as_status: bool = False
    refused: int = 0  # since the server started, for a test to check the client's retries

    def state(self) -> dict[str, Any]:
        return {"requests": self.remaining, "retryAfterSeconds": self.retry_after,
                "namespace": self.namespace, "status": self.as_status,
                "refused": self.refused}

    def arm(self, body: dict[str, Any]) -> None:
        """Take the settings of a ``PUT``; a bad one is a 400, as a malformed request."""
        requests, retry_after = body.get("requests", 0), body.get("retryAfterSeconds", 1)
        namespace = body.get("namespace")
        if not (isinstance(requests, int) and isinstance(retry_after, int)
                and requests >= 0 and retry_after >= 0):
            raise errors.bad_request("requests and retryAfterSeconds must be integers >= 0")
        if namespace is not None and not isinstance(namespace, str):
            raise errors.bad_request("namespace must be a string")
        self.remaining, self.retry_after = requests, retry_after
        self.namespace, self.as_status = namespace, bool(body.get("status", False))

    def refuse(self, info: RequestInfo) -> web.Response | None:
        """The 429 for this request while armed, else None (serve it)."""
        if self.remaining <= 0 or not info.is_resource_request:
            return None
        if self.namespace is not None and info.namespace != self.namespace:
            return None
        self.remaining -= 1
        self.refused += 1
        headers = {"Retry-After": str(self.retry_after)}
        if self.as_status:
            body = errors.status_body(429, "TooManyRequests", MESSAGE,
                                      {"retryAfterSeconds": self.retry_after})
            return web.Response(body=json.dumps(body).encode(), status=429, headers=headers,
                                content_type="application/json")
        headers["X-Content-Type-Options"] = "nosniff"
        return web.Response(text=f"{MESSAGE}\n", status=429, headers=headers,
                            content_type="text/plain", charset="utf-8")

    async def serve(self, request: web.Request) -> web.Response:
        """The debug endpoint: GET the state, PUT to arm, DELETE to disarm."""
        if request.method == "PUT":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                raise errors.bad_request("the body must be a JSON object") from None
            if not isinstance(body, dict):
                raise errors.bad_request("the body must be a JSON object")
            self.arm(body)
        elif request.method == "DELETE":
            self.remaining = 0
        elif request.method != "GET":
            raise errors.method_not_allowed()
        return web.json_response(self.state())
