"""A run's result built from recorded requests (loadkit.result.build_result)
and the outputs rendered from it (loadkit.report: JUnit, Markdown, HTML),
with what the server sent escaped in every one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from loadkit.errors import ErrorKind
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.report import render_junit, render_markdown
from loadkit.report.html import render_html
from loadkit.result import build_result
from loadkit.workload.slo_spec import parse_objective

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> | pipe'


def sample_result() -> dict:
    rec = Recorder(start_ns=0)
    ms = 1_000_000
    for i in range(50):
        rec.record(RequestRecord("t", "chat", "measure", intended=i * ms, sent=i * ms,
                                 end=(i + 20 + i % 7) * ms))
    rec.record(RequestRecord("t", "chat", "measure", intended=0, sent=0, end=ms,
                             error=ErrorKind.HTTP_5XX, message=f"HTTP 500: {HOSTILE}"))
    rec.rotate(2000 * ms)
    meta = {"run_id": "r1", "loadkit_version": "0", "host": "h", "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:00:02+00:00", "target": "http://127.0.0.1:1",
            "workload": {"name": "w|x", "path": "w.yaml", "sha256": "ab" * 32, "seed": 1,
                         "duration_s": 2.0, "warmup_s": 0.0},
            "phases": [{"name": "measure", "start_s": 0.0, "duration_s": 2.0, "warmup": False}],
            "closed_loop": False}
    objectives = [parse_objective(t) for t in
                  ("latency p50 < 1s", "latency p50 < 1ms", "latency p99 < 1s")]
    return build_result(meta=meta, recorder=rec,
                        scheduled=Counter({("measure", "t"): 51}),
                        declared_rates={("t", "measure"): 25.0}, unfinished=0,
                        objectives=objectives, health={"cpu_percent": 1.0, "steal_percent": 0.0},
                        lateness_bound_ms=10.0, allow_saturated=False)


def test_result_verdict_and_junit():
    r = sample_result()
    assert [s["verdict"] for s in r["slos"]] == ["pass", "fail", "inconclusive"]
    assert r["verdict"] == "fail" and r["trusted"]
    assert r["counts"]["errors"] == 1 and r["errors"]["by_kind"]["http_5xx"] == 1
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = cases[2].find("failure")
    assert "observed" in failure.get("message") and "threshold < 1 ms" in failure.get("message")


def test_markdown_and_html_escape_what_the_server_sent():
    r = sample_result()
    md = render_markdown(r)
    assert "| `latency p50 < 1ms` | all |" in md and "w\\|x" in md
    html = render_html(r)
    assert "<script>alert" not in html and 'onerror="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "FAIL" in html and "latency p50 &lt; 1ms" in html
