"""``SandboxMagics``: the ``%sandbox_*`` magics, their defaults and the kernel's sandboxes.

Why errors are shaped here: a notebook user's mistake (a bad flag, an unknown sandbox, a
quantity like ``2Gb``) raises :class:`UsageError`, which IPython shows as one line; a
sandbox failure (an image that cannot be pulled, ``--check`` on a non-zero exit, a
timeout) keeps its typed exception, so ``nbmake`` fails the cell and code can catch it, but
is shown as its message rather than a traceback through this module (see :func:`_brief`).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Float, TraitError, Unicode, validate

from ..backends.base import Sandbox
from ..backends.kubernetes.client import Connection, connect
from ..backends.sync import Diff, SyncReport
from ..backends.wrapper import TextCallback
from ..config import SandboxConfig, validate_timeout
from ..errors import (
    CommandFailed,
    CommandTimeout,
    ConfigError,
    SandboxError,
    SandboxNotFound,
    one_line,
)
from ..factory import attach_sandbox, create_sandbox
from ..manifests import OWNER_ANNOTATION
from ..models import CommandResult
from .options import (
    parse_env,
    resource_overrides,
    split_line_command,
    unquote,
    variable_name,
)
from .registry import SandboxRegistry, UnknownSandbox

__all__ = ["RESULT_VARIABLE", "SandboxMagics"]

RESULT_VARIABLE = "_sandbox_result"
"""The user namespace variable holding the last ``%sandbox_exec`` CommandResult."""

_CPU_HELP = ("CPU limit (2, 500m); the request stays as configured (250m) unless that is "
             "above the limit, then it equals the limit. REQUEST:LIMIT sets both (250m:2).")
_MEMORY_HELP = ("memory limit (4Gi); the request stays as configured (512Mi) unless that is "
                "above the limit, then it equals the limit. REQUEST:LIMIT sets both "
                "(512Mi:4Gi).")
_NAME_HELP = "the sandbox (default: the current one, the last started or attached)"

_Magic = TypeVar("_Magic", bound=Callable[..., Any])
# Each setting trait of SandboxMagics and the SandboxConfig field it defaults (cpu and
# memory set a request and a limit each, see resource_overrides).
_SETTINGS = {"image": "image", "namespace": "namespace", "backend": "execution_backend",
             "cpu": "", "memory": "", "workdir": "workdir", "kubeconfig": "kubeconfig",
             "context": "context", "service_account": "service_account",
             "startup_timeout": "startup_timeout", "command_timeout": "command_timeout"}


def _brief(exc: BaseException, message: str | None = None) -> BaseException:
    """``exc``, displayed in a cell as its message and notes instead of a traceback.

    IPython renders an exception that has ``_render_traceback_`` through it (the hook
    ipyparallel uses for remote errors); the frames inside the magic tell a notebook user
    nothing, while the exception keeps its type for ``except`` clauses and nbmake.
    """
    lines = [f"{type(exc).__name__}: {message or exc}", *getattr(exc, "__notes__", [])]
    exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]
    return exc


def _sendable(where: str, text: str) -> None:
    """UsageError for text no sandbox can receive: every request carries it as UTF-8, which
    has no encoding for a lone surrogate (a bad paste, bytes decoded with surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"the {where} is not valid text: {text[exc.start]!r} at position "
                         f"{exc.start} cannot be encoded as UTF-8") from None


def _user_facing(magic: _Magic) -> _Magic:
    """Mistakes become UsageError (one line); sandbox failures keep their type, briefly.

    The line and the cell body are checked before the magic runs, so text that cannot be
    sent stops here, before anything is created. Every UsageError is flattened to one line:
    argparse quotes an unrecognized word as typed, vertical tabs and all.
    """

    @functools.wraps(magic)
    def wrapper(self: SandboxMagics, *texts: str) -> Any:
        for where, text in zip(("line", "cell"), texts, strict=False):
            _sendable(where, text)
        try:
            return magic(self, *texts)
        except (UsageError, ConfigError, UnknownSandbox, SandboxNotFound) as exc:
            raise UsageError(one_line(str(exc))) from None
        except SandboxError as exc:
            raise _brief(exc) from None

    return wrapper  # type: ignore[return-value]


