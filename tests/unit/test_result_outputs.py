"""A run's result assembled from recorded requests (loadkit.run.build,
loadkit.slo.evaluate) and the outputs rendered from it (loadkit.outputs:
JUnit, Markdown, HTML), with what the server sent escaped in every one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from loadkit.errors import ErrorKind
from loadkit.outputs import render_junit, render_markdown
from loadkit.outputs.departures import departure_lines
from loadkit.outputs.html import render_html
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.result import RunResult, Verdict
from loadkit.result.model import Incomplete, PhaseInfo, Reclaim, WorkloadInfo
from loadkit.run.build import Measured, health
from loadkit.slo.evaluate import evaluate_all
from loadkit.slo.scopes import Phases
from loadkit.workload.slo_spec import parse_objective

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> | pipe'


def sample_result(server_said: str = HOSTILE) -> RunResult:
    """50 answers in 20-26 ms and one HTTP 500 echoing HOSTILE, over 2 s, as
    execute.py assembles a run: three SLOs, one of each verdict."""
    rec = Recorder(start_ns=0)
    ms = 1_000_000
    for i in range(50):
        rec.record(RequestRecord("t", "chat", "measure", intended=i * ms, sent=i * ms,
                                 end=(i + 20 + i % 7) * ms))
    rec.record(RequestRecord("t", "chat", "measure", intended=0, sent=0, end=ms,
                             error=ErrorKind.HTTP_5XX, message=f"HTTP 500: {server_said}"))
    rec.rotate(2000 * ms)
    phases = [PhaseInfo(name="measure", start_s=0.0, duration_s=2.0, warmup=False)]
    measured = Measured(rec, Phases(phases))
    objectives = [parse_objective(t) for t in
                  ("latency p50 < 1s", "latency p50 < 1ms", "latency p99 < 1s")]
    slos = evaluate_all(objectives, measured.histograms, measured.counts)
    return RunResult(
        run_id="r1", loadkit_version="0", host="h", git_commit=None,
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:02+00:00",
        target="http://127.0.0.1:1", closed_loop=False,
        workload=WorkloadInfo(name="w|x", path="w.yaml", sha256="ab" * 32, seed=1,
                              duration_s=2.0, warmup_s=0.0, interval_s=1.0),
        phases=phases, verdict=Verdict.overall([s.verdict for s in slos]), trusted=True,
        untrusted_reasons=[], slos=slos,
        counts=measured.request_counts(Counter({("measure", "t"): 51}), 0),
        throughput=measured.throughput(), errors=measured.errors(), tokens=measured.tokens(),
        health=health({"cpu_percent": 1.0, "steal_percent": 0.0}, measured.lateness_p99_ms(),
                      10.0),
        series=measured.series(), timeseries=measured.timeseries(),
        histograms=measured.encoded_histograms())


def test_result_verdict_and_junit() -> None:
    r = sample_result()
    assert [s.verdict for s in r.slos] == ["pass", "fail", "inconclusive"]
    assert r.verdict == "fail" and r.trusted
    assert r.counts.errors == 1 and r.errors.by_kind["http_5xx"] == 1
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = cases[2].find("failure")
    assert failure is not None
    message = failure.get("message")
    assert message is not None
    assert "observed" in message and "threshold < 1 ms" in message


def test_control_characters_a_server_sent_are_shown_not_played() -> None:
    """An escape sequence and a NUL in an error body: junit.xml stays valid
    XML, and no output carries them raw (a terminal would obey them)."""
    r = sample_result("\x1b[31mred\x00 \x9b2J")
    (example,) = r.errors.examples["http_5xx"]
    assert example == "HTTP 500: \\x1b[31mred\\x00 \\x9b2J"
    suite = ET.fromstring(render_junit(r)).find("testsuite")  # raises on a NUL
    assert suite is not None
    for text in (render_junit(r), render_markdown(r), render_html(r)):
        assert not any(c in text for c in "\x1b\x00\x9b")


def test_a_verdict_worse_than_its_slos_is_a_junit_case_of_its_own() -> None:
    """Every request failed and no SLO was declared: the run is inconclusive
    (exit 1), and junit.xml says so instead of an all-green suite."""
    r = sample_result()
    r = r.model_copy(update={"slos": [], "verdict": Verdict.INCONCLUSIVE,
                             "counts": r.counts.model_copy(update={"completed": 0})})
    suite = ET.fromstring(render_junit(r)).find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("skipped")) == ("2", "1")
    (case,) = [c for c in suite.findall("testcase") if c.get("name") == "verdict"]
    skipped = case.find("skipped")
    assert skipped is not None and "no request completed" in (skipped.get("message") or "")
    # A verdict its SLOs explain has no such case.
    assert "name=\"verdict\"" not in render_junit(sample_result())


def test_markdown_and_html_escape_what_the_server_sent() -> None:
    r = sample_result()
    md = render_markdown(r)
    assert "| `latency p50 < 1ms` | all |" in md and "w\\|x" in md
    html = render_html(r)
    assert "<script>alert" not in html and 'onerror="alert' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "FAIL" in html and "latency p50 &lt; 1ms" in html


def test_measured_time_is_what_ran_and_says_planned_only_when_cut() -> None:
    """Phases that `--duration` rescaled may sum a float's last digit over the
    planned time: not a cut. A rebuilt run is measured to its journal's end."""
    r = sample_result()
    rescaled = r.model_copy(update={"workload": r.workload.model_copy(
        update={"duration_s": 2.0000000000000004})})
    assert not rescaled.cut_short and "planned" not in render_markdown(rescaled)
    assert "planned" not in render_html(rescaled)
    killed = r.model_copy(update={"incomplete": Incomplete(
        in_progress=False, recorded_s=1.25, planned_s=2.0, intervals=1, reason="killed")})
    assert killed.measured_s == 1.25 and killed.cut_short
    assert "1.2 s measured (of 2 s planned)" in render_markdown(killed)
    html = render_html(killed)
    assert "1.25 s measured (of 2 s planned)" in html and "1.2 s of 2 s planned after" in html


def test_departures_over_the_whole_run_say_so_beside_the_measured_ones() -> None:
    """counts.abandoned covers the measured phases; the server's abort counter
    (reclaim) the whole run: 125 left in the measured phases, 130 in all."""
    r = sample_result()
    left = r.model_copy(update={"counts": r.counts.model_copy(
        update={"abandoned": {"patience": 125}})})
    reclaim = Reclaim(abandoned=130, received=0, abort_counter="vllm:request_success_total",
                      reclaimed=130)
    lines = departure_lines(left.model_copy(update={"reclaim": reclaim}))
    assert lines[0].startswith("125 clients left (patience 125)")
    assert lines[1].startswith("It aborted 130 of the 130 that left over the whole run, "
                               "warm-up included (no reclaim time")
    same = left.model_copy(update={"reclaim": reclaim.model_copy(
        update={"abandoned": 125, "reclaimed": 125})})
    assert departure_lines(same)[1].startswith("It aborted 125 of them (")
