"""Fidelity tests that drive the cluster only through the official client and kubectl:
``pods/exec`` (channel protocol, exit codes, stdin, isolation between pods) and ``pods/log``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDIN_CHANNEL, WSClient
from workload_support import (
    TIMEOUT,
    create_running_pod,
    pod_manifest,
    start_sandbox,
    watch_until,
)

V5 = "v5.channel.k8s.io"
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (.*)$")


def open_exec(core: client.CoreV1Api, namespace: str, pod: str, command: list[str], *,
              stdin: bool = False) -> WSClient:
    return stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=command,
                  stdin=stdin, stdout=True, stderr=True, tty=False, _preload_content=False)


def finish(session: WSClient) -> tuple[str, str, dict[str, Any]]:
    """Run an exec session to its end: (stdout, stderr, the error channel's Status)."""
    session.run_forever(timeout=TIMEOUT)
    assert not session.is_open(), "the exec session did not end"
    status = json.loads(session.peek_channel(ERROR_CHANNEL))
    return session.read_stdout(), session.read_stderr(), status


def follow_until(core: client.CoreV1Api, namespace: str, pod: str,
                 done: Callable[[str], bool], then: Callable[[], None] | None = None) -> str:
    """Follow the pod's log until ``done(text so far)``; ``then`` runs once the open stream
    has delivered its first output."""
    response = core.read_namespaced_pod_log(pod, namespace, follow=True,
                                            _preload_content=False, _request_timeout=TIMEOUT)
    text = ""
    try:
        for chunk in response.stream(4096):
            text += chunk.decode()
            if then is not None and text:
                then()
                then = None
            if done(text):
                return text
    finally:
        response.release_conn()
    raise AssertionError(f"the log stream ended before the expected output: {text!r}")


def test_kubectl_exec_separates_streams_and_returns_the_exit_code(
    api_client: Any, namespace: str, kubectl: Any
) -> None:
    pod = start_sandbox(api_client, namespace, "kexec")
    result = kubectl("exec", "-n", namespace, pod, "--",
                     "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\n")
    assert "command terminated with exit code 3" in result.stderr

    result = kubectl("exec", "-i", "-n", namespace, pod, "--", "tr", "a-z", "A-Z",
                     input="hello\nstdin\n")
    assert (result.returncode, result.stdout) == (0, "HELLO\nSTDIN\n"), result.stderr


def test_client_exec_channels_and_exit_code(
    api_client: Any, core: client.CoreV1Api, namespace: str
) -> None:
    pod = start_sandbox(api_client, namespace, "cexec")

    session = open_exec(core, namespace, pod,
                        ["sh", "-c", "printf 'one\\ntwo\\n'; echo oops >&2; exit 7"])
    stdout, stderr, status = finish(session)
    assert (stdout, stderr) == ("one\ntwo\n", "oops\n")
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "7"}]
    assert session.returncode == 7

    session = open_exec(core, namespace, pod, ["sh", "-c", "echo fine"])
    stdout, stderr, status = finish(session)
    assert (stdout, stderr, status["status"]) == ("fine\n", "", "Success")
    assert session.returncode == 0

    # preloaded (the default): the call returns what the command wrote
    output = stream(core.connect_get_namespaced_pod_exec, pod, namespace,
                    command=["sh", "-c", "echo preloaded"], stdout=True, stderr=True,
                    stdin=False, tty=False)
    assert output == "preloaded\n"


def test_client_exec_with_stdin(api_client: Any, core: client.CoreV1Api,
                                namespace: str) -> None:
    pod = start_sandbox(api_client, namespace, "stdin")
    session = open_exec(core, namespace, pod, ["wc", "-l"],
                        stdin=True)
    assert session.subprotocol == V5  # only v5 can signal the end of stdin
    session.write_stdin("a\nb\nc\n")
    session.close_channel(STDIN_CHANNEL)
    stdout, stderr, status = finish(session)
    assert (stdout.strip(), stderr, status["status"]) == ("3", "", "Success")

    session = open_exec(core, namespace, pod, ["tr", "a-z", "A-Z"], stdin=True)
    session.write_stdin("hello ")
    session.write_stdin("world\n")
    session.close_channel(STDIN_CHANNEL)
    stdout, _, status = finish(session)
    assert (stdout, status["status"]) == ("HELLO WORLD\n", "Success")