def _arguments(magic: Callable[..., Any], line: str,
               after_name: str | None = None) -> argparse.Namespace:
    """``magic``'s arguments parsed from ``line``, the one place every magic parses them.

    IPython splits the line with shlex, whose ValueError for an unterminated quote or a
    trailing backslash is a mistake in the line like a bad flag, so a UsageError too. And
    Python 3.11's argparse gives a positional that a second ``--`` stood in for the value
    ``[]`` (``a -- --``) instead of a string; no option of ours ever parses to ``[]``.
    """
    try:
        args = parse_argstring(magic, line)
    except ValueError as exc:
        raise UsageError(f"cannot split the line into arguments: {exc} in {line!r}") from None
    missing = [name for name, value in vars(args).items() if value == []]
    if missing:
        raise UsageError(f"argument {missing[0]}: expected one argument")
    if after_name and args.sandbox is not None and getattr(args, after_name) is None:
        # ``%sandbox_diff -s web PATH``: with -s naming the sandbox, a lone positional is
        # the optional one after NAME (``after_name``), not a second sandbox name.
        setattr(args, after_name, args.name)
        args.name = None
    if "sandbox" in vars(args) and "name" in vars(args):  # see _sandbox_argument
        if args.name is not None and args.sandbox not in (None, args.name):
            raise UsageError(f"two sandboxes named: {args.name!r} and -s {args.sandbox!r}; "
                             "give one")
        args.sandbox = args.sandbox or args.name
    return args


def _sandbox_argument(text: str = _NAME_HELP) -> Callable[[_Magic], _Magic]:
    """The sandbox a magic acts on, named the same way in every magic: positionally
    (``%sandbox_logs web``) or with ``-s``/``--sandbox`` (``%sandbox_upload -s web a b``).
    :func:`_arguments` merges the two into ``args.sandbox``."""

    def decorate(magic: _Magic) -> _Magic:
        named = argument("-s", "--sandbox", metavar="NAME", help=text)(magic)
        positional: _Magic = argument("name", nargs="?", metavar="NAME", help=text)(named)
        return positional

    return decorate


def _local_to_remote(local_help: str, remote_help: str) -> Callable[[_Magic], _Magic]:
    """``[NAME] LOCAL REMOTE``, the arguments of the magics that send a local path into a
    sandbox (``%sandbox_upload``, ``%sandbox_sync``)."""

    def decorate(magic: _Magic) -> _Magic:
        paths = argument("local", help=local_help)(argument("remote", help=remote_help)(magic))
        return _sandbox_argument()(paths)

    return decorate


