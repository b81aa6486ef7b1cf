"""The exec client against a live cluster (the devcluster, or SANDBOXKIT_TEST_KUBECONFIG's).

Each test gets a busybox pod idling on ``tail -f /dev/null`` and drives it only through
:func:`run_exec`; checks of the pod's processes go through a second exec, as a user would.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from workload_support import create_running_pod

from sandboxkit.backends.kubernetes.exec import (
    STATUS_GRACE,
    V4_PROTOCOL,
    V5_PROTOCOL,
    TextCallback,
    run_exec,
)
from sandboxkit.backends.wrapper import WRAPPER
from sandboxkit.errors import CommandTimeout, ExecError, PermissionDenied, SandboxGone
from sandboxkit.models import CommandResult

PROTOCOLS = [pytest.param([V5_PROTOCOL, V4_PROTOCOL], id="v5"),
             pytest.param([V4_PROTOCOL], id="v4")]


@pytest.fixture
def pod(api_client: Any, namespace: str) -> str:
    name = f"exec-{uuid.uuid4().hex[:6]}"
    create_running_pod(api_client, namespace, name)
    return name


@pytest.fixture
def sh(api_client: Any, namespace: str, pod: str) -> Callable[..., CommandResult]:
    """Run a shell command in the test pod through run_exec."""

    def run(script: str, **kwargs: Any) -> CommandResult:
        return run_exec(api_client, namespace, pod, None, ["sh", "-c", script], **kwargs)

    return run


def live_commands(sh: Callable[..., CommandResult]) -> list[str]:
    """Command lines of the pod's live processes (zombies have an empty cmdline)."""
    listing = sh("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\" 2>/dev/null; echo; done")
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


def running(sh: Callable[..., CommandResult], command: str) -> bool:
    return any(line == command for line in live_commands(sh))


# -- output -------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_stdout_and_stderr_stay_separate(sh: Callable[..., CommandResult],
                                         protocols: list[str]) -> None:
    result = sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3",
                protocols=protocols)
    assert (result.stdout, result.stderr, result.exit_code) == ("out1\nout2\n", "err1\nerr2\n", 3)
    assert result.command == "sh -c 'echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3'"
    assert not result.truncated and result.duration > 0


@pytest.mark.parametrize("protocols", PROTOCOLS)
@pytest.mark.parametrize(("script", "code"), [
    ("true", 0),
    ("exit 1", 1),
    ("no-such-command-anywhere", 127),
    ("kill -9 $$", 137),
])
def test_exit_codes(sh: Callable[..., CommandResult], script: str, code: int,
                    protocols: list[str]) -> None:
    result = sh(script, protocols=protocols)
    assert result.exit_code == code, result
    if code == 127:
        assert "not found" in result.stderr


def test_unicode_split_across_frames(sh: Callable[..., CommandResult]) -> None:
    # 1 + 3 * 100000 bytes: frame boundaries (pipe reads of up to 64 KiB) fall inside "é"
    expected = "a" + "é\n" * 100_000
    chunks: list[bytes] = []
    texts: list[str] = []
    decoded = TextCallback(texts.append)

    def both(data: bytes) -> None:
        chunks.append(data)
        decoded(data)

    result = sh("printf a; yes é | head -n 100000", on_stdout=both)
    assert result.exit_code == 0
    assert "".join(texts) == expected
    assert result.stdout == expected
    assert b"".join(chunks) == expected.encode()
    assert len(chunks) > 1


def test_binary_output_is_exact(sh: Callable[..., CommandResult]) -> None:
    every_byte = "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); done"
    result = sh(f"{every_byte}; {every_byte} >&2")
    assert result.stdout_bytes == bytes(range(256))
    assert result.stderr_bytes == bytes(range(256))


def test_output_resembling_a_marker_passes_through(sh: Callable[..., CommandResult]) -> None:
    fake = b"\x00sbxk:0123456789abcdef0123456789abcdef:X0\n"
    result = sh("printf '\\000sbxk:0123456789abcdef0123456789abcdef:X0\\n'; printf '\\000'")
    assert result.stdout_bytes == fake + b"\x00"
    assert result.exit_code == 0


def test_binary_stdin_round_trip(sh: Callable[..., CommandResult]) -> None:
    data = os.urandom(1 << 20) + bytes(range(256))
    result = sh("cat", stdin=data)
    assert result.exit_code == 0
    assert hashlib.sha256(result.stdout_bytes).digest() == hashlib.sha256(data).digest()


