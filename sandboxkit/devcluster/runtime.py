"""The devcluster's container runtime: pod containers as (namespaced) local processes.

Where Linux namespaces are available, each container runs in its own mount, PID and UTS
namespaces: the host's filesystem read-only, a private writable ``/tmp``, ``/var/tmp``,
home (``/root``) and working directory backed by a per-container directory under
``root_dir``, fresh ``/proc`` and ``/dev``, and the pod's name as hostname. The command is
PID 1 of its namespace, as under containerd/runc (no init process): it only receives
SIGTERM if it handles it, ``kill -9 -1`` inside reaches nothing outside the container,
and when it exits the kernel kills everything left in the namespace. bubblewrap is used
when it works; as root, ``unshare`` plus a few mounts does the same; otherwise containers
are plain processes in their own session (``isolation == "none"``), and say so.

Volumes are bind mounts of host directories (``readOnly`` as a read-only bind) laid over
that view. Under bubblewrap a container with ``runAsUser`` runs in a user namespace that
maps that uid (and ``runAsGroup``) to the devcluster's own user, so ``id -u`` says 1000 while
files it writes on the host belong to whoever runs the devcluster; with ``unshare`` or no
isolation the user is recorded but the process keeps the devcluster's.

Execs join the container's namespaces with ``nsenter`` (no shell in between, so starting
one costs a fork/exec or two) and get the container's environment and working directory.

Container output is written the way containerd's CRI plugin writes it, one record per
line: ``<RFC3339Nano> stdout|stderr F|P <text>``, ``P`` marking a line split because it
exceeded 16 KiB or cut short at end of stream. Each start of a container gets a new file,
so the previous run's log stays readable (``kubectl logs --previous``).

None of this is a security boundary: it keeps pods from trampling each other and the
devcluster by accident, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import pty
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ISOLATION_MODES",
    "MAX_LOG_LINE",
    "Container",
    "ContainerRuntime",
    "ContainerStartError",
    "Mount",
    "rfc3339nano",
]

ISOLATION_MODES = ("auto", "bwrap", "unshare", "none")
MAX_LOG_LINE = 16 * 1024  # containerd's default max_container_log_line_size
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOME = "/root"
DEFAULT_WORKDIR = "/workspace"

# Shell run (as PID 1 of fresh namespaces) by the unshare backend to lay out the mounts
# bubblewrap would: it execs the container command, so no shell stays around.
_UNSHARE_SETUP = r"""
set -e
root=$1 tmp=$2 vartmp=$3 home=$4 work=$5 cwd=$6 host=$7 volumes=$8
shift 8
mount --make-rprivate /
mount -t tmpfs tmpfs "$root"
for e in /*; do
  n=${e#/}
  case "$n" in proc|dev|tmp|root|sys) continue ;; esac
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$root/$n"
  elif [ -d "$e" ]; then mkdir "$root/$n"; mount --rbind "$e" "$root/$n"
    mount -o remount,bind,ro "$root/$n"
  fi
done
mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root/root" "$root/sys"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount --bind "$tmp" "$root/tmp"
mount --bind "$vartmp" "$root/var/tmp"
mount --bind "$home" "$root/root"
if [ -n "$work" ]; then
  mkdir -p "$root$cwd" 2>/dev/null || true
  mount --bind "$work" "$root$cwd"
fi
while [ "$volumes" -gt 0 ]; do
  mkdir -p "$root$2" 2>/dev/null || true
  mount --bind "$1" "$root$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
  shift 3
  volumes=$((volumes - 1))
done
mount -o remount,ro "$root"
hostname "$host"
cd "$root"
exec chroot "$root" sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"""


_BWRAP = os.path.realpath(shutil.which("bwrap") or "/usr/bin/bwrap")


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
    work: Path | None  # host dir bound at ``cwd``, None when cwd is the host's own dir
    cwd: str
    namespaced: bool = True
    volumes: tuple[Mount, ...] = ()

    def host_path(self, path: str) -> Path:
        """The host file a container path refers to (for PATH lookups before exec)."""
        if not self.namespaced:
            return Path(path)
        mounts = [("/tmp", self.tmp), ("/var/tmp", self.var_tmp), (HOME, self.home)]
        if self.work is not None:
            mounts.append((self.cwd, self.work))
        mounts += [(v.target, v.source) for v in self.volumes]
        for target, source in sorted(mounts, key=lambda m: -len(m[0])):
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return source / os.path.relpath(path, target)
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
        if self.isolation == "unshare" and self._killed and returncode == 1:
            # unshare cannot re-raise SIGKILL on itself and exits 1 instead
            returncode = -signal.SIGKILL
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
        return host.is_file() and os.access(host, os.X_OK)

    if "/" in argv0:
        path = argv0 if argv0.startswith("/") else os.path.join(layout.cwd, argv0)
        host = layout.host_path(os.path.normpath(path))
        if not host.exists():
            return f'exec: "{argv0}": stat {argv0}: no such file or directory'
        if host.is_dir() or not os.access(host, os.X_OK):
            return f'exec: "{argv0}": permission denied'
        return None
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        if directory and runnable(os.path.join(directory, argv0)):
            return None
    return f'exec: "{argv0}": executable file not found in $PATH'


def _bwrap_works() -> bool:
    try:
        probe = subprocess.run(
            ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
             "--unshare-pid", "--die-with-parent", "--", "true"],
            capture_output=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _unshare_works() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not running as root"
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--pid", "--uts", "--fork", "--", "true"],
            capture_output=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return probe.returncode == 0, probe.stderr.decode(errors="replace").strip()


class ContainerRuntime:
    """Starts, stops and execs into pod containers; one per devcluster."""

    def __init__(self, root_dir: Path, isolation: str = "auto") -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_MODES)}")
        self.root_dir = Path(root_dir)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self._why = ""
        self.isolation = self._choose(isolation)
        self._containers: dict[tuple[str, str], Container] = {}
        self._runs: dict[tuple[str, str], int] = {}
        self._execs: set[asyncio.subprocess.Process] = set()

    def _choose(self, wanted: str) -> str:
        if wanted == "none":
            self._why = "isolation disabled by configuration"
            return "none"
        missing = []
        if wanted in ("auto", "bwrap"):
            if shutil.which("bwrap") and shutil.which("nsenter") and _bwrap_works():
                return "bwrap"
            missing.append("bubblewrap cannot create PID namespaces here")
            if wanted == "bwrap":
                raise RuntimeError("isolation 'bwrap' requested but " + missing[0])
        if shutil.which("unshare") and shutil.which("nsenter"):
            ok, why = _unshare_works()
            if ok:
                return "unshare"
            missing.append(f"unshare failed ({why or 'unknown error'})")
        else:
            missing.append("unshare/nsenter not installed")
        if wanted == "unshare":
            raise RuntimeError("isolation 'unshare' requested but " + missing[-1])
        self._why = "; ".join(missing)
        return "none"

    def describe(self) -> str:
        """One line for the start-up banner: how pods are isolated, and why not if not."""
        if self.isolation == "bwrap":
            return ("pods run in their own mount/PID namespaces (bubblewrap): read-only host "
                    "filesystem, private /tmp, home and working directory")
        if self.isolation == "unshare":
            return ("pods run in their own mount/PID namespaces (unshare): read-only host "
                    "filesystem, private /tmp, home and working directory")
        return (f"pods run as plain host processes ({self._why}): they share the host's "
                "filesystem and can see and signal each other")

    # -- containers --------------------------------------------------------------------

    def _layout(self, pod_uid: str, name: str, run: int, workdir: str | None,
                volumes: tuple[Mount, ...] = ()) -> _Layout:
        run_dir = self.root_dir / pod_uid / "containers" / name / str(run)
        tmp, var_tmp, home = run_dir / "tmp", run_dir / "var-tmp", run_dir / "home"
        for d in (tmp, var_tmp, home):
            d.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o1777)
        var_tmp.chmod(0o1777)
        cwd = os.path.normpath(workdir or DEFAULT_WORKDIR)
        base = _Layout(run_dir, tmp, var_tmp, home, None, cwd, volumes=volumes)
        private = base.host_path(cwd)
        if self.isolation == "none":
            base.volumes = ()  # no mount namespace to lay them out in
            # plain processes see the host's paths: a missing working dir becomes a private one
            base.namespaced = False
            if not Path(cwd).is_dir():
                base.work = run_dir / "work"
                base.work.mkdir(exist_ok=True)
                base.cwd = str(base.work)
        elif private != Path(cwd):
            private.mkdir(parents=True, exist_ok=True)
        elif cwd != "/" and not (Path(cwd).is_dir() and any(Path(cwd).iterdir())):
            # a missing or empty directory becomes writable; a populated one keeps the
            # host's (read-only) content, as an image's WORKDIR would
            base.work = run_dir / "work"
            base.work.mkdir(exist_ok=True)
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

        ``user`` is ``(uid, gid)``, honoured under bubblewrap only (see the module docstring).
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
        if self.isolation != "bwrap":
            user = None
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
        if self.isolation == "bwrap":
            info_r, info_w = os.pipe()
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._bwrap_argv(layout, hostname, info_w, user), "--", *argv,
                    pass_fds=(info_w,), **common,
                )
            finally:
                os.close(info_w)
            with os.fdopen(info_r, "rb") as info:
                data = await asyncio.to_thread(info.read)
            try:
                pid = int(json.loads(data)["child-pid"])
            except (ValueError, KeyError) as exc:
                await process.wait()
                raise ContainerStartError("bwrap failed to start the container") from exc
            await _until_set_up(pid, lambda: os.readlink(f"/proc/{pid}/exe") != _BWRAP)
            return process, pid
        if self.isolation == "unshare":
            script_root = layout.run_dir / "root"
            script_root.mkdir(exist_ok=True)
            process = await asyncio.create_subprocess_exec(
                "setpriv", "--pdeathsig", "KILL", "--",
                "unshare", "--mount", "--pid", "--uts", "--fork", "--kill-child",
                "--", "sh", "-c", _UNSHARE_SETUP, "setup", str(script_root),
                str(layout.tmp), str(layout.var_tmp), str(layout.home),
                str(layout.work or ""), layout.cwd, hostname, str(len(layout.volumes)),
                *(arg for v in layout.volumes
                  for arg in (str(v.source), v.target, "ro" if v.read_only else "rw")),
                *argv,
                **common,
            )
            pid = await _child_of(process.pid)
            host_root = os.stat("/").st_dev
            await _until_set_up(pid, lambda: os.stat(f"/proc/{pid}/root").st_dev != host_root)
            return process, pid
        process = await asyncio.create_subprocess_exec(
            "setpriv", "--pdeathsig", "KILL", "--", *argv, cwd=layout.cwd, **common,
        )
        return process, process.pid

    def _bwrap_argv(self, layout: _Layout, hostname: str, info_fd: int,
                    user: tuple[int, int] | None = None) -> list[str]:
        argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--as-pid-1",
                "--unshare-uts", "--unshare-ipc", "--hostname", hostname, "--tmpfs", "/"]
        if user is not None:
            argv += ["--unshare-user", "--uid", str(user[0]), "--gid", str(user[1])]
        for entry in sorted(os.listdir("/")):
            if entry in ("proc", "dev", "tmp", "root"):
                continue
            path = "/" + entry
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                argv += ["--symlink", os.readlink(path), path]
            elif stat.S_ISDIR(mode):
                argv += ["--ro-bind", path, path]
        argv += ["--dev", "/dev", "--proc", "/proc",
                 "--bind", str(layout.tmp), "/tmp",
                 "--bind", str(layout.home), HOME]
        if Path("/var/tmp").is_dir():
            argv += ["--bind", str(layout.var_tmp), "/var/tmp"]
        if layout.work is not None:
            argv += ["--bind", str(layout.work), layout.cwd]
        for volume in layout.volumes:
            argv += ["--ro-bind" if volume.read_only else "--bind", str(volume.source),
                     volume.target]
        argv += ["--remount-ro", "/", "--chdir", layout.cwd, "--info-fd", str(info_fd)]
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
    ) -> asyncio.subprocess.Process:
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
            prefix = ["nsenter", "-t", str(container.pid), "-m", "-p", "-u", "-i", "-r", "-w"]
            if container.user is not None:
                uid, gid = container.user
                prefix[3:3] = ["-U", "-S", str(uid), "-G", str(gid)]
            kwargs = {}
        if tty:
            prefix += ["setsid", "-c"]
            process = await self._exec_tty([*prefix, *argv], full_env, kwargs)
        else:
            process = await asyncio.create_subprocess_exec(
                *prefix, *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
                start_new_session=True,
                **kwargs,  # type: ignore[arg-type]
            )
        self._execs.add(process)
        return process

    async def _exec_tty(
        self, argv: list[str], env: dict[str, str], kwargs: dict[str, object]
    ) -> asyncio.subprocess.Process:
        master, slave = pty.openpty()
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
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", buffering=0)
        )
        process.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        process.stdout = reader
        return process

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


class _PtyProtocol(asyncio.StreamReaderProtocol):
    """Reading a pty master fails with EIO once the last slave closes: that is EOF."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


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


async def _child_of(pid: int, timeout: float = 2.0) -> int:
    """The host pid of the namespace's PID 1, which ``unshare --fork`` spawns."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            first = children.read_text().split()
            if first:
                return int(first[0])
        await asyncio.sleep(0.005)
    raise ContainerStartError("unshare failed to start the container")