def _writer(stream: TextIO) -> TextCallback:
    """Output chunks to ``stream`` as they arrive (flushed, so the cell shows them now)."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return TextCallback(write)


@magics_class
class SandboxMagics(Magics):
    """Sandboxes from a notebook: ``%load_ext sandboxkit``, then ``%sandbox_up``.

    The traits below are the defaults of ``%sandbox_up`` (``%config SandboxMagics.image =
    "python:3.11"``); one left unset (None) leaves the ``SANDBOXKIT_*`` environment and the
    :class:`SandboxConfig` defaults in charge. ``Magics`` is a traitlets Configurable, and
    the instance sits in ``shell.configurables``, which is what ``%config`` searches.
    """

    image = Unicode(None, allow_none=True, help="Container image of new sandboxes.").tag(
        config=True)
    namespace = Unicode(None, allow_none=True,
                        help="Namespace (default: the kubeconfig context's).").tag(config=True)
    backend = Unicode(None, allow_none=True,
                      help="Execution backend: kubernetes, docker or local.").tag(config=True)
    cpu = Unicode(None, allow_none=True, help=_CPU_HELP).tag(config=True)
    memory = Unicode(None, allow_none=True, help=_MEMORY_HELP).tag(config=True)
    workdir = Unicode(None, allow_none=True,
                      help="Working directory of commands in new sandboxes.").tag(config=True)
    kubeconfig = Unicode(None, allow_none=True,
                         help="Kubeconfig file (default: as kubectl finds it).").tag(config=True)
    context = Unicode(None, allow_none=True, help="Kubeconfig context.").tag(config=True)
    service_account = Unicode(None, allow_none=True,
                              help="ServiceAccount sandbox pods run as.").tag(config=True)
    startup_timeout = Float(None, allow_none=True,
                            help="Seconds %sandbox_up waits for Running.").tag(config=True)
    command_timeout = Float(None, allow_none=True,
                            help="Default seconds a command may run.").tag(config=True)

    @validate(*_SETTINGS)
    def _check_setting(self, proposal: Any) -> Any:
        """Refuse a bad default when it is set (``%config SandboxMagics.cpu = "2Gb"``), with
        the message a flag would get, rather than at the next ``%sandbox_up``."""
        name, value = proposal["trait"].name, proposal["value"]
        if value is None:
            return value
        try:
            if name in ("cpu", "memory"):
                resource_overrides(name, value, SandboxConfig.resolve())
            else:
                SandboxConfig.resolve(**{_SETTINGS[name]: value})
        except ConfigError as exc:
            raise TraitError(f"SandboxMagics.{name}: {one_line(str(exc))}") from None
        return value

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.registry = SandboxRegistry()
        self._panels: list[Any] = []  # closed at shutdown: each holds a watch subscription

    # --- settings -------------------------------------------------------------------------

    def sandbox_config(self, *, cpu: str | None = None, memory: str | None = None,
                       env: dict[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        """Defaults < environment < traits < ``overrides`` (None means not given)."""
        settings = {field: getattr(self, trait) for trait, field in _SETTINGS.items()
                    if field and getattr(self, trait) is not None}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        config = SandboxConfig.resolve(**settings)
        # The trait first, then the argument: `--cpu 2` keeps a request the trait set.
        for resource, value in (("cpu", self.cpu), ("cpu", cpu), ("memory", self.memory),
                                ("memory", memory)):
            changes = resource_overrides(resource, value, config)
            if changes:
                config = SandboxConfig.resolve(config, **changes)
        if env:
            config = SandboxConfig.resolve(config, env={**config.env, **env})
        return config

    @contextlib.contextmanager
    def _cluster(self) -> Iterator[tuple[Connection, str | None]]:
        """A connection per the traits (kubectl's rules otherwise) and the configured
        namespace (None: the connection's), closed afterwards."""
        config = self.sandbox_config()
        conn = connect(config.kubeconfig, config.context)
        try:
            yield conn, config.namespace
        finally:
            conn.close()

    # --- lifecycle ------------------------------------------------------------------------

    @line_magic
    @_user_facing
    @magic_arguments()
    @argument("name", nargs="?", help="sandbox name, a DNS-1123 label (default: generated)")
    @argument("--image", help="container image")
    @argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    @argument("--cpu", help=_CPU_HELP)
    @argument("--memory", help=_MEMORY_HELP)
    @argument("--env", action="append", metavar="K=V", help="environment variable (repeat)")
    @argument("--workdir", help="working directory of commands")
    @argument("--backend", help="kubernetes, docker or local")
    @argument("--keep-on-failure", action="store_true",
              help="keep a sandbox that fails to start, to debug it")
    @argument("--keep", action="store_true",
              help="keep the sandbox running when this kernel exits")
    @argument("--pool", metavar="POOL",
              help="claim an idle sandbox of this warm pool (sandboxkit pool start); a new "
                   "one starts when none is idle. NAME then names it in this kernel only: "
                   "its Job keeps the name the pool gave it")
    def sandbox_up(self, line: str) -> None:
        """Create a sandbox, show its startup as it happens, then its live status.

        It becomes the current sandbox; several named ones can run side by side. Unless
        --keep is given it is deleted when the kernel exits.
        """
        args = _arguments(self.sandbox_up, line)
        if args.name is not None and args.name in self.registry:
            raise UsageError(f"a sandbox named {args.name!r} already runs in this kernel: use "
                             f"it, or %sandbox_down {args.name} first")
        # From a pool, NAME is this kernel's handle (what the cells that follow type), not
        # the Job's name: a claimed Job cannot be renamed, and a cold start is named alike
        # so that NAME means the same whichever way the sandbox came.
        config = self.sandbox_config(
            cpu=args.cpu, memory=args.memory, env=parse_env(args.env),
            name=None if args.pool else args.name, pool=args.pool,
            image=args.image, namespace=args.namespace, workdir=args.workdir,
            execution_backend=args.backend, keep_on_failure=args.keep_on_failure or None)
        sandbox = create_sandbox(config)
        started = time.monotonic()

        def progress(stage: str, detail: str) -> None:
            print(f"{stage:<10} {detail}  ({time.monotonic() - started:.1f}s)", flush=True)

        try:
            sandbox.init(on_progress=progress)
        except KeyboardInterrupt as exc:
            raise _brief(exc, f"interrupted: sandbox {sandbox.name} was not started") from None
        self._track(sandbox, keep=args.keep, name=args.name)
        if args.name is not None and args.name != sandbox.name:
            print(f"{args.name} is sandbox {sandbox.name} (%sandbox_attach {sandbox.name} "
                  "takes it over after a kernel restart)")
        if args.keep:
            print(f"kept: {sandbox.name} stays running after this kernel exits "
                  f"(%sandbox_down {args.name or sandbox.name} deletes it)")
        display(self._panel(sandbox))

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("--all", action="store_true", help="every sandbox of this kernel")
    def sandbox_down(self, line: str) -> None:
        """Delete a sandbox (or --all of this kernel's) and wait until it is gone."""
        args = _arguments(self.sandbox_down, line)
        if args.all and args.sandbox:
            raise UsageError("give a NAME or --all, not both")
        names = self.registry.names() if args.all else [self.registry.key(args.sandbox)]
        failures: list[str] = []
        gone = self.registry.tear_down(
            names, wait=True, on_error=lambda name, exc: failures.append(f"{name}: {exc}"))
        if gone:
            print(f"deleted {', '.join(gone)}")
        elif not names:
            print("no sandboxes in this kernel")
        if failures:
            raise SandboxError("could not delete " + "; ".join(failures))

    @line_magic
    @_user_facing
    @magic_arguments()
    @argument("name", help="the sandbox's name (its Job's or container's)")
    @argument("-n", "--namespace", help="namespace (default: the configured one)")
    @argument("--backend", help="kubernetes, docker or local (default: the configured one)")
    def sandbox_attach(self, line: str) -> None:
        """Take over a sandbox started elsewhere (say, before a kernel restart).

        It becomes the current sandbox; this kernel's exit leaves it running.
        """
        args = _arguments(self.sandbox_attach, line)
        config = self.sandbox_config(namespace=args.namespace, execution_backend=args.backend)
        sandbox = attach_sandbox(args.name, config)
        self._track(sandbox, keep=True)
        print(f"attached {sandbox.name}; it stays running when this kernel exits "
              f"(%sandbox_down {sandbox.name} deletes it)")
        display(self._panel(sandbox))

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    def sandbox_shell(self, line: str) -> None:
        """Print the command that opens an interactive shell in the sandbox, to paste into a
        JupyterLab terminal (a notebook cell cannot be a terminal), and kubectl's equivalent."""
        from ..backends.terminal import shell_commands
        from ..manifests import CONTAINER_NAME

        args = _arguments(self.sandbox_shell, line)
        sandbox = self.registry.get(args.sandbox)
        config = sandbox.config
        kubeconfig = config.kubeconfig or os.environ.get("KUBECONFIG")
        lines = shell_commands(
            sandbox.name, backend=config.execution_backend,
            namespace=getattr(sandbox, "namespace", None), pod=getattr(sandbox, "pod_name", None),
            kubeconfig=None if kubeconfig is None else os.fspath(kubeconfig),
            context=config.context, container=CONTAINER_NAME)
        print("In a terminal (File > New > Terminal):")
        for each in lines:
            print(f"  {each}")

    # --- commands -------------------------------------------------------------------------

    @line_cell_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("--timeout", type=float, metavar="S", help="kill the command after S seconds")
    @argument("--check", action="store_true",
              help="raise CommandFailed on a non-zero exit, failing the cell")
    @argument("--env", action="append", metavar="K=V", help="environment variable (repeat)")
    @argument("--workdir", metavar="DIR", help="run in DIR")
    @argument("--out", metavar="VAR", help="store stdout (text) in VAR")
    @argument("--err", metavar="VAR", help="store stderr (text) in VAR")
    @argument("--quiet", action="store_true", help="do not show the output")
    def sandbox_exec(self, line: str, cell: str | None = None) -> CommandResult | None:
        """Run the cell as a /bin/sh script in the sandbox, output streamed as it comes.

        stdout goes to the cell's stdout, stderr to its stderr; stdin is closed. A non-zero
        exit code is printed (with --check it raises). The result is in _sandbox_result.
        Interrupting the kernel kills the command. Line form: %sandbox_exec CMD, or
        %sandbox_exec [NAME] [options] -- CMD.
        """
        if cell is None:
            options, command = split_line_command(line)
            if not command:
                raise UsageError("no command given: %sandbox_exec [NAME] [options] -- CMD")
        else:
            options, command = line, cell
        args = _arguments(self.sandbox_exec, options)
        if args.timeout is not None:
            validate_timeout("--timeout", args.timeout, "--timeout 30")
        out, err = variable_name("--out", args.out), variable_name("--err", args.err)
        env = parse_env(args.env)
        sandbox = self.registry.get(args.sandbox)
        try:
            result = sandbox.stream(
                command, timeout=args.timeout, env=env or None, workdir=args.workdir,
                on_stdout=None if args.quiet else _writer(sys.stdout),
                on_stderr=None if args.quiet else _writer(sys.stderr))
        except CommandTimeout as exc:
            self._keep_result(exc.result, out, err)
            raise
        except KeyboardInterrupt as exc:
            raise _brief(exc, f"interrupted: the command in sandbox {sandbox.name} was "
                              "stopped (its process group was killed)") from None
        self._keep_result(result, out, err)
        if result.exit_code != 0:
            if args.check:
                raise CommandFailed(result)
            if not args.quiet:
                print(f"exit code {result.exit_code}", file=sys.stderr, flush=True)
        return result if cell is None else None

    def _keep_result(self, result: CommandResult, out: str | None, err: str | None) -> None:
        user_ns = self.shell.user_ns
        user_ns[RESULT_VARIABLE] = result
        if out:
            user_ns[out] = result.stdout
        if err:
            user_ns[err] = result.stderr

    # --- files ----------------------------------------------------------------------------

    @line_magic
    @_user_facing
    @magic_arguments()
    @_local_to_remote("local file or directory",
                      "path it becomes in the sandbox (ending in /: a directory)")
    def sandbox_upload(self, line: str) -> None:
        """Copy a local file or directory tree into the sandbox."""
        args = _arguments(self.sandbox_upload, line)
        local, remote = unquote(args.local), unquote(args.remote)
        sandbox = self.registry.get(args.sandbox)
        try:
            sandbox.upload(local, remote)
        except FileNotFoundError:
            raise UsageError(f"no such local file or directory: {local}") from None
        print(f"uploaded {local} to {sandbox.name}:{remote}")

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("remote", help="file or directory in the sandbox")
    @argument("local", help="local path it becomes (ending in /: a directory)")
    def sandbox_download(self, line: str) -> None:
        """Copy a file or directory tree out of the sandbox."""
        args = _arguments(self.sandbox_download, line)
        remote, local = unquote(args.remote), unquote(args.local)
        sandbox = self.registry.get(args.sandbox)
        try:
            sandbox.download(remote, local)
        except FileNotFoundError:
            raise UsageError(f"no such file or directory in sandbox {sandbox.name}: "
                             f"{remote}") from None
        print(f"downloaded {sandbox.name}:{remote} to {local}")

    @line_magic
    @_user_facing
    @magic_arguments()
    @_local_to_remote("local directory", "directory in the sandbox it is mirrored to")
    @argument("--delete", action="store_true", help="remove remote files deleted locally")
    @argument("--exclude", action="append", metavar="PAT",
              help=".gitignore-style pattern not to sync (repeat)")
    def sandbox_sync(self, line: str) -> SyncReport:
        """Send only the files of a local tree that changed (manifest computed in the
        sandbox), in one upload; return what changed (IPython shows it as one line)."""
        args = _arguments(self.sandbox_sync, line)
        local, remote = unquote(args.local), unquote(args.remote)
        sandbox = self.registry.get(args.sandbox)
        try:
            report = sandbox.sync(local, remote, delete=args.delete,
                                  exclude=[unquote(p) for p in args.exclude or ()])
        except FileNotFoundError:
            raise UsageError(f"no such local directory: {local}") from None
        return report

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("path", nargs="?", help="tree in the sandbox (default: /workspace)")
    @argument("--stat", action="store_true", help="print the summary only")
    def sandbox_diff(self, line: str) -> Diff | None:
        """The tree's changes (git diff HEAD and untracked files in a checkout, else since
        the last sync), shown coloured; ``--stat`` prints the summary only."""
        args = _arguments(self.sandbox_diff, line, after_name="path")
        path = args.path
        if path is None and args.name is not None and args.name not in self.registry:
            path, args.sandbox = args.name, None  # one word, no sandbox of that name: a path
        sandbox = self.registry.get(args.sandbox)
        found = sandbox.diff(unquote(path or "/workspace"))
        if args.stat:
            print(found.summary)
            return None
        return found

    @cell_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("path", help="file to write in the sandbox (parents are created)")
    def sandbox_write(self, line: str, cell: str) -> None:
        """Write the cell body to a file in the sandbox (mode 0644), as %%writefile does."""
        args = _arguments(self.sandbox_write, line)
        path = unquote(args.path)
        if path.endswith("/"):
            raise UsageError(f"{path} names a directory: give the file's path")
        sandbox = self.registry.get(args.sandbox)
        with tempfile.TemporaryDirectory(prefix="sandboxkit-write-") as directory:
            local = Path(directory, "cell")
            local.write_text(cell, encoding="utf-8")
            os.chmod(local, 0o644)
            sandbox.upload(local, path)
        print(f"wrote {len(cell.encode())} bytes to {sandbox.name}:{path}")

    # --- looking -------------------------------------------------------------------------

    @line_magic
    @_user_facing
    @magic_arguments()
    @argument("-n", "--namespace", help="namespace (default: the configured one)")
    @argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    @argument("--backend", help="kubernetes, docker or local (default: the configured one)")
    def sandbox_ls(self, line: str) -> Any:
        """The sandboxes as a pandas DataFrame, one row each: the namespace's sandbox Jobs,
        or a docker or local backend's own sandboxes."""
        from ..backends import backend_class
        from ..inventory import list_sandboxes, status_frame

        args = _arguments(self.sandbox_ls, line)
        config = self.sandbox_config(execution_backend=args.backend)
        if config.execution_backend != "kubernetes":
            if args.namespace or args.all_namespaces:
                raise UsageError(f"-n and -A name Kubernetes namespaces; the "
                                 f"{config.execution_backend} backend has none")
            statuses = backend_class(config.execution_backend).list_sandboxes(config)
            return status_frame((status, status.labels.get(OWNER_ANNOTATION, ""))
                                for status in statuses)
        with self._cluster() as (conn, namespace):
            return list_sandboxes(args.namespace or namespace,
                                  all_namespaces=args.all_namespaces, connection=conn)

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    def sandbox_status(self, line: str) -> Any:
        """The sandbox's live status panel (phase, container state, node, events)."""
        args = _arguments(self.sandbox_status, line)
        return self._panel(self.registry.get(args.sandbox))

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument()
    @argument("--tail", type=int, metavar="N", help="only the last N lines")
    def sandbox_logs(self, line: str) -> None:
        """What the sandbox's main process wrote (kubectl logs, docker logs)."""
        args = _arguments(self.sandbox_logs, line)
        if args.tail is not None and args.tail < 0:
            raise UsageError(f"--tail must be 0 or more, not {args.tail}")
        print(self.registry.get(args.sandbox).logs(tail=args.tail), end="")

    @line_magic
    @_user_facing
    @magic_arguments()
    @_sandbox_argument("a sandbox of this kernel or any sandbox Job's name (default: current)")
    @argument("-n", "--namespace", help="namespace of a NAME not in this kernel")
    def sandbox_diagnose(self, line: str) -> Any:
        """What is wrong with the sandbox and how to fix it (sandboxkit.diagnose)."""
        from ..diagnostics import diagnose

        args = _arguments(self.sandbox_diagnose, line)
        if args.sandbox is None or args.sandbox in self.registry:
            return diagnose(self.registry.get(args.sandbox))
        with self._cluster() as (conn, namespace):
            return diagnose(args.sandbox, args.namespace or namespace, connection=conn)

    @line_magic
    @_user_facing
    @magic_arguments()
    @argument("--service-account", metavar="SA",
              help="check what this ServiceAccount may do (default: you)")
    @argument("-n", "--namespace", help="namespace (default: the configured one)")
    def sandbox_rbac(self, line: str) -> Any:
        """Check the RBAC sandboxes need (sandboxkit.rbac.verify): a DataFrame, the verdict
        and, when rules are missing, the Role rules to add as YAML."""
        from ..rbac import verify

        args = _arguments(self.sandbox_rbac, line)
        with self._cluster() as (conn, namespace):
            frame = verify(args.namespace or namespace, args.service_account, connection=conn)
        print(frame.attrs["verdict"])
        if frame.attrs.get("missing_yaml"):
            print(f"Missing Role rules:\n{frame.attrs['missing_yaml']}")
        return frame

    def _track(self, sandbox: Sandbox, *, keep: bool, name: str | None = None) -> None:
        """Make ``sandbox`` current (as ``name``, default its own), and move
        :meth:`shutdown` to the end of the atexit handlers, which run last registered
        first: the kubernetes client registers one when it first connects that deletes the
        CA files it wrote from kubeconfig data, and deleting the sandboxes at exit needs
        them."""
        self.registry.add(sandbox, keep=keep, name=name)
        atexit.unregister(self.shutdown)
        atexit.register(self.shutdown)

    def _panel(self, sandbox: Sandbox) -> Any:
        from ..sources import sandbox_source
        from ..widgets import StatusPanel

        panel = StatusPanel(sandbox_source(sandbox))
        self._panels.append(panel)
        return panel

    # --- kernel exit ---------------------------------------------------------------------

    def shutdown(self) -> None:
        """Delete this kernel's sandboxes except the kept ones, and say what stays.

        Runs at interpreter exit (atexit) and on ``%unload_ext sandboxkit``; the status
        panels shown stop following their watches.
        """
        panels, self._panels = self._panels, []
        for panel in panels:
            panel.close()
        gone = self.registry.tear_down_unkept(on_error=lambda name, exc: print(
            f"sandboxkit: could not delete sandbox {name}: {exc}", file=sys.stderr))
        if gone:
            print(f"sandboxkit: deleted {', '.join(gone)}")
        for sandbox in self.registry.kept():
            print(f"sandboxkit: {sandbox.name} is still running (kept); "
                  f"%sandbox_attach {sandbox.name} takes it over, "
                  f"%sandbox_down {sandbox.name} deletes it")
