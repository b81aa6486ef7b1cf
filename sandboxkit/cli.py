"""The ``sandboxkit`` command.

Subcommands import what they need when they run, so ``sandboxkit --help`` stays fast and the
CLI never pulls in IPython or ipywidgets.

Commands that talk to a cluster (``ls``, ``gc``, ``rbac``, ``doctor``, ``diagnose``) find it
as kubectl does (``--kubeconfig``, ``--context``, ``$KUBECONFIG``, ``~/.kube/config``,
in-cluster) and print failures as one ``error: ...`` line saying what to do, never a
traceback: exit 2 for a setting to fix before anything can run (:class:`ConfigError`), 1 for
a failure on the way or a check that did not pass.

``shell`` is ``kubectl exec -it`` on any backend: the remote command's exit status is its
own, and only what follows ``--`` is the remote command (split off before argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import pandas as pd

    from .backends.kubernetes.client import Connection
    from .diagnostics import Diagnosis

__all__ = ["main", "split_command"]

ClusterHandler = Callable[[argparse.Namespace, "Connection"], int]


def _devcluster_start(args: argparse.Namespace) -> int:
    from .devcluster.process import start

    info, started = start(args.dir, args.port)
    verb = "started" if started else "already running"
    print(f"# devcluster {verb} at {info.url} (pid {info.pid})", file=sys.stderr)
    print(f"# {info.isolation}", file=sys.stderr)
    print(f"export KUBECONFIG={info.kubeconfig_path}")
    return 0


def _devcluster_stop(args: argparse.Namespace) -> int:
    """Exit 0 either way: after ``stop`` none runs, which is what the caller asked for."""
    from .devcluster.process import stop

    directory = args.dir.expanduser().resolve()
    if stop(directory):
        print(f"devcluster in {directory} stopped")
    else:
        print(f"no devcluster is running in {directory}")
    return 0


def _devcluster_status(args: argparse.Namespace) -> int:
    from .devcluster.process import running

    info = running(args.dir)
    if info is None:
        print(f"no devcluster is running in {args.dir.expanduser().resolve()}")
        return 1
    print(f"devcluster running at {info.url} (pid {info.pid})")
    print(info.isolation)
    print(f"export KUBECONFIG={info.kubeconfig_path}")
    return 0


def _devcluster_run(args: argparse.Namespace) -> int:
    """Refuse a second server on one directory: it would overwrite the first one's state
    file and kubeconfig, leaving that one running where ``stop`` cannot find it."""
    from .devcluster.cluster import run
    from .devcluster.process import running

    info = running(args.dir)
    if info is not None:
        print(f"error: a devcluster already runs in {info.directory} at {info.url} "
              f"(pid {info.pid}); stop it first", file=sys.stderr)
        return 1
    return run(args.dir, args.port)  # an OSError (the port is taken) is main's error line


# --- commands that talk to a cluster -------------------------------------------------------


def _table(rows: Iterable[Sequence[object]], headers: Sequence[str]) -> str:
    """Rows as kubectl prints them: upper-case headers, columns three spaces apart."""
    cells = [[str(h).upper() for h in headers],
             *[["<none>" if v in ("", None) else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in cells)


def _frame_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    return _table(frame[list(columns)].itertuples(index=False), columns)


def _ls(args: argparse.Namespace, conn: Connection) -> int:
    import pandas as pd

    from .inventory import list_sandboxes

    frame = list_sandboxes(args.namespace, all_namespaces=args.all_namespaces, connection=conn)
    if args.output == "json":
        created = frame["created"].map(lambda t: None if t is pd.NaT else t.isoformat())
        print(json.dumps(frame.assign(created=created).to_dict("records"), indent=2))
        return 0
    if frame.empty:
        where = "" if args.all_namespaces else f" in {args.namespace or conn.namespace} namespace"
        print(f"No sandboxes found{where}.", file=sys.stderr)
        return 0
    columns = ["name", "phase", "status", "pod", "age"]
    if args.output == "wide":
        columns += ["node", "image", "owner", "cpu", "memory"]
    if args.all_namespaces:
        columns.insert(0, "namespace")
    print(_frame_table(frame, columns))
    return 0


def _gc(args: argparse.Namespace, conn: Connection) -> int:
    from .inventory import gc

    frame = gc(args.namespace, dry_run=args.dry_run, connection=conn)
    if frame.empty:
        print(f"nothing to collect in namespace {args.namespace or conn.namespace}")
        return 0
    result = ("would delete (dry run)" if args.dry_run else "deleted" if deleted
              else "already gone" for deleted in frame["deleted"])
    print(_table(zip(frame["name"], frame["reason"], result, strict=True),
                 ["name", "reason", "result"]))
    return 0


def _rbac(args: argparse.Namespace, conn: Connection) -> int:
    from . import rbac

    if args.action in ("apply", "uninstall"):
        change = rbac.apply if args.action == "apply" else rbac.uninstall
        for line in change(args.namespace, args.file, connection=conn):
            print(line)
        return 0
    frame = rbac.verify(args.namespace, args.service_account, connection=conn)
    identity = frame.attrs.get("identity")
    if identity:
        print(f"identity: {identity}")
    # "" means the core API group and cluster scope; words read better than <none>.
    shown = frame.assign(api_group=frame["api_group"].replace("", "core"),
                         namespace=frame["namespace"].replace("", "(cluster)"))
    print(_frame_table(shown, ["api_group", "resource", "verb", "namespace", "expected",
                               "allowed", "ok", "reason"]))
    print(frame.attrs.get("verdict", ""))
    missing = frame.attrs.get("missing_yaml", "")
    if missing:
        print("\nRole rules missing (add them to the Role, or run `sandboxkit rbac apply`):")
        print(missing.rstrip("\n"))
    return 0 if bool(frame["ok"].all()) else 1


def _report(diagnosis: Diagnosis) -> int:
    print(diagnosis.to_text())
    return 0 if diagnosis.ok else 1  # ok: no finding of severity "error"


def _doctor(args: argparse.Namespace, conn: Connection) -> int:
    from .diagnostics import preflight

    return _report(preflight(args.namespace, image=args.image, connection=conn))


def _diagnose(args: argparse.Namespace, conn: Connection) -> int:
    from .diagnostics import diagnose

    return _report(diagnose(args.name, args.namespace, connection=conn))


# --- warm pools ----------------------------------------------------------------------------

# `pool start` flags that set a SandboxConfig field of the same name as they are.
_POOL_SETTINGS = ("image", "cpu_request", "cpu_limit", "memory_request", "memory_limit",
                  "workdir", "service_account", "active_deadline_seconds", "startup_timeout")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _pool_start(args: argparse.Namespace, conn: Connection) -> int:
    """Fill the pool, refill it until Ctrl-C or SIGTERM, then stop and leave the idle
    sandboxes: they stay claimable (the point of a pool that outlives its filler) until
    their deadline or ``sandboxkit pool drain``, which is explicit."""
    import signal

    from .config import parse_env
    from .pool import SandboxPool

    settings = {key: getattr(args, key) for key in _POOL_SETTINGS
                if getattr(args, key) is not None}
    namespace = args.namespace or conn.namespace
    pool = SandboxPool(
        args.name, args.size, namespace=namespace, kubeconfig=args.kubeconfig,
        context=args.context, env=parse_env(args.env), **settings,
        on_progress=lambda stage, detail: print(f"{stage:<9} {detail}", flush=True))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        pool.start()
        print(f"pool {args.name}: {args.size} idle sandbox(es) in namespace {namespace}; "
              "refilling until Ctrl-C or SIGTERM", flush=True)
        pool.wait()
    except KeyboardInterrupt:
        pool.stop()
        print(f"stopped; the idle sandboxes stay claimable until their deadline "
              f"(`sandboxkit pool drain {args.name} -n {namespace}` deletes them)", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _pool_ls(args: argparse.Namespace, conn: Connection) -> int:
    from .pool import list_pools

    frame = list_pools(args.namespace, all_namespaces=args.all_namespaces, connection=conn)
    if frame.empty:
        where = "" if args.all_namespaces else f" in {args.namespace or conn.namespace} namespace"
        print(f"No pools found{where}.", file=sys.stderr)
        return 0
    columns = ["name", "idle", "ready", "claimed"]
    if args.all_namespaces:
        columns.insert(0, "namespace")
    print(_frame_table(frame, columns))
    return 0


def _pool_drain(args: argparse.Namespace, conn: Connection) -> int:
    from .pool import drain

    deleted = drain(args.name, args.namespace, connection=conn)
    where = args.namespace or conn.namespace
    print(f"deleted {', '.join(deleted)}" if deleted
          else f"pool {args.name} has no idle sandboxes in namespace {where}")
    return 0


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _add_pool_commands(commands: Any) -> None:
    pool = commands.add_parser("pool", help="warm pools: sandboxes started ahead of time",
                               description="warm pools: sandboxes started ahead of time")
    actions = pool.add_subparsers(dest="action", required=True)
    start = _cluster_command(
        actions, "start", _pool_start,
        "keep SIZE idle sandboxes running under the pool NAME until Ctrl-C or SIGTERM; "
        "the idle ones then stay claimable (drain deletes them)")
    start.add_argument("name", metavar="NAME", help="the pool's name (a DNS-1123 label)")
    start.add_argument("--size", type=_positive_count, required=True, metavar="N",
                       help="idle sandboxes to keep")
    start.add_argument("--image", help="container image (default: the configured one)")
    for field, example in (("cpu_request", "250m"), ("cpu_limit", "1"),
                           ("memory_request", "512Mi"), ("memory_limit", "2Gi")):
        start.add_argument(f"--{field.replace('_', '-')}", metavar="Q",
                           help=f"the sandbox container's {field.replace('_', ' ')} "
                                f"(e.g. {example})")
    start.add_argument("--env", action="append", metavar="K=V",
                       help="environment variable (repeat)")
    start.add_argument("--workdir", help="working directory of commands")
    start.add_argument("--service-account", metavar="SA", help="ServiceAccount pods run as")
    start.add_argument("--active-deadline-seconds", type=int, metavar="S",
                       help="how long a sandbox may live, idle time included")
    start.add_argument("--startup-timeout", type=float, metavar="S",
                       help="seconds to wait for each sandbox to run")
    ls = _cluster_command(actions, "ls", _pool_ls,
                          "list pools with their idle, ready and claimed sandboxes",
                          namespace=False)
    scope = ls.add_mutually_exclusive_group()
    _namespace_option(scope)
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="list pools in every namespace")
    drain = _cluster_command(actions, "drain", _pool_drain,
                             "delete the pool's idle sandboxes (claimed ones stay)")
    drain.add_argument("name", metavar="NAME", help="the pool's name")


def _on_cluster(handler: ClusterHandler) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` with a connection resolved from the flags, closed afterwards."""

    def run(args: argparse.Namespace) -> int:
        from urllib3.exceptions import HTTPError

        from .backends.kubernetes.client import connect
        from .errors import SandboxError

        conn = connect(args.kubeconfig, args.context)
        try:
            return handler(args, conn)
        except HTTPError as exc:  # urllib3 gave up connecting (refused, DNS, TLS)
            cause = getattr(exc, "reason", None) or exc
            raise SandboxError(
                f"cannot reach the cluster at {conn.configuration.host} ({cause}). Check "
                "`kubectl cluster-info` with the same --kubeconfig/--context, or start a "
                "local cluster with `eval \"$(sandboxkit devcluster start)\"`") from exc
        finally:
            conn.close()

    return run


