"""The ``sandboxkit`` command.

Subcommands import what they need when they run, so ``sandboxkit --help`` stays fast and the
CLI never pulls in IPython or ipywidgets.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _devcluster_start(args: argparse.Namespace) -> int:
    from .devcluster.process import DevClusterError, start

    try:
        info, started = start(args.dir, args.port)
    except DevClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verb = "started" if started else "already running"
    print(f"# devcluster {verb} at {info.url} (pid {info.pid})", file=sys.stderr)
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
    try:
        return run(args.dir, args.port)
    except OSError as exc:  # e.g. the port is taken: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    from .devcluster.process import DEFAULT_DIR

    parser = argparse.ArgumentParser(
        prog="sandboxkit", description="Run and debug code in Kubernetes sandboxes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sandboxkit`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
