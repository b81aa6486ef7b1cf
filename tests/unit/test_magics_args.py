"""How magic arguments become settings, without a cluster: precedence of defaults, the
environment, ``%config`` traits and flags; the --cpu/--memory rules; line-form splitting;
and that every mistake is a UsageError raised before a sandbox object is even made -- for
any line and cell body at all (a property: unterminated quotes, lone surrogates...)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.error import UsageError
from property_support import ANY_TEXT, FAST

from sandboxkit.backends.base import ArgvSandbox, ProgressCallback
from sandboxkit.config import DEFAULT_IMAGE, SandboxConfig
from sandboxkit.errors import BackendUnavailable, ConfigError, SandboxError, SandboxGone
from sandboxkit.magics import SandboxMagics
from sandboxkit.magics.options import (
    parse_env,
    resource_overrides,
    split_line_command,
    unquote,
    variable_name,
)
from sandboxkit.magics.registry import SandboxRegistry, UnknownSandbox
from sandboxkit.models import CommandResult, SandboxStatus


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SANDBOXKIT_IMAGE", "SANDBOXKIT_CPU_REQUEST", "SANDBOXKIT_CPU_LIMIT",
                 "SANDBOXKIT_MEMORY_REQUEST", "SANDBOXKIT_MEMORY_LIMIT", "SANDBOXKIT_ENV",
                 "EXECUTION_BACKEND", "SANDBOXKIT_EXECUTION_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_unset_traits_leave_the_environment_in_charge(clean_env: pytest.MonkeyPatch) -> None:
    magics = SandboxMagics()
    assert magics.sandbox_config().image == DEFAULT_IMAGE
    clean_env.setenv("SANDBOXKIT_IMAGE", "from-env:1")
    assert magics.sandbox_config().image == "from-env:1"
    magics.image = "from-trait:1"
    assert magics.sandbox_config().image == "from-trait:1"
    assert magics.sandbox_config(image="from-flag:1").image == "from-flag:1"
    assert magics.sandbox_config(image=None).image == "from-trait:1"


def test_cpu_flag_keeps_the_request_the_trait_or_environment_set(
        clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SANDBOXKIT_MEMORY_REQUEST", "100Mi")
    magics = SandboxMagics(cpu="20m:1")
    resources = magics.sandbox_config(cpu="3", memory="1Gi").resources
    assert (resources.cpu_request, resources.cpu_limit) == ("20m", "3")
    assert (resources.memory_request, resources.memory_limit) == ("100Mi", "1Gi")


def test_env_flags_add_to_the_environment_setting(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SANDBOXKIT_ENV", "A=1,B=2")
    config = SandboxMagics().sandbox_config(env={"B": "3", "C": "x=y"})
    assert dict(config.env) == {"A": "1", "B": "3", "C": "x=y"}


@pytest.mark.parametrize(("value", "expected"), [
    ("2", ("250m", "2")),            # the default request stays under a larger limit
    ("100m", ("100m", "100m")),      # ... and is lowered to a smaller one
    ("500m:2", ("500m", "2")),
    ("1.5", ("250m", "1.5")),
])
def test_cpu_request_and_limit(value: str, expected: tuple[str, str]) -> None:
    changes = resource_overrides("cpu", value, SandboxConfig())
    assert (changes["cpu_request"], changes["cpu_limit"]) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("2Gb", "not a Kubernetes quantity"),
    ("1Gi:512Mi", "the request is above the limit"),
    ("x:1Gi", "not a Kubernetes quantity"),
    ("0", "must be positive"),
])
def test_bad_memory_values(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resource_overrides("memory", value, SandboxConfig())


def test_env_pairs() -> None:
    assert parse_env(["A=1", "B=", "C=x=y"]) == {"A": "1", "B": "", "C": "x=y"}
    for bad in ("A", "=1"):
        with pytest.raises(ConfigError, match="expected NAME=VALUE"):
            parse_env([bad])


@pytest.mark.parametrize(("line", "expected"), [
    ("echo hi", ("", "echo hi")),
    ("  ls -la /tmp ", ("", "ls -la /tmp")),
    ("web --check -- make test", ("web --check", "make test")),
    ("-- echo a -- b", ("", "echo a -- b")),
    ("--timeout 5 -- sleep 1", ("--timeout 5", "sleep 1")),
])
def test_line_command_split(line: str, expected: tuple[str, str]) -> None:
    assert split_line_command(line) == expected


def test_line_command_with_options_needs_the_separator() -> None:
    with pytest.raises(ConfigError, match="put -- between the options and the command"):
        split_line_command("--check make test")


def test_names_and_paths() -> None:
    assert variable_name("--out", "result") == "result"
    for bad in ("1x", "class", "a-b"):
        with pytest.raises(ConfigError, match="not a Python variable name"):
            variable_name("--out", bad)
    assert unquote("'/tmp/a b'") == "/tmp/a b"
    assert unquote('"/tmp/x"') == "/tmp/x"
    assert unquote("/tmp/'x'") == "/tmp/'x'"


@pytest.mark.parametrize(("magic", "line", "message"), [
    ("sandbox_up", "--cpu 2Gb", "not a Kubernetes quantity"),
    ("sandbox_up", "--nope", "unrecognized arguments"),
    ("sandbox_up", "UPPER", "DNS-1123"),
    ("sandbox_exec", "true", "no sandbox in this kernel"),
    ("sandbox_down", "gone", "no sandbox named 'gone'"),
    ("sandbox_down", "a --all", "not both"),
    ("sandbox_logs", "--tail x", "invalid int value"),
    ("sandbox_ls", '"x', "No closing quotation"),
    ("sandbox_up", "--image 'busybox", "No closing quotation"),
    ("sandbox_exec", "--timeout inf -- true", "positive number of seconds"),
    ("sandbox_exec", "--timeout nan -- true", "positive number of seconds"),
    ("sandbox_up", "--nope\x0bx", "unrecognized arguments: --nope x"),  # kept on one line
    ("sandbox_upload", "a -- --", "argument remote: expected one argument"),  # not []
    ("sandbox_logs", "a -s b", "two sandboxes named: 'a' and -s 'b'"),
    ("sandbox_upload", "web a b -s other", "two sandboxes named"),
])
def test_mistakes_raise_usage_errors(magic: str, line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        getattr(SandboxMagics(), magic)(line)


@pytest.mark.parametrize("line", ["--tail 3", "web --tail 3", "-s web --tail 3",
                                  "--sandbox web --tail 3", "web -s web --tail 3"])
def test_every_magic_names_its_sandbox_positionally_or_with_s(
        line: str, capsys: pytest.CaptureFixture[str]) -> None:
    magics = SandboxMagics()
    web, other = Unreachable(), Unreachable(SandboxConfig(name="other"))
    magics.registry.add(web)
    magics.registry.add(other)  # current: a line without a name would pick this one
    if line.startswith("--tail"):
        web, other = other, web
    magics.sandbox_logs(line)
    assert web.actions == ["logs 3"] and other.actions == []
    assert capsys.readouterr().out == f"log of {web.name}\n"


@pytest.mark.parametrize(("magic", "line", "positional"), [
    ("sandbox_upload", "-s web /tmp/a /b", ("/tmp/a", "/b")),
    ("sandbox_upload", "web /tmp/a /b", ("/tmp/a", "/b")),
    ("sandbox_download", "web /b /tmp/a", ("/b", "/tmp/a")),
    ("sandbox_download", "/b /tmp/a --sandbox web", ("/b", "/tmp/a")),
])
def test_file_magics_take_the_sandbox_name_either_way(
        magic: str, line: str, positional: tuple[str, str]) -> None:
    magics = SandboxMagics()
    web = Unreachable()
    magics.registry.add(web)
    magics.registry.add(Unreachable(SandboxConfig(name="other")))
    with pytest.raises(SandboxGone):
        getattr(magics, magic)(line)
    assert web.actions == [positional[0]]


@pytest.mark.parametrize(("trait", "value", "message"), [
    ("cpu", "2Gb", "SandboxMagics.cpu: .* not a Kubernetes quantity"),
    ("memory", "1:2:3", "SandboxMagics.memory"),
    ("namespace", "Not_A_Label", "SandboxMagics.namespace: .*DNS-1123"),
    ("backend", "podman", "SandboxMagics.backend: .*supported backends"),
    ("command_timeout", 0.0, "SandboxMagics.command_timeout: .*positive"),
    ("image", "a b", "SandboxMagics.image: .*image reference"),
])
def test_a_bad_setting_fails_when_set(trait: str, value: object, message: str) -> None:
    from traitlets import TraitError

    magics = SandboxMagics(image="kept:1")
    before = getattr(magics, trait)
    with pytest.raises(TraitError, match=message):
        setattr(magics, trait, value)
    assert getattr(magics, trait) == before  # the old value stays
    assert magics.sandbox_config().image == "kept:1"


def test_good_settings_are_taken_when_set() -> None:
    magics = SandboxMagics()
    magics.cpu, magics.backend, magics.command_timeout = "500m:2", "local", 5.0
    config = magics.sandbox_config()
    assert (config.resources.cpu_request, config.resources.cpu_limit) == ("500m", "2")
    assert (config.execution_backend, config.command_timeout) == ("local", 5.0)
    magics.cpu = None  # unsetting is always allowed
    assert magics.sandbox_config().resources.cpu_limit == SandboxConfig().resources.cpu_limit


def test_registry_current_is_the_last_added() -> None:
    registry = SandboxRegistry()
    with pytest.raises(UnknownSandbox, match="%sandbox_up"):
        registry.get()

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    first, second = Named("a"), Named("b")
    registry.add(first)  # type: ignore[arg-type]
    registry.add(second, keep=True)  # type: ignore[arg-type]
    assert registry.get() is second and registry.get("a") is first
    assert registry.kept() == [second]
    registry.add(first)  # type: ignore[arg-type]
    assert registry.get() is first
    with pytest.raises(UnknownSandbox, match=r"known: b, a"):
        registry.get("c")


class Unreachable(ArgvSandbox):
    """A sandbox each of whose actions fails as if its pod had vanished, once its arguments
    are encoded as UTF-8 the way every backend's requests (exec URL, tar stream) encode
    them: text that cannot be sent fails here as it would on the wire. It cannot start, so
    as create_sandbox's backend it makes sure no magic creates anything."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig(name="web")
        self.actions: list[str] = []

    @property
    def name(self) -> str:
        return self.config.name or "unnamed"

    def init(self, on_progress: ProgressCallback | None = None) -> NoReturn:
        raise BackendUnavailable("no backend can be reached in the unit tests")

    @classmethod
    def attach(cls, name: str, *, config: SandboxConfig | None = None,
               **overrides: Any) -> NoReturn:
        raise BackendUnavailable("no backend can be reached in the unit tests")

    @classmethod
    def list_sandboxes(cls, config: SandboxConfig | None = None) -> NoReturn:
        raise BackendUnavailable("no backend can be reached in the unit tests")

    def status(self) -> SandboxStatus:
        return SandboxStatus(self.name, "unit", job_phase="Missing")

    def _logs(self, tail: int | None) -> str:
        self.actions.append(f"logs {tail}")
        return f"log of {self.name}\n"

    def teardown(self, wait: bool = False) -> NoReturn:
        self._act("teardown")

    def exec_argv(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self._act(*argv)

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        self._act(os.fspath(local_path), remote_path)

    def download(self, remote_path: str, local_path: str | os.PathLike[str]) -> None:
        self._act(remote_path, os.fspath(local_path))

    def _act(self, *texts: str) -> NoReturn:
        for text in texts:
            text.encode("utf-8")
        self.actions.append(texts[0])
        raise SandboxGone(f"sandbox {self.name} is gone", reason="Deleted")


def run_magic(name: str, *texts: str) -> tuple[BaseException | None, Unreachable,
                                               list[Unreachable]]:
    """Run magic ``name`` with a current sandbox ``web`` (an :class:`Unreachable`) and
    Unreachable as the backend of new ones; return what it raised, ``web`` and the
    sandboxes it created."""
    magics = SandboxMagics()
    current = Unreachable()
    magics.registry.add(current)
    created: list[Unreachable] = []

    class Recorded(Unreachable):
        def __init__(self, config: SandboxConfig | None = None) -> None:
            super().__init__(config)
            created.append(self)

    with mock.patch("sandboxkit.factory.backend_class", lambda _name: Recorded):
        try:
            getattr(magics, name)(*texts)
        except Exception as exc:
            return exc, current, created
    return None, current, created


def test_a_lone_surrogate_stops_before_the_sandbox_hears_of_it(offline: Path) -> None:
    for texts in (("\ud800",), ("web -- echo \udcff",), ("--check", "echo \ud800"),):
        raised, sandbox, _ = run_magic("sandbox_exec", *texts)
        assert isinstance(raised, UsageError) and "cannot be encoded as UTF-8" in str(raised)
        assert sandbox.actions == []
    raised, sandbox, _ = run_magic("sandbox_write", "/tmp/x", "caf\udce9")
    assert isinstance(raised, UsageError) and "the cell is not valid text" in str(raised)
    raised, _, created = run_magic("sandbox_up", "--image busybox\udcff")
    assert isinstance(raised, UsageError) and created == []


def test_the_property_setup_reaches_the_sandbox_with_a_good_line(offline: Path) -> None:
    """The property below is only worth something if good lines get through: they do, to a
    documented error from the sandbox (or the backend that cannot start)."""
    raised, sandbox, _ = run_magic("sandbox_exec", "echo hi")
    assert isinstance(raised, SandboxGone) and sandbox.actions == ["/bin/sh"]
    raised, _, created = run_magic("sandbox_up", "other --image busybox:1.36")
    assert isinstance(raised, BackendUnavailable) and [s.name for s in created] == ["other"]


_MAGICS = [(kind, name) for kind, names in SandboxMagics().magics.items()
           for name in sorted(names)]
_WORDS = st.sampled_from([
    "--", "web", "other", "-n", "ci", "--image", "busybox", "--cpu", "--memory", "2Gi",
    "500m:2", "--env", "A=1", "=1", "--workdir", "/tmp", "--backend", "local", "--keep",
    "--keep-on-failure", "--all", "--timeout", "nan", "inf", "-1", "0", "5", "1e400",
    "--check", "--out", "--err", "x", "1x", "--quiet", "--tail", "-s", "--sandbox", "-A",
    "--service-account", '"', "'", '"a b"', "\\", "\ud800", "\x00", "\x0b",
])
_LINES = st.lists(st.one_of(_WORDS, ANY_TEXT), max_size=6).map(" ".join)


@FAST
@given(magic=st.sampled_from(_MAGICS), line=_LINES, cell=ANY_TEXT)
def test_any_line_and_cell_is_a_one_line_usage_error_or_a_documented_error(
        offline: Path, magic: tuple[str, str], line: str, cell: str) -> None:
    kind, name = magic
    raised, sandbox, created = run_magic(name, *((line,) if kind == "line" else (line, cell)))
    if isinstance(raised, UsageError):
        assert len(str(raised).splitlines()) == 1, str(raised)
        assert sandbox.actions == [] and created == []  # raised before anything was done
    elif raised is not None:
        assert isinstance(raised, SandboxError), repr(raised)