def _error_line(exc: BaseException) -> tuple[str, int] | None:
    """The message (one line, but a devcluster's log tail) and exit status for a failure a
    user can act on; None for an unexpected one (a bug, whose traceback is worth seeing)."""
    from .devcluster.process import DevClusterError
    from .errors import ConfigError, SandboxError, one_line

    if isinstance(exc, DevClusterError):  # it failed to start: the log tail says why
        return str(exc), 1
    text = one_line(str(exc))
    if isinstance(exc, ConfigError):
        return text, 2
    if isinstance(exc, SandboxError):
        return text, 1
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except (TypeError, ValueError, AttributeError):
            message = exc.reason
        return f"the API server answered {exc.status} {exc.reason}: {message}", 1
    if isinstance(exc, OSError):  # a file named on the command line, say
        return text, 1
    return None


def _cluster_options(subcommand: argparse.ArgumentParser) -> None:
    """kubectl's connection flags; SUPPRESS keeps a value given before the subcommand."""
    subcommand.add_argument("--kubeconfig", default=argparse.SUPPRESS, metavar="PATH",
                            help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    subcommand.add_argument("--context", default=argparse.SUPPRESS, metavar="NAME",
                            help="kubeconfig context (default: the current one)")


def _namespace_option(target: Any) -> None:
    """``-n`` on a parser or a group (``ls`` puts it beside ``-A``)."""
    target.add_argument("-n", "--namespace", metavar="NS",
                        help="namespace (default: the kubeconfig context's)")


def _cluster_command(
    commands: Any, name: str, handler: ClusterHandler, summary: str,
    namespace: bool = True,
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=summary,
                                                           description=summary)
    _cluster_options(command)
    if namespace:
        _namespace_option(command)
    command.set_defaults(handler=_on_cluster(handler))
    return command


def _add_cluster_commands(commands: Any) -> None:
    ls = _cluster_command(commands, "ls", _ls, "list sandboxes (Jobs app=ci-fixer-sandbox)",
                          namespace=False)
    scope = ls.add_mutually_exclusive_group()
    _namespace_option(scope)
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="list sandboxes in every namespace")
    ls.add_argument("-o", "--output", choices=("wide", "json"),
                    help="wide: add node, image, owner, cpu and memory; json: every field")

    gc = _cluster_command(commands, "gc", _gc,
                          "delete sandboxes that finished, outlived their deadline or whose "
                          "owner process on this host is gone")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be deleted")

    rbac = commands.add_parser("rbac", help="install and check the sandbox RBAC manifests")
    actions = rbac.add_subparsers(dest="action", required=True)
    for action, summary in (
        ("apply", "create or update the ServiceAccounts, Role and RoleBinding"),
        ("verify", "check what you (or --service-account) may and may not do in the "
                   "namespace; exit 1 if a check fails"),
        ("uninstall", "delete what apply created"),
    ):
        command = _cluster_command(actions, action, _rbac, summary)
        if action == "verify":
            command.add_argument("--service-account", metavar="SA",
                                 help="check this ServiceAccount of the namespace (for example "
                                      "ci-fixer-app) instead of yourself")
        else:
            command.add_argument("--file", type=Path, metavar="PATH",
                                 help="manifest file (default: the one sandboxkit ships)")

    doctor = _cluster_command(commands, "doctor", _doctor,
                              "check that sandboxes can start in the namespace; exit 1 on "
                              "an error")
    doctor.add_argument("--image", help="also check this image (default: the configured one)")
    diagnose = _cluster_command(commands, "diagnose", _diagnose,
                                "explain what is wrong with a sandbox; exit 1 on an error")
    diagnose.add_argument("name", help="the sandbox (Job) name")


