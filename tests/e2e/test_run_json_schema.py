"""run.json: the model, its generated schema and the files real runs write agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadkit.result import RunResult
from loadkit.result.schema import render
from support.run import ROOT, RUN_VALIDATOR, RunWorkload, cli


def test_docs_schema_is_the_one_the_model_generates() -> None:
    assert (ROOT / "docs" / "run.schema.json").read_text() == render(), \
        "regenerate: python -m loadkit.result.schema > docs/run.schema.json"


def test_docs_name_every_key_of_run_json() -> None:
    """docs/run-json.md says it lists every key: each field of run.json's
    top level and of its tables' sections is named there, in backticks."""
    import dataclasses

    from loadkit.result.model import Counts, Interval, Tokens
    from loadkit.result.telemetry import Telemetry

    text = (ROOT / "docs" / "run-json.md").read_text()
    fields = {"top level": list(RunResult.model_fields), "counts": list(Counts.model_fields),
              "tokens": list(Tokens.model_fields),
              "timeseries": [f.name for f in dataclasses.fields(Interval)],
              "telemetry": list(Telemetry.model_fields)}
    missing = {part: [f for f in names if f"`{f}`" not in text]
               for part, names in fields.items()}
    assert not any(missing.values()), f"not in docs/run-json.md: {missing}"


@pytest.mark.slow
def test_a_real_run_validates_and_round_trips(run: RunWorkload) -> None:
    result, out = run({
        "name": "doc", "duration": 2, "simulator": {"preset": "fast"},
        "arrival": {"rate": 20}, "goodput": ["ttft <= 1s"],
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 20, "max_tokens": 4}],
        "slos": ["ttft p50 < 5s in every 1s window", "goodput >= 50%"],
    })
    RUN_VALIDATOR.validate(result)
    text = (out / "run.json").read_text()
    model = RunResult.from_json(text)
    assert RunResult.from_json(model.to_json()) == model
    assert model.to_json() == text  # what is saved is exactly the model's dump
    windowed = next(s for s in model.slos if s.windows is not None)
    assert windowed.windows is not None
    assert windowed.windows.total == len(windowed.windows.series) >= 2
    # telemetry.csv: one row per interval, the simulator's GPU view joined in.
    lines = (out / "telemetry.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["start_s", "end_s"] and "gpu.util" in header
    assert len(lines) - 1 == len(model.timeseries)


def kept(old: Any, new: Any) -> bool:
    """`new` holds everything `old` did: the same values, perhaps more keys."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and kept(v, new[k]) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(old) == len(new) and all(map(kept, old, new))
    return old == new


@pytest.mark.slow
def test_a_run_json_from_the_previous_release_loads_and_rerenders(tmp_path: Path) -> None:
    """tests/data/run-v1-0.1.0.json was written by loadkit 0.1.0 before the model."""
    saved = (ROOT / "tests" / "data" / "run-v1-0.1.0.json").read_text()
    RUN_VALIDATOR.validate(json.loads(saved))
    old, again = json.loads(saved), json.loads(RunResult.from_json(saved).to_json())
    # Every key it had comes back with its value, at every depth; keys added
    # since may join it (new sections, new optional fields).
    assert kept(old, again)
    (tmp_path / "run.json").write_text(saved)
    done = cli("report", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "INCONCLUSIVE" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "report.html").stat().st_size > 10_000
