"""The devcluster's container runtime: pod containers as confined local processes.

With bubblewrap (the ``bwrap`` mode, chosen by ``auto`` when it works) every container is an
unprivileged process, whoever runs the devcluster:

- its own user namespace, where the pod's uid (``runAsUser``, default 0) and gid map to one
  unprivileged host id: :data:`POD_HOST_ID` when the devcluster runs as root, else the
  invoking user. Host files keep their owners, so root-only files stay closed to "root" in
  a pod, and no host process can be signalled or traced;
- no capabilities in any set (``--cap-drop ALL``), ``no_new_privs``, and the seccomp filter
  of :mod:`.seccomp` (no file handles, mounts, new user namespaces, keyrings, bpf, ptrace);
- its own mount, PID, IPC, UTS and cgroup namespaces. The filesystem is an empty read-only
  root holding only an allow-list of host directories (:data:`HOST_VIEW`: ``/usr``, ``/bin``,
  ``/lib*``, ``/etc``), read-only, with every ``/etc`` entry that is not world-readable and
  the devcluster's own directory masked; a private writable ``/tmp``, ``/var/tmp``, home
  (``/root``) and working directory backed by a per-container directory under
  ``root_dir``; fresh ``/proc`` and ``/dev``; the pod's name as hostname. Homes, ``/root``,
  ``/var``, ``/run`` (with its sockets), ``/opt`` and the rest of the host are simply absent.

The command is PID 1 of its namespace, as under containerd/runc (no init process): it only
receives SIGTERM if it handles it, ``kill -9 -1`` inside reaches nothing outside, and when
it exits the kernel kills everything left in the namespace.

What a pod still shares with the host is the network: it can connect to every port on
this machine, the devcluster's API included (with no credentials, it is an anonymous
client there, and RBAC refuses it). That, and whatever kernel bug the filter does not
close, is why the devcluster is not a security boundary for hostile code on a shared host.

Without bubblewrap, user namespaces or libseccomp, containers are plain processes in
their own session (``none``), with all of the devcluster's privileges, and
:meth:`ContainerRuntime.describe` says so in words; ``bwrap`` makes that a start-up error.

Volumes are bind mounts of host directories (``readOnly`` as a read-only bind) laid over
that view. bubblewrap opens them by path as the pods' unprivileged id, so they live where
that id can reach them (see :func:`_make_reachable`) and are given to it resolved.

Execs join the container's namespaces with ``nsenter`` under the same filter (loaded by
:mod:`.nsexec` first) and, for uid 0, with every capability dropped by ``setpriv``; they
get the container's environment and working directory.

Container output is written the way containerd's CRI plugin writes it, one record per
line: ``<RFC3339Nano> stdout|stderr F|P <text>``, ``P`` marking a line split because it
exceeded 16 KiB or cut short at end of stream. Each start of a container gets a new file,
so the previous run's log stays readable (``kubectl logs --previous``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import pty
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .seccomp import SeccompUnavailable, write_filter

__all__ = [
    "ISOLATION_MODES",
    "MAX_LOG_LINE",
    "Container",
    "ContainerRuntime",
    "ContainerStartError",
    "ExecProcess",
    "Mount",
    "rfc3339nano",
]

ISOLATION_MODES = ("auto", "bwrap", "none")
MAX_LOG_LINE = 16 * 1024  # containerd's default max_container_log_line_size
_EXEC_LIMIT = 2**16  # asyncio's default StreamReader buffer, for exec output
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOME = "/root"
DEFAULT_WORKDIR = "/workspace"
# The host uid and gid pods run as when the devcluster runs as root: unprivileged, owner of
# nothing on the host, and outside the ranges useradd, subuid and systemd hand out.
POD_HOST_ID = 1_879_048_000
# Top-level host entries a pod sees (read-only); everything else is absent from its root.
HOST_VIEW = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc")
# Where the secrets a pod must not read live: entries here that are not world-readable
# are masked even for a devcluster run by their owner.
_SCANNED_FOR_SECRETS = "/etc"

# /dev as bubblewrap's --dev lays it out, minus devpts: --dev needs uid 0 in the sandbox,
# so for any other uid bubblewrap nests a second user namespace, which an exec run by a
# non-root devcluster could not join together with the pod's mount namespace.
_DEV = [
    "--tmpfs", "/dev",
    *(arg for d in ("null", "zero", "full", "random", "urandom", "tty")
      for arg in ("--dev-bind", f"/dev/{d}", f"/dev/{d}")),
    *(arg for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
      for arg in ("--symlink", target, f"/dev/{name}")),
    "--perms", "1777", "--dir", "/dev/shm",
]

_BWRAP = os.path.realpath(shutil.which("bwrap") or "/usr/bin/bwrap")
_NSEXEC = str(Path(__file__).with_name("nsexec.py"))


class ContainerStartError(Exception):
    """The runtime could not start the command; ``str()`` is runc's wording."""