# --- shell: an interactive terminal in a sandbox --------------------------------------------


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``sandboxkit shell NAME [options] -- CMD...``: the arguments before the first ``--``
    and the remote command after it (None without ``--``). Split before argparse, which
    cannot put options after NAME and still leave a trailing command alone (a REMAINDER
    swallows the options, ``nargs="*"`` is satisfied empty at NAME)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def _shell(args: argparse.Namespace) -> int:
    from .backends.terminal import default_shell, relay
    from .config import SandboxConfig
    from .factory import attach_sandbox

    overrides = {key: value for key, value in (
        ("namespace", args.namespace), ("execution_backend", args.backend),
        ("kubeconfig", args.kubeconfig), ("context", args.context)) if value is not None}
    sandbox = attach_sandbox(args.name, SandboxConfig.resolve(None, **overrides))
    argv = args.remote_command or default_shell(sandbox)
    return relay(sandbox.open_terminal(argv))


def _add_shell_command(commands: Any) -> None:
    summary = ("an interactive terminal in a running sandbox, like `kubectl exec -it`; "
               "exits with the remote command's status")
    shell = commands.add_parser("shell", help=summary, description=summary)
    _cluster_options(shell)
    _namespace_option(shell)
    shell.add_argument("--backend", choices=("kubernetes", "docker", "local"),
                       help="where the sandbox runs (default: $EXECUTION_BACKEND, else "
                            "kubernetes)")
    shell.add_argument("name", metavar="NAME", help="the sandbox's name")
    shell.add_argument("remote_command", nargs="*", default=[], metavar="-- CMD",
                       help="command to run, after -- (default: /bin/bash if the image has "
                            "it, else /bin/sh)")
    shell.set_defaults(handler=_shell)


