"""The CI templates in examples/: valid YAML whose loadkit steps work
against the embedded simulator as written (run, then compare with a
baseline), executed here by bash with a short workload."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.run import ROOT

TEMPLATES = ROOT / "examples" / "ci"
SHORT = """\
name: gate
duration: 2s
simulator: {preset: fast}
arrival: {rate: 20}
scenarios:
  - {name: chat, kind: openai-chat, stream: true, prompt_tokens: 20, max_tokens: 8}
slos: ["ttft p50 < 5s"]
"""


def github_steps() -> dict[str, str]:
    doc = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    return {s["name"]: s.get("run", "") for s in doc["jobs"]["gate"]["steps"] if "name" in s}


def bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PATH": path, **env})


@pytest.mark.slow
def test_github_workflow_runs_and_compares_against_the_simulator(tmp_path: Path) -> None:
    steps = github_steps()
    (tmp_path / "gate.yaml").write_text(SHORT)
    summary = tmp_path / "summary.md"
    env = {"WORKLOAD": "gate.yaml", "TARGET": "", "GITHUB_STEP_SUMMARY": str(summary),
           "LOADKIT_RUN_ALLOW_SATURATED": "1"}
    done = bash(steps["Run the workload"], tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "reports" / "candidate" / "run.json").exists()
    # The last release's run: here, the same run kept as a baseline.
    shutil.copytree(tmp_path / "reports" / "candidate", tmp_path / "reports" / "baseline")
    done = bash(steps["Compare with the last release"], tmp_path, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NO SIGNIFICANT CHANGE" in summary.read_text()
    assert (tmp_path / "reports" / "compare" / "compare-junit.xml").exists()


def test_gitlab_job_is_valid_and_uses_real_commands() -> None:
    doc = yaml.safe_load((TEMPLATES / "gitlab-ci.yml").read_text())
    job = doc["loadkit-gate"]
    script = "\n".join(job["script"])
    assert "loadkit run" in script and "loadkit compare" in script
    assert "reports/candidate/junit.xml" in job["artifacts"]["reports"]["junit"]
    done = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