@dataclass(frozen=True)
class Mount:
    """A volume: host directory ``source`` at ``target`` in the container."""

    source: Path
    target: str
    read_only: bool = False


def rfc3339nano(ns: int | None = None) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: nanoseconds with trailing zeros trimmed."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclass
class _Layout:
    """Where a container's private directories live on the host and in the container."""

    run_dir: Path
    tmp: Path
    var_tmp: Path
    home: Path
    work: Path | None  # host dir bound at ``cwd``, None when cwd is a host dir it sees
    cwd: str
    namespaced: bool = True
    volumes: tuple[Mount, ...] = ()
    masked: frozenset[str] = frozenset()

    def mounts(self) -> list[tuple[str, Path]]:
        """(container path, host directory) of every private directory and volume."""
        mounts = [("/tmp", self.tmp), ("/var/tmp", self.var_tmp), (HOME, self.home)]
        if self.work is not None:
            mounts.append((self.cwd, self.work))
        return mounts + [(v.target, v.source) for v in self.volumes]

    def host_path(self, path: str) -> Path | None:
        """The host file a container path refers to, None where the container sees nothing
        (for PATH lookups before exec, with runc's wording when they fail)."""
        if not self.namespaced:
            return Path(path)
        for target, source in sorted(self.mounts(), key=lambda m: -len(m[0])):
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return source / os.path.relpath(path, target)
        parts = Path(path).parts
        if len(parts) < 2 or parts[1] not in HOST_VIEW:
            return None
        if any(str(Path(*parts[:i])) in self.masked for i in range(2, len(parts) + 1)):
            return None
        return Path(path)


@dataclass
class Container:
    """A started container: its main process, its log and how to stop it."""

    pod_uid: str
    name: str
    pid: int
    log_path: Path
    env: dict[str, str]
    layout: _Layout
    isolation: str
    _process: asyncio.subprocess.Process
    user: tuple[int, int] | None = None  # (uid, gid) inside its user namespace
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)
    _reaper: asyncio.Task[None] | None = None
    _killed: bool = False
    _exit_code: int | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    async def _reap(self) -> None:
        """Started with the container: collects the exit status whoever is waiting."""
        returncode = await self._process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self.isolation == "none":
            # a namespace would take the stragglers down with PID 1; a session must be told
            _kill_group(self._process.pid, signal.SIGKILL)
        self._exit_code = 128 - returncode if returncode < 0 else returncode
        self._done.set()

    async def wait(self) -> int:
        """The exit code, ``128 + signal`` when the command was killed (as runtimes report)."""
        await self._done.wait()
        assert self._exit_code is not None
        return self._exit_code

    def signal(self, sig: int) -> None:
        """Signal the main process (PID 1 in its namespace: unhandled signals are ignored)."""
        if self.running:
            self._killed = self._killed or sig == signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def stop(self, grace_seconds: float) -> int:
        """SIGTERM, then SIGKILL after ``grace_seconds``; everything in the container dies."""
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._done.wait(), max(grace_seconds, 0))
            except TimeoutError:
                self.signal(signal.SIGKILL)
                if self.isolation == "none":
                    _kill_group(self._process.pid, signal.SIGKILL)
        return await self.wait()


