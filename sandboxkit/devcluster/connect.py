"""``pods/exec`` and ``pods/log``: the API server's proxy to the kubelet, in one process."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import clock, errors
from .execstream import parse_exec_options, serve_exec
from .kubelet import Kubelet
from .podlogs import LogOptions
from .requestinfo import RequestInfo

__all__ = ["Connector"]

_TRUE = ("true", "1")


def _int_option(query: Any, name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.bad_request(
            f'strconv.ParseInt: parsing "{text}": invalid syntax'
        ) from None


class Connector:
    """Serves the streaming pod subresources by handing the request to the kubelet."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet

    async def __call__(
        self, request: web.Request, info: RequestInfo, pod: dict[str, Any]
    ) -> web.StreamResponse:
        if info.subresource in ("exec", "attach"):
            options = parse_exec_options(request.query, attach=info.subresource == "attach")
            # Resolve the container (and its errors) before upgrading, as the API server does.
            container = self.kubelet.check_exec(pod, options.container or None)

            async def spawn(argv: list[str], tty: bool) -> Any:
                return await self.kubelet.start_exec(pod, container, argv, tty)

            return await serve_exec(request, spawn, options)
        return await self._logs(request, pod)

    async def _logs(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        query = request.query
        since_time = query.get("sinceTime")
        options = LogOptions(
            follow=query.get("follow", "") in _TRUE,
            tail_lines=_int_option(query, "tailLines"),
            timestamps=query.get("timestamps", "") in _TRUE,
            since_seconds=_int_option(query, "sinceSeconds"),
            since_time=clock.parse_time(since_time) if since_time else None,
            limit_bytes=_int_option(query, "limitBytes"),
        )
        chunks = self.kubelet.stream_logs(
            pod, query.get("container") or None, options, query.get("previous", "") in _TRUE
        )
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionResetError:
            pass
        return response
