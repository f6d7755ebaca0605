"""The manual: docs/cli.md is the commands' own help, and docs/ builds with mkdocs --strict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from support.run import ROOT


def _mkdocs(*args: str) -> subprocess.CompletedProcess[str]:
    # No -q: with it, mkdocs 1.6 drops the warnings that --strict counts.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=100)


def test_cli_reference_is_what_the_commands_print() -> None:
    generated = subprocess.run([sys.executable, "scripts/cli_docs.py"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=60).stdout
    assert "### `loadkit run`" in generated and "--metrics-port" in generated
    assert "### `loadkit sim`" in generated and "--ttft-ms" in generated  # argparse's help
    assert (ROOT / "docs" / "cli.md").read_text() == generated, \
        "regenerate: python scripts/cli_docs.py > docs/cli.md"


def test_docs_build_strict(tmp_path: Path) -> None:
    done = _mkdocs("-d", str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()


def test_nav_lists_every_page() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for page in entry.values()}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The check above can fail: a link to a missing page aborts the build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](missing.md)\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"site_name: x\ndocs_dir: {docs}\nsite_dir: {tmp_path / 'site'}\n")
    done = _mkdocs("-f", str(config))
    assert done.returncode != 0
    assert "missing.md" in done.stderr


def test_readme_links_point_at_files() -> None:
    for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md"):
        text = (ROOT / name).read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (ROOT / target).exists(), f"{name}: link to {target}, which is missing"
