"""``python -m sandboxkit.devcluster run --dir DIR [--port N] [--ready-fd FD] [--watch-pid PID]``:
the server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cluster import run
from .process import DEFAULT_DIR


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxkit.devcluster")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, default=None,
                        help="write 'ready URL' to this file descriptor once serving")
    parser.add_argument("--watch-pid", type=int, default=None,
                        help="stop once the process with this pid exits")
    args = parser.parse_args()
    return run(args.dir, args.port, ready_fd=args.ready_fd, watch_pid=args.watch_pid)


sys.exit(main())
