"""The RunResult model: value types, loading and the messages a damaged file gets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loadkit.errors import InputError
from loadkit.result import ALL, RunResult, Scope, Verdict, load_run, parse_run
from support.run import ROOT, cli

SAVED = json.loads((ROOT / "tests" / "data" / "run-v1-0.1.0.json").read_text())


def test_scope_is_a_parsed_string() -> None:
    s = Scope.of("tenant", "acme:eu")
    assert s == "tenant:acme:eu" and s.kind == "tenant" and s.name == "acme:eu"
    assert ALL.kind == "all" and ALL.name == ""
    by_scope: dict[str, int] = {Scope("phase:spike"): 1}
    assert by_scope["phase:spike"] == 1  # a dict key like its text
    for bad in ("tenant:", "everything", "team:x", ""):
        with pytest.raises(ValueError, match="not a scope"):
            Scope(bad)


def test_overall_verdict() -> None:
    P, F, I = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE  # noqa: E741 - one letter each
    assert Verdict.overall([]) == P and Verdict.overall([P, P]) == P
    assert Verdict.overall([P, I]) == I and Verdict.overall([I, F, P]) == F


def test_model_reads_typed_parts() -> None:
    r = parse_run(SAVED)
    assert isinstance(r.verdict, Verdict) and r.verdict == "inconclusive"
    assert all(isinstance(s.scope, Scope) for s in r.slos)
    lat = r.summary("latency")
    assert lat is not None and lat.p99_9 == SAVED["series"]["latency"]["all"]["p99.9"]
    assert r.counts.completed == SAVED["counts"]["completed"]


@pytest.mark.parametrize("damage, key", [
    (lambda d: d.pop("counts"), "counts"),
    (lambda d: d["slos"][0].update(verdict="maybe"), "slos.0.verdict"),
    (lambda d: d["slos"][0].update(scope="team:x"), "slos.0.scope"),
    (lambda d: d["series"]["latency"]["all"].update(count="many"), "series.latency.all.count"),
])
def test_a_damaged_file_names_the_key(damage: Callable[[dict[str, Any]], object],
                                      key: str) -> None:
    document = json.loads(json.dumps(SAVED))
    damage(document)
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        parse_run(document)


def test_other_versions_say_which_they_are() -> None:
    with pytest.raises(InputError, match="schema_version 3; this loadkit reads versions "
                                         "1, 2; upgrade loadkit"):
        parse_run({**SAVED, "schema_version": 3})
    with pytest.raises(InputError, match="not a loadkit run.json"):
        parse_run({"hello": 1})


def test_unknown_keys_are_ignored_within_a_version() -> None:
    r = parse_run({**SAVED, "added_later": {"x": 1}})
    assert r == parse_run(SAVED)


def test_cli_report_and_compare_on_a_damaged_file_exit_2(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "run.json").write_text(json.dumps(SAVED))
    document = json.loads(json.dumps(SAVED))
    del document["slos"][1]["threshold"]
    (bad / "run.json").write_text(json.dumps(document))
    for args in (("report", str(bad)), ("compare", str(good), str(bad))):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "slos.1.threshold: Field required" in done.stderr
        assert "Traceback" not in done.stderr
    assert load_run(good) == parse_run(SAVED)


def test_to_json_is_a_fixed_point() -> None:
    r = parse_run(SAVED)
    assert RunResult.from_json(r.to_json()) == r
    assert r.to_json() == RunResult.from_json(r.to_json()).to_json()
