"""The retry policy every API request goes through (api.send): client-go's, proven with fake
responses -- which refusals are retried, after how long, how often, and what is left when
the server never relents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sandboxkit.backends.kubernetes import api
from sandboxkit.backends.kubernetes.api import (
    MAX_RETRIES,
    MAX_RETRY_DELAY,
    MIN_RETRY_DELAY,
    WatchStream,
    request_json,
    retry_delay,
    send,
    watch,
)
from sandboxkit.errors import PermissionDenied, Throttled

THROTTLED_TEXT = "Too many requests, please try again later.\n"


class _HTTPResponse:
    """What urllib3 hands the generated client: status, reason, headers, data."""

    def __init__(self, status: int, headers: dict[str, str], body: str = "") -> None:
        self.status, self.reason, self.headers = status, "", headers
        self.data = body.encode()


def refusal(status: int, retry_after: str | None = None, body: str = THROTTLED_TEXT,
            header: str = "Retry-After") -> ApiException:
    headers = {header: retry_after} if retry_after is not None else {}
    return ApiException(http_resp=_HTTPResponse(status, headers, body))


class _Ok:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.data = json.dumps(payload).encode()
        self.released = False

    def release_conn(self) -> None:
        self.released = True


class Script:
    """A fake API method answering from a list: exceptions are raised, the rest returned."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(api.time, "sleep", waited.append)
    return waited


@pytest.mark.parametrize(("status", "header", "delay"), [
    (429, "1", 1.0),
    (429, "3", 3.0),
    (503, "2", 2.0),  # any 5xx with Retry-After, as client-go's checkWait
    (500, "1", 1.0),
    (429, "0", MIN_RETRY_DELAY),  # never a busy loop
    (429, "3600", MAX_RETRY_DELAY),  # never an hour
])
def test_retryable_refusals_wait_what_the_server_asked(status: int, header: str,
                                                       delay: float) -> None:
    assert retry_delay(refusal(status, header)) == delay


@pytest.mark.parametrize("exc", [
    refusal(429),  # no Retry-After: nothing says when, so the refusal stands
    refusal(503),
    refusal(429, "Wed, 21 Oct 2026 07:28:00 GMT"),  # client-go reads only whole seconds
    refusal(403, "1"),
    refusal(409, "1"),
    ValueError("not an API error"),
])
def test_other_refusals_are_not_retried(exc: Exception) -> None:
    assert retry_delay(exc) is None


def test_the_header_name_is_case_insensitive() -> None:
    assert retry_delay(refusal(429, "2", header="retry-after")) == 2.0


def test_a_throttled_request_is_sent_again_after_the_delay(sleeps: list[float]) -> None:
    call = Script(refusal(429, "1"), refusal(503, "2"), _Ok({"kind": "PodList", "items": []}))
    assert request_json(call, "ns", label_selector="a=b") == {"kind": "PodList", "items": []}
    assert sleeps == [1.0, 2.0]
    assert len(call.calls) == 3
    assert all(c == {"_preload_content": False, "label_selector": "a=b"} for c in call.calls)


def test_the_retries_are_bounded_and_end_in_a_typed_error(sleeps: list[float]) -> None:
    call = Script(*[refusal(429, "1")] * (MAX_RETRIES + 1))
    with pytest.raises(Throttled) as caught:
        request_json(call, "ns")
    assert caught.value.attempts == MAX_RETRIES + 1 == len(call.calls)  # client-go: 10 retries
    assert caught.value.code == 429
    assert caught.value.waited == pytest.approx(sum(sleeps)) == MAX_RETRIES * 1.0
    assert "Too many requests, please try again later." in str(caught.value)
    assert isinstance(caught.value.__cause__, ApiException)


def test_a_status_body_gives_its_message(sleeps: list[float]) -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
              "reason": "TooManyRequests", "message": "slow down, said the Status",
              "details": {"retryAfterSeconds": 1}}
    call = Script(*[refusal(429, "1", json.dumps(status))] * (MAX_RETRIES + 1))
    with pytest.raises(Throttled, match="slow down, said the Status"):
        send(call)


def test_a_refusal_without_retry_after_is_translated_at_once(sleeps: list[float]) -> None:
    forbidden = json.dumps({"kind": "Status", "code": 403, "reason": "Forbidden",
                            "message": 'pods is forbidden: User "u" cannot list resource '
                                       '"pods" in API group "" in the namespace "ns"'})
    call = Script(refusal(403, body=forbidden))
    with pytest.raises(PermissionDenied):
        request_json(call, "ns")
    assert sleeps == []


def test_a_watch_retries_its_open_and_a_stop_cuts_the_wait_short() -> None:
    stream = WatchStream()
    call = Script(refusal(429, "5"))

    def list_call(*args: Any, **kwargs: Any) -> Any:
        stream.stop()  # the watch is closed while the server makes it wait
        return call(*args, **kwargs)

    with pytest.raises(ApiException):
        # The refusal stands once stopped: no second attempt, no five-second wait.
        list(watch(list_call, "ns", resource_version="1", deadline=1e18, stream=stream))
    assert len(call.calls) == 1


def test_a_watch_open_is_retried() -> None:
    class Lines(_Ok):
        def stream(self, amt: Any = None, decode_content: bool = False) -> Any:
            yield b'{"type": "ADDED", "object": {"metadata": {"resourceVersion": "2"}}}\n'

        def close(self) -> None:
            pass

    call = Script(refusal(429, "0"), Lines({}))
    events = watch(call, "ns", resource_version="1", deadline=1e18)
    assert next(events)[0] == "ADDED"
    assert [c["watch"] for c in call.calls] == [True, True]
