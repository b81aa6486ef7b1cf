"""A throttling API server: 429 Too Many Requests with Retry-After, honoured by every
request the client sends -- a create, a list, a watch's open -- and given up on, with a
typed error, when the server never relents.

The devcluster throttles on demand (``PUT /debug/sandboxkit/throttle``, see its README and
sandboxkit/devcluster/throttle.py), counting only the test namespace's requests; a real
cluster cannot be made to, so there these tests skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_support import raw_request
from sandbox_support import MakeSandbox

from sandboxkit.backends.kubernetes.api import MAX_RETRIES, request_json, watch
from sandboxkit.errors import Throttled
from sandboxkit.manifests import sandbox_selector

PATH = "/debug/sandboxkit/throttle"
MESSAGE = "Too many requests, please try again later."

Throttle = Callable[..., int]


@pytest.fixture
def throttle(api_client: Any, namespace: str) -> Iterator[Throttle]:
    """``throttle(n, retry_after=1, status=False)`` refuses the namespace's next ``n``
    requests and returns how many the server had refused before; disarmed afterwards."""
    code, _, state = raw_request(api_client, "GET", PATH)
    if code == 404:
        pytest.skip("this cluster cannot be throttled on demand (a devcluster can)")
    assert code == 200, state

    def arm(requests: int, retry_after: int = 1, status: bool = False) -> int:
        body = {"requests": requests, "retryAfterSeconds": retry_after,
                "namespace": namespace, "status": status}
        code, _, state = raw_request(api_client, "PUT", PATH, json.dumps(body).encode())
        assert code == 200, state
        return int(state["refused"])

    yield arm
    raw_request(api_client, "DELETE", PATH)


def refused(api_client: Any) -> int:
    return int(raw_request(api_client, "GET", PATH)[2]["refused"])


def test_the_devcluster_refuses_as_kube_apiserver_does(
    api_client: Any, namespace: str, throttle: Throttle,
) -> None:
    path = f"/api/v1/namespaces/{namespace}/pods"
    throttle(1, retry_after=2)
    code, headers, body = raw_request(api_client, "GET", path)
    assert (code, headers["Retry-After"], body) == (429, "2", f"{MESSAGE}\n")
    assert headers["Content-Type"].startswith("text/plain")
    throttle(1, retry_after=3, status=True)
    code, headers, body = raw_request(api_client, "GET", path)
    assert (code, headers["Retry-After"]) == (429, "3")
    assert body["reason"] == "TooManyRequests" and body["message"] == MESSAGE
    assert body["details"] == {"retryAfterSeconds": 3} and body["code"] == 429
    assert raw_request(api_client, "GET", path)[0] == 200  # only the next N


def test_create_is_retried_after_retry_after(make_sandbox: MakeSandbox, api_client: Any,
                                             throttle: Throttle) -> None:
    sandbox = make_sandbox()
    before = throttle(2, retry_after=1)
    started = time.monotonic()
    sandbox.init()  # the Job's create is refused twice, then the pod starts as ever
    assert sandbox.pod_name
    assert time.monotonic() - started >= 2.0  # the server's delay was waited out
    assert refused(api_client) - before == 2


def test_list_and_watch_are_retried(make_sandbox: MakeSandbox, api_client: Any, core: Any,
                                    namespace: str, throttle: Throttle) -> None:
    conn = make_sandbox().connection
    listing = request_json(conn.core().list_namespaced_config_map, namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "after-the-list"}})

    before = throttle(2, status=True)
    assert request_json(conn.core().list_namespaced_config_map, namespace)["items"]
    assert refused(api_client) - before == 2

    before = throttle(2)
    events = watch(conn.core().list_namespaced_config_map, namespace,
                   resource_version=listing["metadata"]["resourceVersion"],
                   deadline=time.monotonic() + 30)
    kind, obj = next(events)  # the open is refused twice; then the create is replayed
    events.close()
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "after-the-list")
    assert refused(api_client) - before == 2


def test_a_server_that_never_relents_is_a_typed_error_not_a_hang(
    make_sandbox: MakeSandbox, api_client: Any, batch: Any, namespace: str,
    throttle: Throttle,
) -> None:
    sandbox = make_sandbox()
    before = throttle(1000, retry_after=0)  # "0": the client still waits a little
    started = time.monotonic()
    with pytest.raises(Throttled) as caught:
        sandbox.init()
    assert time.monotonic() - started < 30
    assert caught.value.attempts == MAX_RETRIES + 1 == refused(api_client) - before
    assert caught.value.code == 429 and MESSAGE in str(caught.value)
    throttle(0)
    assert batch.list_namespaced_job(namespace, label_selector=sandbox_selector()).items == []
