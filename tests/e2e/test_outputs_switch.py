"""`--outputs` is one switch for every result: a run's (tests/e2e/test_cli.py),
a comparison's and a capacity search's. The JSON is always written; the
reports asked for beside it, and nothing else; a name it does not know
exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadkit.capacity import regate
from loadkit.capacity.runner import build
from loadkit.capacity.search import Outcome, Settings, Status, search
from loadkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAVED_RUN = ROOT / "tests" / "data" / "run-v1-0.1.0.json"


def test_compare_writes_only_the_reports_asked_for(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(SAVED_RUN), str(SAVED_RUN), "--out", str(out),
                 "--outputs", "json,junit", "-q"]) == 0
    assert {p.name for p in out.iterdir()} == {"compare.json", "compare-junit.xml"}
    assert f"report: {out / 'compare.json'}" in capsys.readouterr().out
    assert json.loads((out / "compare.json").read_text())["verdict"] == "no_change"
    assert main(["compare", str(SAVED_RUN), str(SAVED_RUN), "--outputs", "pdf"]) == 2


def test_capacity_writes_only_the_reports_asked_for(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A saved search judged again (no probe), its files written as asked."""
    first = tmp_path / "first"
    s = Settings(start=10, low=10, high=80, precision=0.1, probe_s=10, budget_s=600)
    found = search(lambda p: Outcome(Status.PASS if p.value <= 41 else Status.FAIL, 10.0), s)
    (tmp_path / "capacity.json").write_text(regate(build(found, [], s, "req/s"), None,
                                                   None).to_json())
    assert main(["capacity", str(tmp_path / "capacity.json"), "--out", str(first),
                 "--outputs", "md"]) == 0
    assert {p.name for p in first.iterdir()} == {"capacity.json", "capacity.md"}
    assert f"report: {first / 'capacity.md'}" in capsys.readouterr().out
    everything = tmp_path / "all"
    assert main(["capacity", str(tmp_path / "capacity.json"), "--out", str(everything)]) == 0
    assert {p.name for p in everything.iterdir()} == {
        "capacity.json", "capacity.md", "capacity-junit.xml", "capacity.html"}
