"""Sandbox.sync against a full upload of the same tree, measured in one run.

    .venv/bin/python bench/sync_bench.py [--files 1000] [--mib 20] [--rounds 5]
                                         [--backend kubernetes|local] [--kubeconfig PATH]

The tree: ``--files`` files of random bytes (``--mib`` MiB in all) in 20 directories.
Rows (median of ``--rounds`` where repeated), each also as a ratio to the baseline, a full
``Sandbox.upload`` of the tree to a fresh directory:

* first sync into an empty directory (manifest, one tar upload, baseline copy);
* resync with nothing changed (the manifest command only: find, stat, sha256sum);
* resync with one file changed (manifest, a one-file upload, a one-file baseline copy).

Kubernetes: ``--kubeconfig``/``$KUBECONFIG``, else a devcluster started for the run (see
backends_bench.py). The targets are both resyncs under 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from backends_bench import kubernetes_sandbox

from sandboxkit import create_sandbox
from sandboxkit.backends.base import Sandbox

MIB = 1 << 20


def make_tree(root: Path, files: int, total: int) -> list[Path]:
    size = total // files
    paths = []
    for index in range(files):
        path = root / f"d{index % 20:02d}" / f"f{index:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@contextlib.contextmanager
def chosen_sandbox(backend: str, kubeconfig: str | None) -> Iterator[Sandbox]:
    if backend == "kubernetes":
        with kubernetes_sandbox(kubeconfig) as sandbox:
            yield sandbox
    else:
        with create_sandbox(execution_backend="local") as sandbox:
            yield sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=["kubernetes", "local"], default="kubernetes")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sandboxkit-sync-bench-") as directory, \
            chosen_sandbox(args.backend, args.kubeconfig) as sandbox:
        local = Path(directory, "tree")
        paths = make_tree(local, args.files, args.mib * MIB)
        scratch = sandbox.run_command('printf %s "${TMPDIR:-/tmp}"', check=True).stdout
        uploads, firsts, unchanged, one = [], [], [], []
        for round_ in range(args.rounds):
            uploads.append(seconds(lambda r=round_: sandbox.upload(local, f"{scratch}/up{r}")))
            remote = f"{scratch}/sync{round_}"
            firsts.append(seconds(lambda r=remote: sandbox.sync(local, r)))
            unchanged.append(seconds(lambda r=remote: sandbox.sync(local, r)))
            paths[round_].write_bytes(os.urandom(16))  # one file, new size and content
            one.append(seconds(lambda r=remote: sandbox.sync(local, r)))
            sandbox.run_command(f"rm -rf {scratch}/up{round_} {scratch}/sync{round_}")
        base = statistics.median(uploads)
        print(f"{args.backend}: {args.files} files, {args.mib} MiB, median of {args.rounds}")
        print(f"{'full upload (baseline)':<32} {base * 1000:8.0f} ms   1.00x")
        for label, samples in (("first sync", firsts), ("resync, nothing changed", unchanged),
                               ("resync, one file changed", one)):
            value = statistics.median(samples)
            print(f"{label:<32} {value * 1000:8.0f} ms   {value / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