def test_sinks_receive_the_streams(sh: Callable[..., CommandResult]) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    result = sh("echo to-out; echo to-err >&2", stdout_sink=out, stderr_sink=err)
    assert (out.getvalue(), err.getvalue()) == (b"to-out\n", b"to-err\n")
    assert result.stdout == "to-out\n"


# -- large output -------------------------------------------------------------------------

LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
FIFTY_MIB = 50 << 20


def _expected_output(size: int) -> bytes:
    return (LINE * (size // len(LINE) + 1))[:size]


def test_fifty_mib_is_streamed_not_held(sh: Callable[..., CommandResult]) -> None:
    expected = _expected_output(FIFTY_MIB)
    digest = hashlib.sha256()
    received = 0

    def count(data: bytes) -> None:
        nonlocal received
        received += len(data)
        digest.update(data)

    limit = 1 << 20
    tracemalloc.start()
    try:
        result = sh(f"yes {LINE.decode().strip()} | head -c {FIFTY_MIB}",
                    on_stdout=count, output_limit=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert received == FIFTY_MIB
    assert digest.digest() == hashlib.sha256(expected).digest()
    assert result.truncated
    assert result.stdout_bytes == expected[:limit]
    assert peak < limit + (8 << 20), f"peak {peak / 2**20:.1f} MiB"


def test_fifty_mib_within_the_limit_is_kept_whole(sh: Callable[..., CommandResult]) -> None:
    result = sh(f"yes {LINE.decode().strip()} | head -c {FIFTY_MIB}", output_limit=64 << 20)
    assert not result.truncated
    assert len(result.stdout_bytes) == FIFTY_MIB
    assert result.stdout_bytes == _expected_output(FIFTY_MIB)


def test_default_limit_truncates(sh: Callable[..., CommandResult]) -> None:
    result = sh("head -c 12582912 /dev/zero; echo tail >&2")
    assert result.truncated
    assert len(result.stdout_bytes) == 10 << 20
    assert result.stderr == "tail\n"  # each stream has its own limit


# -- stdin --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_stdin_reaches_eof(sh: Callable[..., CommandResult], protocols: list[str]) -> None:
    assert sh("cat", stdin=b"hello\nworld\n", protocols=protocols).stdout == "hello\nworld\n"
    assert sh("wc -c", stdin=b"x" * 300_000, protocols=protocols).stdout.strip() == "300000"
    assert sh("wc -c", stdin=b"", protocols=protocols).stdout.strip() == "0"
    assert sh("wc -l", stdin=io.BytesIO(b"a\nb\nc\n"), protocols=protocols).stdout.strip() == "3"


def test_stdin_from_a_pipe_is_spooled(sh: Callable[..., CommandResult]) -> None:
    read_end, write_end = os.pipe()

    def produce() -> None:
        with os.fdopen(write_end, "wb") as out:
            for _ in range(64):
                out.write(b"y" * 16384)

    writer = threading.Thread(target=produce)
    writer.start()
    with os.fdopen(read_end, "rb") as source:
        result = sh("wc -c", stdin=source, protocols=[V4_PROTOCOL])
    writer.join()
    assert result.stdout.strip() == str(64 * 16384)


def test_stdin_from_a_file(sh: Callable[..., CommandResult], tmp_path: Any) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(b"skipped" + b"z" * 5000)
    with path.open("rb") as source:
        source.seek(len(b"skipped"))
        result = sh("wc -c", stdin=source, protocols=[V4_PROTOCOL])
    assert result.stdout.strip() == "5000"


# -- timeouts, interrupts, background children ------------------------------------------


@pytest.mark.parametrize("protocols", PROTOCOLS)
def test_timeout_kills_the_remote_process_group(sh: Callable[..., CommandResult],
                                                protocols: list[str]) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        sh("echo started; echo warn >&2; sleep 1235 & sleep 1234", timeout=1,
           protocols=protocols)
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 6, elapsed
    partial = caught.value.result
    assert (partial.stdout, partial.stderr) == ("started\n", "warn\n")
    assert partial.exit_code == 137
    assert caught.value.timeout == 1
    commands = live_commands(sh)
    assert "sleep 1234" not in commands and "sleep 1235" not in commands, commands


def test_timeout_is_enforced_inside_the_pod(api_client: Any, namespace: str, pod: str,
                                            sh: Callable[..., CommandResult]) -> None:
    """The wrapper's watchdog kills the command although the client sets no deadline (as
    when the client died): its end marker says K, the in-pod kill."""
    nonce = "f" * 32
    started = time.monotonic()
    result = run_exec(api_client, namespace, pod, None,
                      ["/bin/sh", "-c", WRAPPER, "sandboxkit-exec", nonce, "1", "",
                       "sleep", "1236"], wrap=False)
    assert time.monotonic() - started < 6
    assert result.exit_code == 137
    assert result.stdout_bytes.endswith(f"\x00sbxk:{nonce}:K137\n".encode())
    assert not running(sh, "sleep 1236")


def test_a_command_within_its_timeout_is_untouched(sh: Callable[..., CommandResult]) -> None:
    result = sh("sleep 0.2; echo fine", timeout=30)
    assert (result.stdout, result.exit_code) == ("fine\n", 0)
    assert not any(line.startswith("sleep 30") for line in live_commands(sh))


def test_interrupt_kills_the_remote_process(sh: Callable[..., CommandResult]) -> None:
    def interrupt(data: bytes) -> None:
        if b"ready" in data:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sh("echo ready; sleep 4321", on_stdout=interrupt)
    assert not running(sh, "sleep 4321")


def test_background_child_does_not_hang_the_call(sh: Callable[..., CommandResult]) -> None:
    started = time.monotonic()
    result = sh("sleep 300 & echo done")
    elapsed = time.monotonic() - started
    assert (result.stdout, result.exit_code) == ("done\n", 0)
    # the devcluster ends such a stream after 0.1 s itself; a kubelet never does, and then
    # the end markers return the call after STATUS_GRACE
    assert elapsed < 2 + STATUS_GRACE, elapsed
    assert running(sh, "sleep 300")  # the child lives on, as in kubectl exec


def test_background_child_output_after_the_command_is_not_waited_for(
    sh: Callable[..., CommandResult],
) -> None:
    started = time.monotonic()
    result = sh("(sleep 0.5; echo late) & echo early; echo also >&2")
    assert time.monotonic() - started < 0.5
    assert (result.stdout, result.stderr) == ("early\n", "also\n")


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_calls_from_threads(sh: Callable[..., CommandResult]) -> None:
    results: dict[tuple[int, int], CommandResult] = {}
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(4):
                results[index, round_] = sh(
                    f"head -c {index * 1000 + round_} /dev/zero | tr '\\0' x; "
                    f"echo {index}-{round_} >&2; exit {index}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for (index, round_), result in results.items():
        assert result.stdout == "x" * (index * 1000 + round_)
        assert result.stderr == f"{index}-{round_}\n"
        assert result.exit_code == index
    assert len(results) == 32


# -- failures -----------------------------------------------------------------------------


def test_missing_pod_is_sandbox_gone(api_client: Any, namespace: str) -> None:
    with pytest.raises(SandboxGone) as caught:
        run_exec(api_client, namespace, "no-such-pod", None, ["true"])
    assert caught.value.reason == "NotFound"


def test_unknown_container_is_an_exec_error(api_client: Any, namespace: str, pod: str) -> None:
    with pytest.raises(ExecError) as caught:
        run_exec(api_client, namespace, pod, "no-such-container", ["true"])
    assert caught.value.code == 400
    assert "no-such-container" in str(caught.value)


def test_raw_mode_runs_argv_as_is(api_client: Any, namespace: str, pod: str) -> None:
    result = run_exec(api_client, namespace, pod, None, ["sh", "-c", "echo $0; exit 9"],
                      wrap=False)
    assert (result.stdout, result.exit_code) == ("sh\n", 9)
    with pytest.raises(ExecError) as caught:
        run_exec(api_client, namespace, pod, None, ["no-such-binary"], wrap=False)
    assert "no-such-binary" in str(caught.value)
    # unwrapped, a timeout can only abandon the stream (a kubelet leaves the process running)
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as timed_out:
        run_exec(api_client, namespace, pod, None, ["sh", "-c", "echo x; sleep 1239"],
                 wrap=False, timeout=0.5)
    assert time.monotonic() - started < 2
    assert (timed_out.value.result.stdout, timed_out.value.result.exit_code) == ("x\n", -1)


def test_forbidden_exec_is_permission_denied(api_client: Any, namespace: str, pod: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token(
        "nobody", namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])))
    config = client.Configuration()
    config.host = api_client.configuration.host
    config.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    config.verify_ssl = api_client.configuration.verify_ssl
    assert token.status is not None and token.status.token
    config.api_key = {"authorization": token.status.token}
    config.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(config) as nobody, pytest.raises(PermissionDenied) as caught:
        run_exec(nobody, namespace, pod, None, ["true"])
    assert caught.value.identity == f"system:serviceaccount:{namespace}:nobody"
    assert caught.value.resource == "pods/exec"
