"""docs/run-json.md documents every key a real run.json has (and no key it lacks)."""

from __future__ import annotations

import re

from conftest import ROOT

DOC = (ROOT / "docs" / "run-json.md").read_text()


def documented(section: str) -> set[str]:
    body = DOC.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for row in re.findall(r"^\| (.+?) \|", body, flags=re.M):
        keys |= set(re.findall(r"`([a-z_]+)`", row))
    return keys


def test_every_run_json_key_is_documented(run):
    result, out = run({
        "name": "doc", "duration": 2, "simulator": {"preset": "fast"},
        "arrival": {"rate": 20}, "goodput": ["ttft <= 1s"],
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 20, "max_tokens": 4}],
        "slos": ["ttft p50 < 5s in every 1s window", "goodput >= 50%"],
    })
    assert set(result) == documented("Top level")
    for slo in result["slos"]:
        assert set(slo) == documented("`slos[]`")
    assert result["schema_version"] == 1
    # telemetry.csv: one row per interval, the simulator's GPU view joined in.
    lines = (out / "telemetry.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["start_s", "end_s"] and "gpu.util" in header
    assert len(lines) - 1 == len(result["timeseries"])
