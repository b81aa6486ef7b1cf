"""``import sandboxkit`` works where IPython and ipywidgets are missing (a plain script, an
agent's container), and the magics load where only ipywidgets is missing.

Each case runs in a fresh interpreter where ``sys.modules[name] = None`` makes importing the
hidden packages fail exactly as if they were not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_without_ipython_or_ipywidgets() -> None:
    done = run("""
        import sys
        sys.modules["IPython"] = sys.modules["ipywidgets"] = None
        import sandboxkit
        assert callable(sandboxkit.load_ipython_extension)
        assert callable(sandboxkit.unload_ipython_extension)
        assert sandboxkit.create_sandbox and sandboxkit.KubernetesSandbox
        import sandboxkit.widgets
        loaded = [m for m in ("IPython", "ipywidgets", "traitlets") if sys.modules.get(m)]
        assert not loaded, loaded
        try:
            sandboxkit.load_ipython_extension(object())
        except ImportError as exc:
            print("refused:", exc)
    """)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout  # the magics need IPython, and say so by ImportError


def test_magics_load_without_ipywidgets() -> None:
    done = run("""
        import sys
        sys.modules["ipywidgets"] = None
        from IPython.core.error import UsageError
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "sandboxkit")
        line = shell.magics_manager.magics["line"]
        cell = shell.magics_manager.magics["cell"]
        names = ["sandbox_up", "sandbox_exec", "sandbox_down", "sandbox_ls", "sandbox_status",
                 "sandbox_logs", "sandbox_upload", "sandbox_download", "sandbox_attach",
                 "sandbox_diagnose", "sandbox_rbac", "sandbox_shell"]
        missing = [n for n in names if n not in line]
        assert not missing, missing
        assert "sandbox_exec" in cell and "sandbox_write" in cell
        shell.run_line_magic("config", "SandboxMagics.image = 'python:3.11'")
        magics = shell.magics_manager.registry["SandboxMagics"]
        assert magics.sandbox_config().image == "python:3.11"
        try:
            shell.run_line_magic("sandbox_exec", "true")
        except UsageError as exc:
            print("usage:", exc)
        shell.run_line_magic("unload_ext", "sandboxkit")
        assert "sandbox_up" not in shell.magics_manager.magics["line"]
        assert sys.modules["ipywidgets"] is None
    """)
    assert done.returncode == 0, done.stderr
    assert "usage: no sandbox in this kernel" in done.stdout
