"""A kernel's exit deletes the sandboxes it started, in a real interpreter exit.

``%unload_ext`` (tests/integration/test_magics.py) runs the same shutdown while the process
is alive; at exit two things differ, and each broke it once: a thread pool refuses new
work once the interpreter shuts down, and the kubernetes client's own exit handler deletes
the CA file it wrote from the kubeconfig's certificate data, which the delete needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client
from sandbox_support import SERVICE_ACCOUNT

SCRIPT = """\
ip = get_ipython()
ip.run_line_magic("load_ext", "sandboxkit")
for setting in ("namespace = '{namespace}'", "image = 'busybox'", "cpu = '10m:1'",
                "memory = '16Mi:2Gi'"):
    ip.run_line_magic("config", "SandboxMagics." + setting)
ip.run_line_magic("sandbox_up", "at-exit")
ip.run_line_magic("sandbox_up", "kept --keep")
print(ip.run_line_magic("sandbox_status", "at-exit"))
"""


def test_kernel_exit_deletes_unkept_sandboxes(kubeconfig: Path, api_client: Any,
                                              namespace: str, tmp_path: Path) -> None:
    client.CoreV1Api(api_client).create_namespaced_service_account(
        namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    script = tmp_path / "exit.ipy"
    script.write_text(SCRIPT.format(namespace=namespace))
    batch = client.BatchV1Api(api_client)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "IPython", "--quick", str(script)],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "IPYTHONDIR": str(tmp_path)},
            capture_output=True, text=True, timeout=120, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "<StatusPanel at-exit: Running>" in output
        assert "sandboxkit: deleted at-exit" in output, output
        assert "Traceback" not in output and "could not delete" not in output, output
        jobs = {job.metadata.name: job for job in batch.list_namespaced_job(namespace).items}
        # Deleted with Foreground propagation: gone, or still finalizing its pod.
        assert "at-exit" not in jobs or jobs["at-exit"].metadata.deletion_timestamp is not None
        assert jobs["kept"].metadata.deletion_timestamp is None  # --keep outlives the kernel
    finally:
        for job in batch.list_namespaced_job(namespace).items:
            batch.delete_namespaced_job(job.metadata.name, namespace,
                                        propagation_policy="Foreground")