@dataclass(eq=False)
class ExecProcess:
    """An exec'd command: its process, and streams on the pipes (or terminal) the runtime
    made for it, owned by the pod's host id so the command may reopen them as
    ``/dev/stdout`` or ``/proc/self/fd/2`` as it could in a container."""

    process: asyncio.subprocess.Process
    stdin: asyncio.StreamWriter
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None  # None with a terminal, which merges the two

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        return await self.process.wait()

    def resize(self, width: int, height: int) -> None:
        """Set the terminal's size, as the kubelet does for a resize frame: the kernel then
        sends SIGWINCH to the terminal's foreground process group. No-op without a
        terminal (pipes have no size)."""
        if self.stderr is not None:
            return
        pipe = self.stdin.transport.get_extra_info("pipe")
        if pipe is None:
            return
        size = struct.pack("HHHH", max(0, min(height, 0xFFFF)), max(0, min(width, 0xFFFF)), 0, 0)
        with contextlib.suppress(OSError):
            fcntl.ioctl(pipe.fileno(), termios.TIOCSWINSZ, size)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes | None]:
        """As asyncio's: write ``input``, close stdin, read the output to EOF, wait."""

        async def feed() -> None:
            with contextlib.suppress(ConnectionError):
                if input:
                    self.stdin.write(input)
                    await self.stdin.drain()
                self.stdin.close()

        async def drain(stream: asyncio.StreamReader | None) -> bytes | None:
            return None if stream is None else await stream.read()

        _, out, err = await asyncio.gather(feed(), drain(self.stdout), drain(self.stderr))
        await self.wait()
        assert out is not None
        return out, err


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _pump(reader: asyncio.StreamReader, stream: str, log: Path) -> None:
    """Copy one output stream into the CRI log, a record per line (P for split lines)."""
    with log.open("ab", buffering=0) as out:
        while True:
            try:
                line = await reader.readuntil(b"\n")
                tag, text = b"F", line[:-1]
            except asyncio.LimitOverrunError as exc:
                text = await reader.readexactly(min(exc.consumed, MAX_LOG_LINE))
                tag = b"P"
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return
                tag, text = b"P", exc.partial
            out.write(f"{rfc3339nano()} {stream} ".encode() + tag + b" " + text + b"\n")


def _lookup(argv0: str, env: Mapping[str, str], layout: _Layout) -> str | None:
    """runc's complaint about an unrunnable command, or None if it can be executed."""

    def runnable(path: str) -> bool:
        host = layout.host_path(path)
        return host is not None and host.is_file() and os.access(host, os.X_OK)

    if "/" in argv0:
        path = argv0 if argv0.startswith("/") else os.path.join(layout.cwd, argv0)
        host = layout.host_path(os.path.normpath(path))
        if host is None or not host.exists():
            return f'exec: "{argv0}": stat {argv0}: no such file or directory'
        if host.is_dir() or not os.access(host, os.X_OK):
            return f'exec: "{argv0}": permission denied'
        return None
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        if directory and runnable(os.path.join(directory, argv0)):
            return None
    return f'exec: "{argv0}": executable file not found in $PATH'


def _searchable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def _make_reachable(root_dir: Path) -> Path | None:
    """Make ``root_dir`` a path the pods' unprivileged host id can traverse (bubblewrap
    resolves bind sources by path, with that id's permissions).

    Where an ancestor is closed to others (``/root``, pytest's ``/tmp/pytest-of-root``),
    ``root_dir`` becomes a symlink to a fresh directory, mode 0711, in the first temporary
    directory (``$TMPDIR``, ``/tmp``, ``/var/tmp``) that others can traverse; that directory
    is returned, for removal when the runtime stops. Else None.
    """
    parent = root_dir.parent.resolve()
    if _searchable_by_others(parent):
        return None
    temporary = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")]
    reachable = next((t for t in temporary if t.is_dir() and _searchable_by_others(t)), None)
    if reachable is None:
        raise RuntimeError("no temporary directory that unprivileged pods can reach "
                           "(TMPDIR, /tmp, /var/tmp all closed to others)")
    staging = Path(tempfile.mkdtemp(prefix="sandboxkit-node-", dir=reachable))
    staging.chmod(0o711)
    parent.mkdir(parents=True, exist_ok=True)
    if root_dir.is_symlink() or root_dir.is_file():
        root_dir.unlink()
    elif root_dir.is_dir():
        shutil.rmtree(root_dir)  # a previous run's pods and claims: its API state is gone
    root_dir.symlink_to(staging, target_is_directory=True)
    return staging


def _remove_staging(staging: Path | None, link: Path) -> None:
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            link.unlink()


def _secrets_under(top: str) -> frozenset[str]:
    """Entries below ``top`` that are not world-readable (``/etc/shadow``, ``/etc/ssl/private``,
    host keys, sudoers): masked in pods, since a pod may run as their owner's uid."""
    masked: set[str] = set()
    for directory, subdirs, files in os.walk(top, onerror=lambda _: None):
        for name in list(subdirs):
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                mode = os.lstat(path).st_mode
                if stat.S_ISDIR(mode) and (mode & 0o005) != 0o005:
                    masked.add(path)
                    subdirs.remove(name)
        for name in files:
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode) and not mode & 0o004:
                    masked.add(path)
    return frozenset(masked)


