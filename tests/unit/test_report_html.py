"""report.html and compare.html from run.json documents: decimation bounds,
escaping of everything a server sent, telemetry states, determinism, and the
`loadkit report` command's errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadkit.cli import main
from loadkit.compare import Comparison, render_compare_html
from loadkit.outputs.decimate import decimate, decimate_points
from loadkit.outputs.html import render_html, verdict_text
from loadkit.result import parse_run
from support.synthetic_run import synthetic_day

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
            '"><svg onload=alert(1)>']
TAGS = re.compile(r"<\s*(script|img|iframe|object)\b|<svg[^>]*\sonload", re.IGNORECASE)


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return json.loads(json.dumps(synthetic_day(intervals=600, telemetry_step=1.0)))


# -- decimation -----------------------------------------------------------------------


def test_decimation_bounds_keep_extremes_and_means() -> None:
    t = np.arange(86_400, dtype=float)
    v = np.full(86_400, 50.0)
    v[40_000], v[70_000] = 9_000.0, 1.0
    env = decimate(t, v, 1000)
    assert env.decimated and len(env) <= 1000
    assert env.high.max() == 9_000.0 and env.low.min() == 1.0
    assert np.all(env.low <= env.mean) and np.all(env.mean <= env.high)
    assert np.all(np.diff(env.t) > 0) and env.t[0] >= 0 and env.t[-1] <= 86_399
    assert np.isclose(np.median(env.mean), 50.0)


def test_short_series_come_back_unchanged_without_gaps() -> None:
    env = decimate([3, 1, 2, 4], [30.0, 10.0, None, 40.0], 10)
    assert not env.decimated
    assert list(env.t) == [1, 3, 4] and list(env.high) == [10.0, 30.0, 40.0]
    assert len(decimate([], [], 5)) == 0
    pairs = decimate_points([(i * 0.25, i % 7) for i in range(40_000)], 500)
    assert len(pairs) <= 500 and pairs.high.max() == 6 and pairs.low.min() == 0
    with pytest.raises(ValueError):
        decimate([1], [1.0], 0)


# -- escaping -------------------------------------------------------------------------


def test_everything_from_a_server_is_escaped(small: dict[str, Any]) -> None:
    r = copy.deepcopy(small)
    bad = "".join(PAYLOADS)
    r["errors"]["examples"] = {"http_5xx": [f"HTTP 500: {p}" for p in PAYLOADS]}
    r["untrusted_reasons"], r["trusted"] = [bad], False
    r["target"] = bad
    r["slos"][0]["reason"] = bad
    r["telemetry"]["series"][f"vllm:num_requests_waiting{{model=\"{bad}\"}}"] = {
        "unit": bad, "kind": "gauge", "metric": "vllm:num_requests_waiting",
        "points": [[0, 1], [10, 3]]}
    r["telemetry"]["sources"].append({"kind": "prometheus", "target": bad, "status": "error",
                                      "reason": bad, "samples": 0})
    r["telemetry"]["gpus"] = [{"index": 0, "name": bad}]
    r["workload"]["spec"] = {"headers": {"x": bad}}
    html = render_html(parse_run(r))
    assert not TAGS.search(html), TAGS.search(html)
    assert "could not be drawn" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    # the chart drew the server's label as text, escaped
    metrics_svg = html[html.index('id="chart-server-metrics"'):]
    assert "vllm:num_requests_waiting{model=&quot;&lt;script&gt;" in metrics_svg or \
        "vllm:num_requests_waiting{model=\"&lt;script&gt;" in metrics_svg


def test_tenant_names_in_chart_labels_are_escaped(small: dict[str, Any]) -> None:
    r = copy.deepcopy(small)
    stats = r["series"]["latency"]["all"]
    r["series"]["latency"] = {"all": stats, "tenant:<b>a</b>": stats, "tenant:b&c": stats}
    r["isolation"] = {"<b>a</b>": {"ratio": 1.5, "p99_spike_ms": 30.0, "p99_quiet_ms": 20.0,
                                   "samples_spike": 2000, "samples_quiet": 2000,
                                   "spike_phases": ["s"], "quiet_phases": ["q"]}}
    html = render_html(parse_run(r))
    assert 'id="chart-tenants"' in html and "could not be drawn" not in html
    assert "<b>" not in html and "&lt;b&gt;a&lt;/b&gt;" in html and "b&amp;c" in html


# -- content --------------------------------------------------------------------------


@pytest.mark.slow
def test_telemetry_available_unavailable_or_absent(small: dict[str, Any]) -> None:
    html = render_html(parse_run(small))
    assert 'id="chart-latency-time"' in html
    assert "GPU util (%)" in html and "GPU power (W)" in html
    off = {**small, "telemetry": {"available": False, "sources": [
        {"kind": "nvml", "target": "local", "status": "error", "reason": "no NVIDIA driver",
         "samples": 0}]}}
    html = render_html(parse_run(off))
    assert "telemetry unavailable: nvml local: no NVIDIA driver" in html
    assert "GPU util (%)" not in html
    gone = {k: v for k, v in small.items() if k != "telemetry"}
    html = render_html(parse_run(gone))
    assert 'id="telemetry"' not in html and "GPU util (%)" not in html


@pytest.mark.slow
def test_rendering_is_deterministic_and_complete(small: dict[str, Any]) -> None:
    html = render_html(parse_run(small))
    assert html == render_html(parse_run(json.loads(json.dumps(small))))
    for section in ("verdict", "slos", "spectrum", "over-time", "throughput", "tokens",
                    "errors", "health", "phases", "meta"):
        assert f'id="{section}"' in html, section
    assert "0" * 40 in html and "ab" * 32 in html  # git commit, workload hash
    assert "Verdict: PASS." in html and "All 1 SLOs passed." in html


def test_verdict_sentences(small: dict[str, Any]) -> None:
    slo = small["slos"][0]
    fail = parse_run({**small, "slos": [{**slo, "verdict": "fail"},
                                        {**slo, "verdict": "inconclusive"}]})
    assert verdict_text(fail) == ("1 of 2 SLOs failed: latency p99 < 1s (all). "
                                  "1 more could not be decided.")
    undecided = parse_run({**small, "slos": [{**slo, "verdict": "inconclusive"}]})
    assert verdict_text(undecided).startswith("No SLO failed, but 1 of 1 could not be decided")
    untrusted = parse_run({**small, "trusted": False, "untrusted_reasons": ["generator saturated"]})
    assert verdict_text(untrusted).startswith("This run cannot be trusted, whatever its SLOs "
                                              "say: generator saturated.")
    no_slos = parse_run({**small, "slos": []})
    assert verdict_text(no_slos) == "No SLOs were declared, so nothing could fail."


# -- compare --------------------------------------------------------------------------


def test_compare_page_rows_charts_and_escaping(small: dict[str, Any]) -> None:
    slower = copy.deepcopy(small)
    for iv in slower["timeseries"]:
        iv["latency_p99_ms"] *= 1.3
    base, cand = parse_run(small), parse_run(slower)
    side = {"run_id": "r", "workload": "w", "started_at": "t", "target": "x", "verdict": "pass"}
    row = {"scope": "all", "samples_base": 2000, "samples_cand": 2000}
    comparison = Comparison.model_validate({
        "verdict": "regression", "alpha": 0.05, "trusted": True, "warnings": [],
        "base": side, "cand": side, "rows": [
            {**row, "metric": "latency", "stat": "p99", "base": 212.0, "cand": 275.6,
             "change_pct": 30.0, "ci_low_pct": 25.0, "ci_high_pct": 35.0, "p_value": 0.0001,
             "tolerance_pct": 5.0, "decision": "regression"},
            {**row, "metric": PAYLOADS[0], "stat": "p50", "base": 60.0, "cand": 60.1,
             "change_pct": 0.2, "ci_low_pct": None, "ci_high_pct": None, "p_value": None,
             "tolerance_pct": 10.0, "decision": "no_change"},
            # A share: its values in %, its change and tolerance in percentage points.
            {**row, "metric": "error_rate", "stat": "rate", "base": 0.0, "cand": 0.1364,
             "change_pct": 13.64, "ci_low_pct": 12.0, "ci_high_pct": None, "p_value": 1e-20,
             "tolerance_pct": 0.5, "decision": "regression", "unit": "%"}]})
    html = render_compare_html(comparison, base, cand)
    assert "✗ REGRESSION" in html and "+30%" in html and "[+25%, +35%]" in html
    assert "<td>212 ms</td><td>275.6 ms</td>" in html and "<td>±5%</td>" in html
    assert "<td>0%</td><td>13.6%</td><td>+13.6pp</td>" in html
    assert "[+12pp, +∞]" in html and "<td>&lt;1e-15</td><td>±0.5pp</td>" in html
    assert 'id="chart-compare-spectrum"' in html and 'id="chart-compare-p99"' in html
    assert "✗ regression" in html and "= no change" in html
    assert not TAGS.search(html) and "could not be drawn" not in html
    empty = parse_run({**small, "histograms": {}, "timeseries": []})
    bare = render_compare_html(comparison.model_copy(update={"rows": []}), empty, empty)
    assert "No statistics were compared." in bare and "chart-compare" not in bare


# -- loadkit report -------------------------------------------------------------------


@pytest.mark.slow
def test_report_command_rewrites_outputs(tmp_path: Path, small: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text(json.dumps(small))
    assert main(["report", str(tmp_path)]) == 0
    first = {n: (tmp_path / n).read_bytes() for n in ("report.html", "summary.md", "junit.xml")}
    assert main(["report", str(tmp_path)]) == 0
    assert first == {n: (tmp_path / n).read_bytes() for n in first}
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (None, "no run.json here"),
    ("not json", "is not valid JSON"),
    ('{"schema_version": 1, "observed": NaN}', "NaN is no JSON number"),  # Python's, not JSON's
    ('{"schema_version": 99}', "has schema_version 99"),
    ('["a list"]', "is not a loadkit run.json"),
    ('{"schema_version": 1}', "is not a complete loadkit run"),
])
def test_report_command_refuses_what_is_not_a_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_report_of_a_workload_file_says_to_give_the_run(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.yaml").write_text("name: x\n")
    assert main(["report", str(tmp_path / "w.yaml")]) == 2
    assert "(give a run's folder, or its run.json)" in capsys.readouterr().err


def test_git_commit_of_the_workload_folder(tmp_path: Path) -> None:
    from loadkit.run.execute import _git_commit

    assert _git_commit(tmp_path) is None
    here = _git_commit(Path(__file__).parent)
    assert here is None or re.fullmatch(r"[0-9a-f]{40}", here)