# --- demo and lab: the configured cluster, else a devcluster started for the run -----------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    run(**{key: value for key, value in vars(args).items() if key in ("namespace", "image")})
    return 0


def _lab(args: argparse.Namespace) -> int:
    from .lab import run_lab

    return run_lab(args.directory, port=args.port, no_browser=args.no_browser,
                   allow_root=args.allow_root)


def _add_local_commands(commands: Any) -> None:
    """Defaults live in sandboxkit.demo (not imported here: it loads the client); the help
    repeats them, and tests/unit/test_readme.py checks that it does."""
    summary = ("apply RBAC, run commands in a sandbox, diagnose a broken one and tear it all "
               "down, on the configured cluster or a devcluster started for the run")
    demo = commands.add_parser("demo", help=summary, description=summary)
    demo.add_argument("-n", "--namespace", default=argparse.SUPPRESS, metavar="NS",
                      help="namespace, created and deleted if absent (default: sandboxkit-demo)")
    demo.add_argument("--image", default=argparse.SUPPRESS,
                      help="image of the working sandbox (default: busybox:1.36)")
    demo.set_defaults(handler=_demo)
    summary = ("JupyterLab on the notebooks, with KUBECONFIG set to the configured cluster "
               "or a devcluster that stops with it")
    lab = commands.add_parser("lab", help=summary, description=summary)
    lab.add_argument("directory", nargs="?", type=Path, default=Path("notebooks"),
                     help="notebook directory (default: notebooks)")
    lab.add_argument("--port", type=int, help="JupyterLab's port (default: its own, 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--allow-root", action="store_true",
                     help="run as root (JupyterLab refuses to otherwise)")
    lab.set_defaults(handler=_lab)


