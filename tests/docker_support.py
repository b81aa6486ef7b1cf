"""A Docker engine and a locally built image for the tests marked ``docker``.

No registry is reachable where these tests run, so the image is made here: a tarball with
the host's busybox (and the shared libraries it links, if it is not static) plus a symlink
per applet, loaded with ``docker import``. The engine is the one ``DOCKER_HOST`` (or the
default socket) names when it answers; otherwise, where ``dockerd`` is installed and we are
root, a private daemon with its own data root, exec root and socket, stopped at the end.
When neither works the tests skip with the reason; they never pass without an engine.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

IMAGE = "sandboxkit-test/busybox:1"
READY_TIMEOUT = 60.0
_READY_LINE = "API listen on"


class EngineUnavailable(Exception):
    """No Docker engine could be used or started; the message says why."""


def _answers(host: str | None) -> bool:
    import docker

    environment = dict(os.environ)
    if host:
        environment["DOCKER_HOST"] = host
    try:
        docker.from_env(environment=environment).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def docker_engine() -> Iterator[str]:
    """Yield a DOCKER_HOST whose engine answers: the configured one, else a private one."""
    configured = os.environ.get("DOCKER_HOST")
    if _answers(configured):
        yield configured or "unix:///var/run/docker.sock"
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable(
            f"no Docker engine at {configured or 'the default socket'} and no dockerd to "
            "start (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and starting dockerd needs root")
    with tempfile.TemporaryDirectory(prefix="sbk-docker-") as directory:
        root = Path(directory)
        host = f"unix://{root}/docker.sock"
        log = (root / "dockerd.log").open("w")
        process = subprocess.Popen(
            [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "--pidfile", str(root / "dockerd.pid"), "-H", host,
             # The sandboxes need no bridge (no network unless configured), and iptables may
             # be missing or forbidden where the tests run.
             "--iptables=false", "--bridge=none"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            _wait_ready(process, log, root / "dockerd.log")
            yield host
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
            _unmount_under(root)


def _unmount_under(root: Path) -> None:
    """Lazily unmount what the daemon left mounted below ``root`` (network namespaces of
    containers on the host network), deepest first, so the directory can be removed."""
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _wait_ready(process: subprocess.Popen[str], log: object, log_path: Path) -> None:
    """Follow dockerd's log until it listens (a watch on its output, not polling); keep
    copying the log afterwards so the pipe never fills."""
    ready = threading.Event()

    def follow() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.write(line)  # type: ignore[attr-defined]
            log.flush()  # type: ignore[attr-defined]
            if _READY_LINE in line:
                ready.set()
        ready.set()  # the daemon exited

    threading.Thread(target=follow, daemon=True).start()
    if not ready.wait(READY_TIMEOUT) or process.poll() is not None:
        tail = log_path.read_text()[-2000:] if log_path.exists() else ""
        raise EngineUnavailable(f"dockerd did not start:\n{tail}")


def build_image(host: str, image: str = IMAGE, *, omit: frozenset[str] = frozenset(),
                scripts: dict[str, str] | None = None) -> str:
    """Import a busybox image into the engine at ``host`` (once); return its name.

    ``omit`` leaves those applets out (``{"timeout"}``: an image on which the sandbox's idle
    command cannot start); ``scripts`` adds executable files, ``{"bin/timeout": "#!/bin/sh
    ..."}``, in place of applets."""
    import docker

    client = docker.from_env(environment={**os.environ, "DOCKER_HOST": host})
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(image)
        return image
    busybox = shutil.which("busybox")
    if busybox is None:
        raise EngineUnavailable("busybox is needed to build the test image "
                                "(apt-get install busybox)")
    with tempfile.TemporaryFile() as archive:
        _busybox_rootfs(Path(busybox).resolve(), archive, omit, scripts or {})
        archive.seek(0)
        repository, tag = image.rsplit(":", 1)
        client.api.import_image_from_data(archive.read(), repository=repository, tag=tag)
    return image


def _busybox_rootfs(busybox: Path, archive: object, omit: frozenset[str],
                    scripts: dict[str, str]) -> None:
    """A root filesystem: /bin/busybox, its libraries, /bin/<applet> links but ``omit``'s,
    ``scripts`` (path to text, mode 0755), /tmp."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    linked = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True,
                            check=False).stdout
    libraries = sorted(set(re.findall(r"(/\S+)", linked)))
    with tarfile.open(fileobj=archive, mode="w") as tar:  # type: ignore[call-overload]
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for library in libraries:
            tar.add(str(Path(library).resolve()), arcname=library.lstrip("/"))
        for path, text in scripts.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for applet in applets:
            if applet != "busybox" and applet not in omit and f"bin/{applet}" not in scripts:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
