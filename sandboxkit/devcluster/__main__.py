"""``python -m sandboxkit.devcluster run --dir DIR [--port N] [--ready-fd FD]``: the server."""

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
    args = parser.parse_args()
    return run(args.dir, args.port, ready_fd=args.ready_fd)


sys.exit(main())
