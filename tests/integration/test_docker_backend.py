"""What only the Docker backend has: the container's spec, Docker's failure modes, attach.

The shared behaviour (commands, files, timeouts, teardown) is tested by the contract suite
(test_sandbox_contract.py, parametrized with docker). These tests read back what the engine
holds (``docker inspect``) and cause real failures: a missing image with no registry, a
container removed under a command, the idle deadline, an OOM kill of the container's init.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker_support import IMAGE, build_image
from sandbox_support import SMALL

from sandboxkit import create_sandbox
from sandboxkit.backends.docker import DockerSandbox
from sandboxkit.errors import (
    BackendUnavailable,
    ImagePullError,
    SandboxError,
    SandboxGone,
    SandboxNotFound,
    SandboxStartupError,
)
from sandboxkit.manifests import ID_LABEL

pytestmark = pytest.mark.docker

MakeSandbox = Callable[..., DockerSandbox]


@pytest.fixture
def engine(docker_host: str) -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture
def make(engine: docker.DockerClient) -> Iterator[MakeSandbox]:
    made: list[DockerSandbox] = []

    def make_sandbox(**overrides: Any) -> DockerSandbox:
        sandbox = create_sandbox(**{"execution_backend": "docker", "image": IMAGE, **SMALL,
                                    **overrides})
        assert isinstance(sandbox, DockerSandbox)
        made.append(sandbox)
        return sandbox

    yield make_sandbox
    for sandbox in made:
        sandbox.teardown(wait=True)


def _containers(engine: docker.DockerClient, name: str) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"{ID_LABEL}={name}"})


def _interfaces(sandbox: DockerSandbox) -> list[str]:
    lines = sandbox.run_command("cat /proc/net/dev", check=True).stdout.splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def test_container_mirrors_the_pod_spec(make: MakeSandbox, engine: docker.DockerClient) -> None:
    stages: list[str] = []
    sandbox = make(cpu_limit="500m", memory_limit="64Mi", cpu_request="250m",
                   memory_request="32Mi", env={"FROM_CONFIG": "yes"}, workdir="/tmp",
                   labels={"team": "ci"}, active_deadline_seconds=600)
    sandbox.init(on_progress=lambda stage, _detail: stages.append(stage))
    assert stages == ["created", "running"]
    attrs = engine.api.inspect_container(sandbox.name)
    labels = attrs["Config"]["Labels"]
    assert (labels["app"], labels[ID_LABEL], labels["team"]) == (
        "ci-fixer-sandbox", sandbox.name, "ci")
    assert attrs["Config"]["Cmd"] == ["timeout", "600", "tail", "-f", "/dev/null"]
    assert "FROM_CONFIG=yes" in attrs["Config"]["Env"]
    assert attrs["Config"]["WorkingDir"] == "/tmp"
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000  # 500m: half a CPU
    assert host["Memory"] == host["MemorySwap"] == 64 << 20  # 64Mi, and no swap on top
    assert host["CpuShares"] == 256  # the kubelet's shares for a 250m request
    assert host["MemoryReservation"] == 32 << 20
    assert host["NetworkMode"] == "none" and host["AutoRemove"] and host["Init"]
    assert _interfaces(sandbox) == ["lo"]
    status = sandbox.status()
    assert status.running and status.limits["memory"] == str(64 << 20)


def test_docker_network_is_joined_when_configured(make: MakeSandbox) -> None:
    sandbox = make(docker_network="host").init()
    assert _interfaces(sandbox) != ["lo"]  # the host's interfaces are visible


def test_missing_image_is_an_image_pull_error(make: MakeSandbox,
                                               engine: docker.DockerClient) -> None:
    image = "registry.invalid/sandboxkit/no-such-image:0.0.1"
    sandbox = make(image=image)
    with pytest.raises(ImagePullError) as caught:
        sandbox.init()
    assert caught.value.image == image and caught.value.reason == "ErrImagePull"
    assert image in str(caught.value)
    assert _containers(engine, sandbox.name) == []


def test_invalid_image_name(make: MakeSandbox) -> None:
    with pytest.raises(ImagePullError) as caught:
        make(image="UPPER/Case:Image").init()
    assert caught.value.reason == "InvalidImageName"


@pytest.mark.parametrize(("image", "build", "names"), [
    ("sandboxkit-test/no-timeout:1", {"omit": frozenset({"timeout"})}, "`timeout`"),
    ("sandboxkit-test/no-tail:1", {"omit": frozenset({"tail"})}, "`tail`"),
    ("sandboxkit-test/no-sh:1", {"omit": frozenset({"sh"})}, "`/bin/sh`"),
    ("sandboxkit-test/failing:1",
     {"scripts": {"bin/timeout": "#!/bin/sh\necho 'licence server unreachable' >&2\nexit 3\n"}},
     "exit code 3): licence server unreachable"),
])
def test_a_container_that_dies_at_start_says_why(
        make: MakeSandbox, engine: docker.DockerClient, docker_host: str, image: str,
        build: dict[str, Any], names: str) -> None:
    build_image(docker_host, image, **build)
    sandbox = make(image=image)
    with pytest.raises(SandboxStartupError) as caught:
        sandbox.init()
    message = str(caught.value)
    assert names in message, message
    assert "docker logs" not in message
    assert _containers(engine, sandbox.name) == []  # removed, by the daemon or by us


def test_keep_on_failure_keeps_a_container_that_cannot_run_commands(
        make: MakeSandbox, engine: docker.DockerClient, docker_host: str) -> None:
    image = build_image(docker_host, "sandboxkit-test/no-sh:1", omit=frozenset({"sh"}))
    sandbox = make(image=image, keep_on_failure=True)
    with pytest.raises(SandboxStartupError, match="/bin/sh") as caught:
        sandbox.init()
    assert [c.status for c in _containers(engine, sandbox.name)] == ["running"]
    assert "kept for debugging" in "".join(caught.value.__notes__)


def test_keep_on_failure_says_an_exited_container_is_gone(
        make: MakeSandbox, engine: docker.DockerClient, docker_host: str) -> None:
    image = build_image(docker_host, "sandboxkit-test/no-timeout:1",
                        omit=frozenset({"timeout"}))
    sandbox = make(image=image, keep_on_failure=True)
    with pytest.raises(SandboxStartupError, match="`timeout`") as caught:
        sandbox.init()
    assert "cannot keep it" in "".join(caught.value.__notes__)


def test_unreachable_daemon_names_docker_host(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    socket = tmp_path / "no-daemon.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    with pytest.raises(BackendUnavailable) as caught:
        create_sandbox(execution_backend="docker", image=IMAGE).init()
    assert "DOCKER_HOST" in str(caught.value) and str(socket) in str(caught.value)


def test_container_removed_under_a_command_is_sandbox_gone(
    make: MakeSandbox, engine: docker.DockerClient,
) -> None:
    sandbox = make().init()

    def remove(_: bytes) -> None:
        engine.api.remove_container(sandbox.name, force=True)

    with pytest.raises(SandboxGone) as caught:
        sandbox.stream("echo started; sleep 60", on_stdout=remove, on_stderr=None, timeout=60)
    assert caught.value.reason == "Deleted", caught.value
    assert caught.value.result is not None and caught.value.result.stdout == "started\n"
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")
    assert sandbox.status().gone


def test_idle_deadline_ends_the_container_with_its_reason(make: MakeSandbox,
                                                          engine: docker.DockerClient) -> None:
    sandbox = make(active_deadline_seconds=3).init()
    with pytest.raises(SandboxGone) as caught:
        sandbox.run_command("sleep 60", timeout=60)
    assert caught.value.reason == "DeadlineExceeded", caught.value
    assert "active_deadline_seconds=3" in str(caught.value)
    with contextlib.suppress(docker.errors.NotFound):  # the daemon removes it (auto_remove)
        engine.api.wait(sandbox.container_id, condition="removed", timeout=30)
    assert _containers(engine, sandbox.name) == []


def test_oom_killed_container_is_sandbox_gone_with_the_reason(make: MakeSandbox) -> None:
    sandbox = make(memory_limit="32Mi").init()
    # shmem is charged to the container but belongs to no process, and the init process is
    # made the OOM killer's first choice: the whole container dies, as with Kubernetes'
    # group OOM kill (a plain hog would be the victim alone and the container would live).
    with pytest.raises(SandboxGone) as caught:
        sandbox.run_command("echo 1000 > /proc/1/oom_score_adj; echo started; "
                            "head -c 48m /dev/zero > /dev/shm/fill", timeout=60)
    assert caught.value.reason == "OOMKilled", caught.value
    assert "memory_limit" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.stdout == "started\n"


def test_attach_by_name_and_list(make: MakeSandbox, engine: docker.DockerClient) -> None:
    sandbox = make().init()
    sandbox.run_command("echo kept > /tmp/state", check=True)
    other = DockerSandbox.attach(sandbox.name)
    assert other.container_id == sandbox.container_id and other.config.image == IMAGE
    assert other.run_command("cat /tmp/state").stdout == "kept\n"
    assert sandbox.name in [status.name for status in DockerSandbox.list_sandboxes()]

    with pytest.raises(SandboxNotFound, match="no sandbox container named"):
        DockerSandbox.attach("no-such-sandbox")
    plain = engine.containers.run(IMAGE, ["sleep", "60"], detach=True, auto_remove=True,
                                  network_mode="none")
    try:
        with pytest.raises(SandboxNotFound, match="not a sandbox"):
            DockerSandbox.attach(plain.name)
    finally:
        plain.remove(force=True)
    other.teardown(wait=True)
    with pytest.raises(SandboxGone):
        sandbox.run_command("true")


def test_restricted_profile_runs_as_a_user_who_owns_uploads(make: MakeSandbox,
                                                             tmp_path: Path) -> None:
    sandbox = make(security_profile="restricted").init()
    assert sandbox.run_command("id -u", check=True).stdout == "1000\n"
    (tmp_path / "notes.txt").write_text("mine\n")
    sandbox.upload(tmp_path / "notes.txt", "/tmp/notes.txt")
    owner = sandbox.run_command("stat -c %u /tmp/notes.txt && cat /tmp/notes.txt", check=True)
    assert owner.stdout == "1000\nmine\n"


def test_logs_are_the_containers_own_output(make: MakeSandbox) -> None:
    sandbox = make()
    with pytest.raises(SandboxError, match="not started"):
        sandbox.logs()
    sandbox.init()
    assert sandbox.logs() == ""  # `tail -f /dev/null` says nothing; commands' output is theirs
    sandbox.run_command("echo from a command", check=True)
    assert sandbox.logs() == ""
    # What the container's init writes is its log, stderr included (in no order relative to
    # stdout: the daemon copies the two pipes separately).
    # The daemon copies the pipes to the log asynchronously: give it a moment.
    sandbox.run_command("printf 'one\\ntwo\\nthree\\n' > /proc/1/fd/1", check=True)
    assert _settled(sandbox.logs) == "one\ntwo\nthree\n"
    assert sandbox.logs(tail=2) == "two\nthree\n"
    sandbox.run_command("printf 'caf\\303\\251 \\377\\n' > /proc/1/fd/2", check=True)
    lines = sorted(_settled(sandbox.logs, lines=4).splitlines())
    assert lines == ["café \ufffd", "one", "three", "two"]
    sandbox.teardown(wait=True)
    with pytest.raises(SandboxGone):
        sandbox.logs()


def _settled(read: Callable[[], str], lines: int = 3, seconds: float = 5.0) -> str:
    """``read()`` once it holds ``lines`` lines, or its last value after ``seconds``."""
    until = time.monotonic() + seconds
    text = read()
    while text.count("\n") < lines and time.monotonic() < until:
        time.sleep(0.05)
        text = read()
    return text
