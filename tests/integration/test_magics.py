"""The IPython magics in a real InteractiveShell against a real cluster.

``%load_ext sandboxkit`` in IPython's own shell; defaults set with ``%config``; every
sandbox and file read back from the cluster or the sandbox itself. Output is read from the
process's stdout and stderr (capsys), which is where a notebook's cell output comes from.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from kubernetes import client
from sandbox_support import IMAGE, SERVICE_ACCOUNT

from sandboxkit.errors import CommandFailed, CommandTimeout, ImagePullError
from sandboxkit.models import CommandResult

OTHER_IMAGE = "busybox:1.36"
SANDBOX_SELECTOR = "app=ci-fixer-sandbox"

Magic = Callable[..., Any]


@pytest.fixture
def shell(kubeconfig: Path, api_client: Any, namespace: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """IPython's shell with the extension loaded and pointed at the test namespace; the
    extension is unloaded afterwards (deleting what the test left)."""
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "sandboxkit")
    for setting in (f"namespace = {namespace!r}", f"image = {IMAGE!r}",
                    "cpu = '10m:1'", "memory = '16Mi:2Gi'", "startup_timeout = 120.0"):
        ip.run_line_magic("config", f"SandboxMagics.{setting}")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "sandboxkit")


def jobs(api_client: Any, namespace: str) -> dict[str, Any]:
    """The sandbox Jobs in ``namespace`` not being deleted, by name."""
    listed = client.BatchV1Api(api_client).list_namespaced_job(
        namespace, label_selector=SANDBOX_SELECTOR).items
    return {job.metadata.name: job for job in listed if job.metadata.deletion_timestamp is None}


def test_up_shows_progress_and_exec_streams_stdout_and_stderr_apart(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str], api_client: Any,
        namespace: str) -> None:
    shell.run_line_magic("sandbox_up", "first")
    out = capsys.readouterr().out
    stages = [line.split()[0] for line in out.splitlines()
              if line.split()[:1] and line.split()[0] in
              ("created", "scheduled", "pulling", "running")]
    assert stages == ["created", "scheduled", "pulling", "running"], out
    assert "first" in jobs(api_client, namespace)

    shell.run_cell_magic("sandbox_exec", "--out so --err se",
                         "echo to-out; echo to-err >&2; exit 3")
    captured = capsys.readouterr()
    assert captured.out == "to-out\n"
    assert captured.err == "to-err\nexit code 3\n"
    result = shell.user_ns["_sandbox_result"]
    assert isinstance(result, CommandResult) and result.exit_code == 3
    assert (shell.user_ns["so"], shell.user_ns["se"]) == ("to-out\n", "to-err\n")

    with pytest.raises(CommandFailed) as failed:
        shell.run_cell_magic("sandbox_exec", "--check", "echo bad >&2; exit 4")
    assert failed.value.result.exit_code == 4

    line = shell.run_line_magic("sandbox_exec",
                                'first --env GREETING=hi --workdir /tmp -- echo "$GREETING $PWD"')
    assert line.stdout == "hi /tmp\n"
    assert capsys.readouterr().out == "hi /tmp\n"

    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        shell.run_cell_magic("sandbox_exec", "--timeout 2", "echo begun; sleep 60")
    assert time.monotonic() - started < 30
    assert capsys.readouterr().out.startswith("begun\n")


def test_files_travel_both_ways(shell: InteractiveShell, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("sandbox_up", "")
    body = "line one\n$(not expanded) 'quoted'\n"
    shell.run_cell_magic("sandbox_write", "'/tmp/a dir/notes.txt'", body)
    assert shell.run_line_magic("sandbox_exec", "cat '/tmp/a dir/notes.txt'").stdout == body

    local = tmp_path / "up.bin"
    local.write_bytes(bytes(range(256)))
    shell.run_line_magic("sandbox_upload", f"{local} /tmp/up.bin")
    shell.run_line_magic("sandbox_download", f"/tmp/up.bin {tmp_path / 'down.bin'}")
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
    capsys.readouterr()

    with pytest.raises(UsageError, match="no such file or directory in sandbox"):
        shell.run_line_magic("sandbox_download", f"/tmp/missing {tmp_path / 'x'}")
    with pytest.raises(UsageError, match="no such local file"):
        shell.run_line_magic("sandbox_upload", f"{tmp_path / 'missing'} /tmp/x")


def test_sync_sends_changes_and_diff_shows_them(shell: InteractiveShell, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("sandbox_up", "web")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.pyc").write_text("junk")
    report = shell.run_line_magic("sandbox_sync", f"web {tmp_path} /tmp/proj --exclude '*.pyc'")
    assert (report.added, report.bytes_sent) == (1, 6)
    assert str(report) == "1 added, 0 changed, 0 deleted, 0 unchanged; 6 bytes sent"
    shown = shell.display_formatter.format(report)[0]["text/plain"]  # the cell's result
    assert shown == str(report)
    again = shell.run_line_magic("sandbox_sync", f"-s web {tmp_path} /tmp/proj --delete")
    assert (again.added, again.unchanged) == (1, 1)
    shell.run_line_magic("sandbox_exec", "--quiet -- echo 'x = 2' > /tmp/proj/a.py")
    found = shell.run_line_magic("sandbox_diff", "/tmp/proj")
    assert "+x = 2" in found.text and "-x = 1" in found.text
    capsys.readouterr()
    assert shell.run_line_magic("sandbox_diff", "web /tmp/proj --stat") is None
    assert capsys.readouterr().out == "1 files changed, +1 -1\n"
    shell.run_line_magic("sandbox_diff", "-s web /tmp/proj --stat")
    assert capsys.readouterr().out == "1 files changed, +1 -1\n"
    with pytest.raises(UsageError, match="no such local directory"):
        shell.run_line_magic("sandbox_sync", f"{tmp_path / 'missing'} /tmp/x")


class _Tee:
    """A stdout that also sets ``seen`` once ``marker`` was written: the interrupt test's
    signal that the remote command is running."""

    def __init__(self, inner: Any, marker: str) -> None:
        self.inner, self.marker, self.seen = inner, marker, threading.Event()
        self.text = ""  # the marker may arrive split across chunks

    def write(self, text: str) -> int:
        self.text += text
        if self.marker in self.text:
            self.seen.set()
        return int(self.inner.write(text))

    def flush(self) -> None:
        self.inner.flush()


def test_interrupt_stops_the_remote_process(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    shell.run_line_magic("sandbox_up", "")
    tee = _Tee(sys.stdout, "started")
    monkeypatch.setattr(sys, "stdout", tee)
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        if tee.seen.wait(60):
            # A real SIGINT, as a kernel interrupt is: it also wakes a blocked select().
            signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as interrupted:
        shell.run_cell_magic("sandbox_exec", "",
                             "echo $$ > /tmp/sleeper.pid; echo started; exec sleep 600")
    assert time.monotonic() - started < 60
    assert "was stopped" in interrupted.value._render_traceback_()[0]
    monkeypatch.undo()
    state = shell.run_line_magic(
        "sandbox_exec",
        'pid=$(cat /tmp/sleeper.pid); if [ -d /proc/$pid ] && ! grep -q "^State:.*Z" '
        '/proc/$pid/status; then echo alive; else echo gone; fi')
    assert state.stdout == "gone\n"


def test_named_sandboxes_config_ls_and_down_all(
        shell: InteractiveShell, api_client: Any, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("sandbox_up", "alpha --env WHO=alpha")
    shell.run_line_magic("config", f"SandboxMagics.image = {OTHER_IMAGE!r}")
    shell.run_line_magic("sandbox_up", "beta --cpu 200m --memory 64Mi")
    created = jobs(api_client, namespace)
    containers = {name: job.spec.template.spec.containers[0] for name, job in created.items()}
    assert {name: c.image for name, c in containers.items()} == {
        "alpha": IMAGE, "beta": OTHER_IMAGE}
    beta = containers["beta"].resources
    assert (beta.requests, beta.limits) == ({"cpu": "10m", "memory": "16Mi"},
                                            {"cpu": "200m", "memory": "64Mi"})

    # beta, the last started, is current; alpha is reached by name
    assert shell.run_line_magic("sandbox_exec", 'echo "${WHO:-none}"').stdout == "none\n"
    assert shell.run_line_magic("sandbox_exec", 'alpha -- echo "$WHO"').stdout == "alpha\n"

    frame = shell.run_line_magic("sandbox_ls", "")
    assert sorted(frame["name"]) == ["alpha", "beta"]
    assert set(frame["phase"]) == {"Active"}

    capsys.readouterr()
    shell.run_line_magic("sandbox_down", "--all")
    assert "deleted" in capsys.readouterr().out
    assert client.BatchV1Api(api_client).list_namespaced_job(
        namespace, label_selector=SANDBOX_SELECTOR).items == []
    assert client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=SANDBOX_SELECTOR).items == []
    with pytest.raises(UsageError, match="no sandbox in this kernel"):
        shell.run_line_magic("sandbox_exec", "true")


@pytest.mark.parametrize(("magic", "line", "message"), [
    ("sandbox_exec", "true", "no sandbox in this kernel"),
    ("sandbox_status", "nosuch", "no sandbox named 'nosuch'"),
    ("sandbox_down", "nosuch", "no sandbox named 'nosuch'"),
    ("sandbox_up", "--bogus", "unrecognized arguments: --bogus"),
    ("sandbox_up", "--cpu 2Gb", "not a Kubernetes quantity"),
    ("sandbox_up", "--memory 1Gi:512Mi", "the request is above the limit"),
    ("sandbox_up", "Not_A_Name", "DNS-1123"),
    ("sandbox_up", "--backend vm", "supported backends"),
    ("sandbox_up", "--env NOEQUALS", "expected NAME=VALUE"),
    ("sandbox_exec", "--check echo hi", "put -- between the options and the command"),
    ("sandbox_attach", "nosuch", "no sandbox named nosuch"),
])
def test_mistakes_are_usage_errors_before_any_api_call(
        shell: InteractiveShell, api_client: Any, namespace: str, magic: str, line: str,
        message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic(magic, line)
    assert jobs(api_client, namespace) == {}


def test_cell_usage_errors(shell: InteractiveShell) -> None:
    shell.run_line_magic("sandbox_up", "")
    with pytest.raises(UsageError, match="not a Python variable name"):
        shell.run_cell_magic("sandbox_exec", "--out 1x", "true")
    with pytest.raises(UsageError, match="positive number of seconds"):
        shell.run_cell_magic("sandbox_exec", "--timeout 0", "true")
    with pytest.raises(UsageError, match="names a directory"):
        shell.run_cell_magic("sandbox_write", "/tmp/dir/", "x")


def test_startup_failure_is_shown_without_a_traceback(
        shell: InteractiveShell, api_client: Any, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%sandbox_up broken --image sandboxkit.invalid/no-such-image:1")
    assert isinstance(result.error_in_exec, ImagePullError)
    shown = capsys.readouterr()
    assert "ImagePullError: sandbox broken: image" in shown.out + shown.err
    assert "Traceback" not in shown.out + shown.err
    assert jobs(api_client, namespace) == {}


def test_unload_deletes_unkept_sandboxes_and_attach_takes_a_kept_one_over(
        shell: InteractiveShell, api_client: Any, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("sandbox_up", "temporary")
    shell.run_line_magic("sandbox_up", "kept --keep")
    shell.run_line_magic("unload_ext", "sandboxkit")
    said = capsys.readouterr().out
    assert "deleted temporary" in said and "kept is still running" in said
    assert list(jobs(api_client, namespace)) == ["kept"]

    shell.run_line_magic("load_ext", "sandboxkit")
    shell.run_line_magic("config", f"SandboxMagics.namespace = {namespace!r}")
    with provisionalcompleter():  # Tab offers the namespace's sandbox Jobs to attach
        offered = [c.text for c in shell.Completer.completions("%sandbox_attach k", 17)
                   if "match_sandbox_magic" in c._origin]
    assert offered == ["kept"]
    shell.run_line_magic("sandbox_attach", "kept")
    assert shell.run_line_magic("sandbox_exec", "echo back").stdout == "back\n"
    shell.run_line_magic("sandbox_down", "")
    assert jobs(api_client, namespace) == {}


def test_rbac_prints_the_verdict_and_the_missing_rules(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    # ci-fixer-app has no Role in a fresh namespace: every grant it needs is missing
    frame = shell.run_line_magic("sandbox_rbac", "--service-account ci-fixer-app")
    printed = capsys.readouterr().out
    assert not frame["ok"].all()
    assert frame.attrs["verdict"] in printed
    assert frame.attrs["missing_yaml"] and frame.attrs["missing_yaml"] in printed


def test_diagnose_a_sandbox_of_this_kernel(shell: InteractiveShell) -> None:
    shell.run_line_magic("sandbox_up", "healthy")
    diagnosis = shell.run_line_magic("sandbox_diagnose", "")
    assert diagnosis.target == "healthy" and diagnosis.ok


def test_logs_show_what_the_container_wrote(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("sandbox_up", "")
    # The container's log is its main process's stdout, PID 1 in the pod.
    shell.run_line_magic("sandbox_exec", "--check -- sh -c 'echo one; echo two' > /proc/1/fd/1")
    capsys.readouterr()
    shell.run_line_magic("sandbox_logs", "--tail 1")
    assert capsys.readouterr().out == "two\n"


def test_attach_ls_and_logs_work_for_a_local_sandbox(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    """The magics go through the Sandbox contract, not the Kubernetes class: a local
    sandbox kept by one kernel is listed, attached and read by the next one."""
    shell.run_line_magic("config", "SandboxMagics.backend = 'local'")
    try:
        shell.run_line_magic("sandbox_up", "--keep")
        name = shell.run_line_magic("sandbox_exec", "--quiet -- basename \"$PWD\"").stdout.strip()
        frame = shell.run_line_magic("sandbox_ls", "")
        assert name in list(frame["name"]) and set(frame["phase"]) == {"Active"}
        with pytest.raises(UsageError, match="Kubernetes namespaces"):
            shell.run_line_magic("sandbox_ls", "-A")
        shell.run_line_magic("unload_ext", "sandboxkit")
        assert f"{name} is still running (kept)" in capsys.readouterr().out

        shell.run_line_magic("load_ext", "sandboxkit")
        shell.run_line_magic("sandbox_attach", f"{name} --backend local")
        shell.run_line_magic("sandbox_logs", f"-s {name}")
        assert "attached" in capsys.readouterr().out  # a local sandbox's log is empty
        assert shell.run_line_magic("sandbox_exec", "--quiet -- echo back").stdout == "back\n"
        shell.run_line_magic("sandbox_down", name)
        with pytest.raises(UsageError, match="no local sandbox named"):
            shell.run_line_magic("sandbox_attach", f"{name} --backend local")
    finally:  # %config lasts as long as the shell, which the next tests share
        shell.run_line_magic("config", "SandboxMagics.backend = None")


def test_up_with_a_pool_claims_and_registers_the_name_typed(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str], api_client: Any,
        namespace: str) -> None:
    from sandboxkit.pool import SandboxPool

    magics = shell.magics_manager.registry["SandboxMagics"]
    pool = SandboxPool("warm", 1, magics.sandbox_config())  # exactly what %sandbox_up makes
    pool.start().stop()
    try:
        capsys.readouterr()
        shell.run_line_magic("sandbox_up", "web --pool warm")
        out = capsys.readouterr().out
        claimed = magics.registry.get("web")
        assert out.startswith("claimed ") and f"web is sandbox {claimed.name}" in out
        assert jobs(api_client, namespace)[claimed.name].metadata.labels[
            "sandboxkit.io/pool-state"] == "claimed"
        result = shell.run_line_magic("sandbox_exec", "web --quiet -- echo hi")
        assert result.stdout == "hi\n"
        shell.run_line_magic("sandbox_up", "again --pool warm")  # the pool is empty now
        assert capsys.readouterr().out.startswith("cold ")
        assert magics.registry.get().name != "again"  # a cold start from a pool: NAME too
        shell.run_line_magic("sandbox_down", "web")
        assert "deleted web" in capsys.readouterr().out
        assert claimed.name not in jobs(api_client, namespace)
    finally:
        pool.drain()
