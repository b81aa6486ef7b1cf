""".github/workflows/ci.yml is valid YAML with the two jobs the issue asks for, and runs the
same commands as .ci/run and the README (actionlint cannot be fetched offline, so this is
the check it gets here)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PYTEST = ".venv/bin/python -m pytest"


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())


def _runs(job: dict[str, Any]) -> list[str]:
    """Every shell line the job runs, continuation lines joined."""
    lines = []
    for step in job["steps"]:
        lines += step.get("run", "").replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _ci_run_pytest() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    found = [line.split("||")[0].strip() for line in lines if line.strip().startswith(PYTEST)]
    assert len(found) == 1, found
    return found[0]


def test_triggers_and_jobs() -> None:
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    assert set(workflow["jobs"]) == {"suite", "kind"}
    for job in workflow["jobs"].values():
        assert job["runs-on"] == "ubuntu-latest" and job["timeout-minutes"] > 0
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:  # actions pinned to a major version
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_suite_job_is_ci_run() -> None:
    runs = _runs(_workflow()["jobs"]["suite"])
    assert any(line.endswith(" .ci/run") or line == ".ci/run" for line in runs), runs


def test_kind_job_creates_a_cluster_applies_rbac_and_runs_the_cluster_tests() -> None:
    job = _workflow()["jobs"]["kind"]
    assert any(step.get("uses", "").startswith("helm/kind-action@") for step in job["steps"])
    runs = _runs(job)
    text = "\n".join(runs)
    assert "pip install -q -e '.[dev]'" in text  # as .ci/run installs
    applies = [shlex.split(line) for line in runs if line.startswith("kubectl apply")]
    assert applies, runs
    for argv in applies:
        assert (ROOT / argv[argv.index("-f") + 1]).is_file()
    tests = [line.split(" ", 1)[1] for line in runs
             if line.startswith("SANDBOXKIT_TEST_KUBECONFIG=~/.kube/config ")]
    assert tests, runs
    for line in tests:  # .ci/run's command, narrowed by markers only
        assert line.startswith(_ci_run_pytest()), line
        extra = shlex.split(line[len(_ci_run_pytest()):])
        assert extra[0] == "-m" and len(extra) == 2, line
        assert set(re.split(r"\s+(?:or|and)\s+", extra[1])) <= _markers(), line


def _markers() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {entry.split(":")[0] for entry in config["tool"]["pytest"]["ini_options"]["markers"]}


def test_kind_job_runs_the_readmes_real_cluster_commands() -> None:
    """Line for line, except `kind create cluster`, which helm/kind-action runs."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Pointing it at a real cluster"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    expected = [line for line in lines if line and line != "kind create cluster"]
    assert len(expected) >= 4, expected
    runs = _runs(_workflow()["jobs"]["kind"])
    assert [line for line in expected if line not in runs] == []