def test_pods_have_separate_tmp_and_exec_sees_the_main_process_files(
    api_client: Any, core: client.CoreV1Api, namespace: str
) -> None:
    main = "echo written-by-main > /tmp/main-file; echo ready; exec tail -f /dev/null"
    first = start_sandbox(api_client, namespace, "first", ["sh", "-c", main])
    second = start_sandbox(api_client, namespace, "second", ["sh", "-c", main])
    follow_until(core, namespace, first, lambda text: "ready\n" in text)
    follow_until(core, namespace, second, lambda text: "ready\n" in text)

    stdout, _, status = finish(open_exec(core, namespace, first, ["cat", "/tmp/main-file"]))
    assert (stdout, status["status"]) == ("written-by-main\n", "Success")

    write = "echo only-in-first > /tmp/private && cat /tmp/private"
    stdout, _, status = finish(open_exec(core, namespace, first, ["sh", "-c", write]))
    assert (stdout, status["status"]) == ("only-in-first\n", "Success")
    check = "if [ -e /tmp/private ]; then echo present; exit 1; fi; cat /tmp/main-file"
    stdout, _, status = finish(open_exec(core, namespace, second, ["sh", "-c", check]))
    assert (stdout, status["status"]) == ("written-by-main\n", "Success")
    # and the first pod still has its file: each exec sees the pod's own /tmp
    stdout, _, _ = finish(open_exec(core, namespace, first, ["cat", "/tmp/private"]))
    assert stdout == "only-in-first\n"


def test_logs_all_tail_and_timestamps(
    api_client: Any, core: client.CoreV1Api, namespace: str, kubectl: Any
) -> None:
    script = "for i in 1 2 3 4 5; do echo line-$i; done; exec tail -f /dev/null"
    create_running_pod(api_client, namespace, "logs", ["sh", "-c", script])
    expected = "".join(f"line-{i}\n" for i in range(1, 6))
    follow_until(core, namespace, "logs", lambda text: text == expected)

    result = kubectl("logs", "-n", namespace, "logs")
    assert (result.returncode, result.stdout) == (0, expected), result.stderr
    result = kubectl("logs", "-n", namespace, "logs", "--tail=2", "-c", "main")
    assert (result.returncode, result.stdout) == (0, "line-4\nline-5\n"), result.stderr

    assert core.read_namespaced_pod_log("logs", namespace) == expected
    assert core.read_namespaced_pod_log("logs", namespace, tail_lines=2) == "line-4\nline-5\n"
    assert core.read_namespaced_pod_log("logs", namespace, tail_lines=0) == ""
    stamped = core.read_namespaced_pod_log("logs", namespace, container="main",
                                           timestamps=True, tail_lines=3).splitlines()
    matches = [STAMPED.match(line) for line in stamped]
    assert all(matches), stamped
    assert [m.group(2) for m in matches if m] == ["line-3", "line-4", "line-5"]


def test_logs_follow(api_client: Any, core: client.CoreV1Api, namespace: str,
                     kubectl: Any) -> None:
    script = "echo started; echo to-stderr >&2; touch /tmp/in; exec tail -f /tmp/in"
    create_running_pod(api_client, namespace, "follow", ["sh", "-c", script])
    follow_until(core, namespace, "follow",
                 lambda text: "started\n" in text and "to-stderr\n" in text)

    def append() -> None:
        stdout, _, status = finish(open_exec(core, namespace, "follow",
                                             ["sh", "-c", "echo appended >> /tmp/in"]))
        assert status["status"] == "Success", (stdout, status)

    # output written after the request is delivered on the open stream
    text = follow_until(core, namespace, "follow", lambda t: "appended\n" in t, then=append)
    assert text.index("started\n") < text.index("appended\n")

    # kubectl logs -f ends when the container does, with everything it wrote
    core.create_namespaced_pod(namespace, pod_manifest(
        "short", ["sh", "-c", "echo one; sleep 1; echo two"]))
    watch_until(core.list_namespaced_pod,
                lambda _, p: p.status.phase in ("Running", "Succeeded"), namespace,
                field_selector="metadata.name=short")
    result = kubectl("logs", "-f", "-n", namespace, "short")
    assert (result.returncode, result.stdout) == (0, "one\ntwo\n"), result.stderr


def test_exec_failures(api_client: Any, core: client.CoreV1Api, namespace: str,
                       kubectl: Any) -> None:
    pod = start_sandbox(api_client, namespace, "failures")
    # a command that cannot start is the runtime's error, not an exit code
    _, _, status = finish(open_exec(core, namespace, pod, ["no-such-command"]))
    assert (status["status"], status["reason"], status["code"]) == (
        "Failure", "InternalError", 500)
    assert 'exec: "no-such-command": executable file not found in $PATH' in status["message"]
    result = kubectl("exec", "-n", namespace, pod, "--", "no-such-command")
    assert result.returncode == 1
    assert 'exec: "no-such-command": executable file not found in $PATH' in result.stderr

    result = kubectl("exec", "-n", namespace, pod, "-c", "nope", "--", "true")
    assert result.returncode == 1
    assert f"container nope is not valid for pod {pod}" in result.stderr

    # a container that never started has nothing to exec into
    body = pod_manifest("notstarted")
    body["spec"]["containers"][0]["image"] = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    core.create_namespaced_pod(namespace, body)
    watch_until(core.list_namespaced_pod,
                lambda _, p: bool(p.status.container_statuses
                                  and p.status.container_statuses[0].state.waiting), namespace,
                field_selector="metadata.name=notstarted")
    result = kubectl("exec", "-n", namespace, "notstarted", "--", "true")
    assert result.returncode == 1
    assert 'container not found ("main")' in result.stderr, result.stderr