class ContainerRuntime:
    """Starts, stops and execs into pod containers; one per devcluster."""

    def __init__(self, root_dir: Path, isolation: str = "auto", *,
                 hidden: Sequence[Path] = ()) -> None:
        """``hidden``: host paths no pod may see even if they lie in :data:`HOST_VIEW` (the
        devcluster's own directory, a kubeconfig)."""
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_MODES)}")
        self.root_dir = Path(root_dir)
        # as root, pods run as an unprivileged host id; otherwise as the invoking user
        self.host_id = (POD_HOST_ID, POD_HOST_ID) if os.geteuid() == 0 else None
        staging = _make_reachable(self.root_dir) if self.host_id is not None else None
        # removed by shutdown(), or when the runtime is collected or the process exits
        self._remove_staging = weakref.finalize(self, _remove_staging, staging, self.root_dir)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self._filter = self.root_dir / "seccomp.bpf"
        self._masked = (frozenset(str(Path(p).resolve()) for p in hidden)
                        | _secrets_under(_SCANNED_FOR_SECRETS))
        self._why = ""
        self.isolation = "bwrap"  # the probe in _choose lays out a container as it would run
        self.isolation = self._choose(isolation)
        if self.isolation == "none":
            self.host_id = None
        self._containers: dict[tuple[str, str], Container] = {}
        self._runs: dict[tuple[str, str], int] = {}
        self._execs: set[ExecProcess] = set()

    def _choose(self, wanted: str) -> str:
        if wanted == "none":
            self._why = "isolation disabled by SANDBOXKIT_DEVCLUSTER_ISOLATION=none"
            return "none"
        problem = self._confinement_problem()
        if problem is None:
            return "bwrap"
        if wanted == "bwrap":
            raise RuntimeError(f"pod isolation is required but unavailable: {problem}")
        self._why = problem
        return "none"

    def _confinement_problem(self) -> str | None:
        """Why pods cannot be confined here, or None once a confined ``true`` has run."""
        missing = [tool for tool in ("bwrap", "nsenter", "setpriv") if not shutil.which(tool)]
        if missing:
            return (f"{', '.join(missing)} not found (Debian: apt-get install bubblewrap "
                    "util-linux)")
        try:
            write_filter(self._filter)
        except SeccompUnavailable as exc:
            return str(exc)
        probe = self._layout("probe", "probe", 0, "/")
        try:
            argv, filter_fd = self._bwrap_argv(probe, "probe", (0, 0))
            try:
                result = subprocess.run([*argv, "--", "true"], pass_fds=(filter_fd,),
                                        capture_output=True, timeout=10)
            finally:
                os.close(filter_fd)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap could not run: {exc}"
        finally:
            shutil.rmtree(self.root_dir / "probe", ignore_errors=True)
        if result.returncode != 0:
            why = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            return f"bubblewrap cannot create an unprivileged user namespace here ({why})"
        return None

    def describe(self) -> str:
        """The start-up banner: how pods are confined, what they still share, or a warning."""
        if self.isolation == "bwrap":
            who = (f"host uid {self.host_id[0]}" if self.host_id is not None
                   else f"your uid ({os.geteuid()})")
            return (f"pods run unprivileged (bubblewrap: user namespace as {who}, no "
                    "capabilities, seccomp filter, own mount/PID/IPC/UTS namespaces; host "
                    "/usr, /bin, /lib*, /etc read-only with secrets masked, private /tmp, home "
                    "and working directory). They share this machine's network: every port "
                    "on it, the devcluster API included (anonymously), is reachable from a pod")
        return (f"WARNING: pods are NOT isolated ({self._why}): they run as plain host "
                "processes with this server's privileges and can read, change and signal "
                "anything it can; do not run untrusted code. Set "
                "SANDBOXKIT_DEVCLUSTER_ISOLATION=bwrap to refuse to start without isolation")

    # -- containers --------------------------------------------------------------------

    def _private_dir(self, path: Path, mode: int = 0o755) -> Path:
        """A directory the pod writes to: owned by the pod's host id."""
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        if self.host_id is not None:
            os.chown(path, *self.host_id)
        return path

    def _layout(self, pod_uid: str, name: str, run: int, workdir: str | None,
                volumes: tuple[Mount, ...] = ()) -> _Layout:
        run_dir = self.root_dir / pod_uid / "containers" / name / str(run)
        tmp = self._private_dir(run_dir / "tmp", 0o1777)
        var_tmp = self._private_dir(run_dir / "var-tmp", 0o1777)
        home = self._private_dir(run_dir / "home", 0o700)
        cwd = os.path.normpath(workdir or DEFAULT_WORKDIR)
        base = _Layout(run_dir, tmp, var_tmp, home, None, cwd, volumes=volumes,
                       masked=self._masked)
        for volume in volumes:
            if volume.source.is_dir() and not volume.read_only:
                self._private_dir(volume.source, volume.source.stat().st_mode & 0o7777)
        seen = base.host_path(cwd)
        if self.isolation == "none":
            base.volumes = ()  # no mount namespace to lay them out in
            # plain processes see the host's paths: a missing working dir becomes a private one
            base.namespaced = False
            if not Path(cwd).is_dir():
                base.work = self._private_dir(run_dir / "work")
                base.cwd = str(base.work)
        elif seen is not None and seen != Path(cwd):
            self._private_dir(seen)  # inside /tmp, home or a volume
        elif cwd != "/" and not (seen is not None and seen.is_dir() and any(seen.iterdir())):
            # a missing or empty directory becomes writable; a populated host one keeps its
            # (read-only) content, as an image's WORKDIR would
            base.work = self._private_dir(run_dir / "work")
        return base

    async def start_container(
        self,
        pod_uid: str,
        container_name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        workdir: str | None = None,
        *,
        hostname: str | None = None,
        volumes: Sequence[Mount] = (),
        user: tuple[int, int] | None = None,
    ) -> Container:
        """Start ``argv``; raises ContainerStartError (runc's message) if it cannot run.

        ``user`` is ``(uid, gid)`` inside the container, default ``(0, 0)``, honoured under
        bubblewrap only (see the module docstring).
        """
        key = (pod_uid, container_name)
        previous = self._containers.get(key)
        if previous is not None and previous.running:
            raise RuntimeError(f"container {container_name} of pod {pod_uid} is running")
        run = self._runs.get(key, -1) + 1
        self._runs[key] = run
        if previous is not None:
            shutil.rmtree(previous.layout.run_dir, ignore_errors=True)
        layout = self._layout(pod_uid, container_name, run, workdir, tuple(volumes))
        user = (user or (0, 0)) if self.isolation == "bwrap" else None
        full_env = {"PATH": DEFAULT_PATH, "HOME": HOME, **env}
        if self.isolation == "none":
            full_env.update(TMPDIR=str(layout.tmp), HOME=str(layout.home))
        if not argv:
            raise ContainerStartError("no command specified")
        problem = _lookup(argv[0], full_env, layout)
        if problem:
            raise ContainerStartError(problem)
        log_dir = self.root_dir / pod_uid / "logs" / container_name
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{run}.log"
        log_path.touch()
        process, pid = await self._spawn(list(argv), full_env, layout, hostname or "localhost",
                                         user)
        container = Container(
            pod_uid, container_name, pid, log_path, full_env, layout, self.isolation, process,
            user=user,
        )
        assert process.stdout is not None and process.stderr is not None
        container._pumps = [
            asyncio.create_task(_pump(process.stdout, "stdout", log_path)),
            asyncio.create_task(_pump(process.stderr, "stderr", log_path)),
        ]
        container._reaper = asyncio.create_task(container._reap())
        self._containers[key] = container
        return container

    async def _spawn(
        self, argv: list[str], env: dict[str, str], layout: _Layout, hostname: str,
        user: tuple[int, int] | None = None,
    ) -> tuple[asyncio.subprocess.Process, int]:
        common = dict(
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
            limit=MAX_LOG_LINE,
        )
        if self.isolation == "none":
            process = await asyncio.create_subprocess_exec(
                "setpriv", "--pdeathsig", "KILL", "--", *argv, cwd=layout.cwd, **common,
            )
            return process, process.pid
        assert user is not None
        info_r, info_w = os.pipe()
        bwrap, filter_fd = self._bwrap_argv(layout, hostname, user)
        # The container's stdout and stderr belong to its host id, as a runtime's pipes
        # belong to the container's root: an exec may write to /proc/1/fd/1 (the log).
        (out_r, out_w), (err_r, err_w) = self._owned_pipe(), self._owned_pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *bwrap, "--info-fd", str(info_w), "--", *argv,
                pass_fds=(info_w, filter_fd),
                **{**common, "stdout": out_w, "stderr": err_w},
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (info_w, out_w, err_w, filter_fd):
                os.close(fd)
        process.stdout = await _pipe_reader(out_r)
        process.stderr = await _pipe_reader(err_r)
        with os.fdopen(info_r, "rb") as info:
            data = await asyncio.to_thread(info.read)
        try:
            pid = int(json.loads(data)["child-pid"])
        except (ValueError, KeyError) as exc:
            await process.wait()
            raise ContainerStartError("bwrap failed to start the container") from exc
        await _until_set_up(pid, lambda: os.readlink(f"/proc/{pid}/exe") != _BWRAP)
        return process, pid

    def _owned_pipe(self) -> tuple[int, int]:
        read_fd, write_fd = os.pipe()
        if self.host_id is not None:
            os.fchown(write_fd, *self.host_id)  # one inode: both ends change owner
        return read_fd, write_fd

    def _bwrap_argv(self, layout: _Layout, hostname: str,
                    user: tuple[int, int]) -> tuple[list[str], int]:
        """bubblewrap's command line for a container, and the descriptor of the seccomp
        filter it names (open: the caller passes it to bwrap and closes it)."""
        filter_fd = os.open(self._filter, os.O_RDONLY | os.O_CLOEXEC)
        argv = []
        if self.host_id is not None:
            uid, gid = self.host_id
            argv += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        argv += ["bwrap", "--die-with-parent", "--new-session",
                 "--unshare-user", "--uid", str(user[0]), "--gid", str(user[1]),
                 "--unshare-pid", "--as-pid-1", "--unshare-uts", "--unshare-ipc",
                 "--unshare-cgroup", "--hostname", hostname, "--cap-drop", "ALL",
                 "--tmpfs", "/"]
        for entry in HOST_VIEW:
            path = "/" + entry
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    argv += ["--symlink", os.readlink(path), path]
                elif stat.S_ISDIR(mode):
                    argv += ["--ro-bind", path, path]
        argv += self._masks()
        argv += [*_DEV, "--proc", "/proc", "--dir", "/var"]
        for target, source in layout.mounts():
            read_only = any(v.read_only and v.target == target for v in layout.volumes)
            # resolved here: the unprivileged id cannot walk DIR/node's closed parents
            argv += ["--ro-bind" if read_only else "--bind", os.path.realpath(source), target]
        argv += ["--remount-ro", "/", "--chdir", layout.cwd, "--seccomp", str(filter_fd)]
        return argv, filter_fd

    def _masks(self) -> list[str]:
        """bubblewrap options covering each masked path the pod's view would show: an
        empty read-only directory over a directory, ``/dev/null`` over anything else."""
        argv: list[str] = []
        covered: list[str] = []
        for path in sorted(self._masked):
            parts = Path(path).parts
            if len(parts) < 2 or parts[1] not in HOST_VIEW or not os.path.lexists(path):
                continue
            if any(path.startswith(done + "/") for done in covered):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                argv += ["--tmpfs", path, "--remount-ro", path]
                covered.append(path)
            else:
                argv += ["--ro-bind", "/dev/null", path]
        return argv

    def container(self, pod_uid: str, container_name: str) -> Container | None:
        """The latest container started under that name (running or not)."""
        return self._containers.get((pod_uid, container_name))

    # -- exec ----------------------------------------------------------------------------

    async def exec(
        self,
        pod_uid: str,
        container_name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        tty: bool = False,
    ) -> ExecProcess:
        """Run ``argv`` inside a running container, in its own process group.

        With ``tty`` the process gets a pseudo-terminal as controlling terminal; the
        returned process's ``stdin``/``stdout`` then talk to the terminal and ``stderr`` is
        None (a terminal merges them, as ``kubectl exec -t`` shows). Raises
        ContainerStartError with runc's wording when the command cannot be found, and
        LookupError when the container is not running.
        """
        container = self._containers.get((pod_uid, container_name))
        if container is None or not container.running:
            raise LookupError(container_name)
        full_env = {**container.env, **(env or {})}
        if tty:
            full_env.setdefault("TERM", "xterm")
        if not argv:
            raise ContainerStartError("no command specified")
        problem = _lookup(argv[0], full_env, container.layout)
        if problem:
            raise ContainerStartError(problem)
        if self.isolation == "none":
            prefix: list[str] = []
            kwargs: dict[str, object] = {"cwd": container.layout.cwd}
        else:
            assert container.user is not None
            uid, gid = container.user
            # The filter first (on the host), then the pod's namespaces. As root, become the
            # pod's uid and gid; as the user the pod's ids map to, keep our own (they *are*
            # those ids there, and setgroups is denied in the namespace).
            ids = (["-S", str(uid), "-G", str(gid)] if self.host_id is not None
                   else ["--preserve-credentials"])
            prefix = [sys.executable, "-I", "-S", _NSEXEC, str(self._filter),
                      "nsenter", "-t", str(container.pid), "-U", "-m", "-p", "-u", "-i", "-C",
                      "-r", "-w", *ids, "--"]
            if uid == 0:
                # joining a user namespace grants every capability in it; uid 0 keeps them
                prefix += ["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                           "--ambient-caps=-all", "--"]
            kwargs = {}
        if tty:
            prefix += ["setsid", "-c"]
            process = await self._exec_tty([*prefix, *argv], full_env, kwargs)
        else:
            # pipes the exec's own uid may reopen (/dev/stdout, /dev/stderr)
            (in_r, in_w), (out_r, out_w), (err_r, err_w) = (
                self._owned_pipe(), self._owned_pipe(), self._owned_pipe())
            try:
                process = await asyncio.create_subprocess_exec(
                    *prefix, *argv, stdin=in_r, stdout=out_w, stderr=err_w, env=full_env,
                    start_new_session=True, **kwargs,  # type: ignore[arg-type]
                )
            except BaseException:
                for fd in (in_w, out_r, err_r):
                    os.close(fd)
                raise
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            process = ExecProcess(process, await _pipe_writer(in_w),
                                  await _pipe_reader(out_r, _EXEC_LIMIT),
                                  await _pipe_reader(err_r, _EXEC_LIMIT))
        self._execs.add(process)
        return process

    async def _exec_tty(
        self, argv: list[str], env: dict[str, str], kwargs: dict[str, object]
    ) -> ExecProcess:
        master, slave = pty.openpty()
        if self.host_id is not None:
            os.fchown(slave, *self.host_id)  # the exec's uid may reopen its terminal
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                start_new_session=True, **kwargs,  # type: ignore[arg-type]
            )
        finally:
            os.close(slave)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: _PtyProtocol(reader), os.fdopen(master, "rb", buffering=0)
        )
        return ExecProcess(process, await _pipe_writer(os.dup(master)), reader, None)

    # -- teardown ------------------------------------------------------------------------

    def cleanup(self, pod_uid: str) -> None:
        """Forget a pod and delete its directory (logs included)."""
        for key in [k for k in self._containers if k[0] == pod_uid]:
            container = self._containers.pop(key)
            if container.running:
                container.signal(signal.SIGKILL)
            self._runs.pop(key, None)
        shutil.rmtree(self.root_dir / pod_uid, ignore_errors=True)

    async def shutdown(self) -> None:
        """Kill every container and exec (server exit)."""
        for process in list(self._execs):
            if process.returncode is None:
                _kill_group(process.pid, signal.SIGKILL)
        self._execs.clear()
        running = [c for c in self._containers.values() if c.running]
        for container in running:
            container.signal(signal.SIGKILL)
            if container.isolation == "none":
                _kill_group(container._process.pid, signal.SIGKILL)
        await asyncio.gather(*(c.wait() for c in running), return_exceptions=True)
        self._remove_staging()


class _PtyProtocol(asyncio.StreamReaderProtocol):
    """Reading a pty master fails with EIO once the last slave closes: that is EOF."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


async def _pipe_reader(fd: int, limit: int = MAX_LOG_LINE) -> asyncio.StreamReader:
    """A StreamReader on the read end of a pipe this process made itself."""
    reader = asyncio.StreamReader(limit=limit)
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


async def _pipe_writer(fd: int) -> asyncio.StreamWriter:
    """A StreamWriter on the write end of a pipe (or a terminal) this process made itself."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", buffering=0))
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def _until_set_up(pid: int, ready: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until the sandbox has its mounts in place, so an exec never joins it half-built."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            return  # already gone: wait() reports how it ended
        await asyncio.sleep(0.001)
