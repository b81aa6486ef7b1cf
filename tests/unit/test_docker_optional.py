"""The Docker SDK is an optional extra: without it, the Docker backend says how to get it
(BackendUnavailable naming ``pip install 'sandboxkit[docker]'``) instead of failing with a
bare ImportError, and everything else still imports.

Each case runs in a fresh interpreter where ``sys.modules["docker"] = None`` makes importing
the SDK fail exactly as if it were not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HIDE_SDK = """
    import sys
    sys.modules["docker"] = None
    from sandboxkit.errors import BackendUnavailable
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(HIDE_SDK + code)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("how", [
    "import sandboxkit.backends.docker",
    "from sandboxkit.backends.docker import DockerSandbox",
    "import sandboxkit; sandboxkit.create_sandbox(execution_backend='docker')",
], ids=["import", "from-import", "execution_backend"])
def test_docker_backend_without_the_sdk_names_the_extra(how: str) -> None:
    done = run(f"""
    try:
        {how}
    except BackendUnavailable as exc:
        print("refused:", exc)
        assert isinstance(exc.__cause__, ImportError), repr(exc.__cause__)
    """)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout, done.stdout
    assert "pip install 'sandboxkit[docker]'" in done.stdout


def test_other_backends_import_without_the_sdk() -> None:
    done = run("""
    import sandboxkit
    from sandboxkit.backends import backend_class
    assert backend_class("local").__name__ == "LocalSandbox"
    assert backend_class("kubernetes").__name__ == "KubernetesSandbox"
    assert sys.modules.get("docker") is None
    print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
