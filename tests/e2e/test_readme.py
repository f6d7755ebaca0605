"""The README's promises: its two set-up commands and CI's agreement with them."""

from __future__ import annotations

import re

from support.run import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_readme_starts_with_the_two_setup_commands() -> None:
    main_job, tests = readme_commands()
    assert main_job.endswith("loadkit run workloads/steady.yaml")
    assert "pytest" in tests and "'.[dev]'" in tests


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