# --- the parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too), its ``error:`` line kept one line: argparse
    quotes unrecognized arguments as typed, so one holding a newline would split it."""

    def error(self, message: str) -> NoReturn:
        from .errors import one_line

        super().error(one_line(message))


def _parser() -> argparse.ArgumentParser:
    from .devcluster.process import DEFAULT_DIR

    parser = _Parser(
        prog="sandboxkit", description="Run and debug code in Kubernetes sandboxes."
    )
    parser.add_argument("--kubeconfig", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--context", metavar="NAME", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_cluster_commands(commands)
    _add_pool_commands(commands)
    _add_shell_command(commands)
    _add_local_commands(commands)
    devcluster = commands.add_parser(
        "devcluster", help="a local Kubernetes API server for tests and offline use"
    )
    actions = devcluster.add_subparsers(dest="action", required=True)
    for name, handler, summary in (
        ("start", _devcluster_start, "start in the background and print export KUBECONFIG=..."),
        ("stop", _devcluster_stop, "stop it and every pod process it runs"),
        ("status", _devcluster_status, "tell whether it runs and where"),
        ("run", _devcluster_run, "run in the foreground until interrupted"),
    ):
        action = actions.add_parser(name, help=summary, description=summary)
        action.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                            help=f"state directory (default: {DEFAULT_DIR})")
        if name in ("start", "run"):
            action.add_argument("--port", type=int, default=0,
                                help="HTTPS port on 127.0.0.1 (default: any free port)")
        action.set_defaults(handler=handler)
    return parser


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``shell``, what follows ``--`` is the remote command, verbatim."""
    head, command = split_command(argv)
    if command is not None and _subcommand(head) == "shell":
        args = _parser().parse_args(head)
        args.remote_command = command
        return args
    return _parser().parse_args(argv)


def _subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand's name: the first word that is neither a global option nor its value
    (``--kubeconfig PATH``, ``--context NAME``)."""
    words = iter(argv)
    for word in words:
        if word in ("--kubeconfig", "--context"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sandboxkit`` console script; returns the exit status."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        known = _error_line(exc)
        if known is None:
            raise
        message, status = known
        print(f"error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
