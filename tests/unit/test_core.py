"""Pure parts: arrivals, SSE and OpenAI parsing, recording, verdicts, renderers."""

from __future__ import annotations

import random
import statistics
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from loadkit.arrivals import schedule
from loadkit.arrivals.processes import arrival_times
from loadkit.errors import ErrorKind
from loadkit.execute import exit_code
from loadkit.engine.adapter import ProtocolError
from loadkit.protocols.openai import OpenAIStream, parse_body
from loadkit.protocols.sse import SSEDecoder
from loadkit.record.histogram import new_histogram, record_us
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.report import render_junit, render_markdown
from loadkit.report.html import render_html
from loadkit.result import build_result
from loadkit.slo.evaluate import Counts, evaluate, overall, samples_needed
from loadkit.workload.arrival_specs import Constant, Poisson
from loadkit.workload.models import Workload
from loadkit.workload.slo_spec import parse_objective


def workload(**kw) -> Workload:
    spec = {"duration": 100, "arrival": {"process": "poisson", "rate": 50},
            "scenarios": [{"name": "a", "kind": "http", "weight": 3},
                          {"name": "b", "kind": "http", "weight": 1}]}
    return Workload.model_validate({**spec, **kw})


# arrivals -------------------------------------------------------------------

def test_same_seed_same_schedule_other_seed_other_schedule():
    one, two = list(schedule(workload(seed=1))), list(schedule(workload(seed=1)))
    assert one == two and len(one) > 4000
    assert list(schedule(workload(seed=2))) != one


def test_poisson_rate_and_exponential_gaps():
    times = list(arrival_times(Poisson(process="poisson", rate=200), 50.0, random.Random(4)))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == pytest.approx(10_000, rel=0.04)  # 4 sigma is 4%
    assert statistics.mean(gaps) == pytest.approx(1 / 200, rel=0.04)
    # exponential: coefficient of variation 1 (constant would be 0)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)


def test_constant_is_evenly_spaced():
    times = list(arrival_times(Constant(process="constant", rate=100), 2.0, random.Random()))
    assert len(times) == 200 and times[1] - times[0] == pytest.approx(0.01)


def test_scenario_mix_follows_weights_and_schedule_is_ordered():
    slots = list(schedule(workload()))
    assert all(a.at <= b.at for a, b in zip(slots, slots[1:]))
    share_a = sum(s.scenario == 0 for s in slots) / len(slots)
    assert share_a == pytest.approx(0.75, abs=0.02)


# SSE and OpenAI parsing ------------------------------------------------------

def test_sse_decoder_handles_splits_crlf_comments_and_multiline():
    d = SSEDecoder()
    assert d.feed(b"data: one\n") == []
    assert d.feed(b"\n: comment\r") == [b"one"]
    assert d.feed(b"\ndata: a\r\ndata:b\r\n\r\n") == [b"a\nb"]
    assert d.feed(b"event: x\nid: 3\ndata: [DONE]\n\n") == [b"[DONE]"]
    assert not d.pending


def chunk(text: str | None = None, usage: int | None = None) -> bytes:
    import json
    doc: dict = {"choices": [{"delta": {"content": text}}] if text is not None else []}
    if usage is not None:
        doc["usage"] = {"completion_tokens": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def test_stream_counts_token_events_and_prefers_usage():
    s = OpenAIStream()
    assert s.feed(chunk("") + chunk("Hi")) == 1  # a role-only chunk is no token
    assert s.feed(chunk(" there") + chunk(" you")) == 2
    assert s.feed(chunk(usage=7) + b"data: [DONE]\n\n") == 0
    parsed = s.finish()
    assert (parsed.output_tokens, parsed.token_source) == (7, "usage")
    s = OpenAIStream()
    s.feed(chunk("a") + chunk("b") + b"data: [DONE]\n\n")
    assert (s.finish().output_tokens, s.finish().token_source) == (2, "chunks")


@pytest.mark.parametrize("payload,fragment", [
    (b"data: {not json\n\n", "not JSON"),
    (b'data: {"error": {"message": "overloaded"}}\n\n', "overloaded"),
    (b'data: {"choices": ["x"]}\n\n', "malformed"),
])
def test_stream_protocol_errors(payload, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        OpenAIStream().feed(payload)


def test_stream_without_done_is_a_protocol_error():
    s = OpenAIStream()
    s.feed(chunk("a"))
    with pytest.raises(ProtocolError, match="DONE"):
        s.finish()


def test_non_streaming_body():
    assert parse_body(b'{"choices": [], "usage": {"completion_tokens": 3}}').output_tokens == 3
    with pytest.raises(ProtocolError):
        parse_body(b"<html>")


# recording -------------------------------------------------------------------

def test_recorder_metrics_from_the_timing_model():
    rec = Recorder(start_ns=0)
    ms = 1_000_000
    rec.record(RequestRecord("t", "s", "measure", intended=0, sent=2 * ms, end=100 * ms,
                             first=30 * ms, events=[30 * ms, 40 * ms, 60 * ms, 100 * ms],
                             output_tokens=4, token_source="usage"))
    rec.record(RequestRecord("t", "s", "measure", intended=5 * ms, sent=5 * ms, end=9 * ms,
                             error=ErrorKind.HTTP_5XX, message="HTTP 503"))
    rec.rotate(1000 * ms)

    def values(metric):
        h = rec.cumulative[(metric, "measure", "s", "t")]
        return h.get_total_count(), h.get_min_value(), h.get_max_value()

    assert values("latency")[0] == 1 and values("latency")[2] // 1000 == 100
    assert values("service_time")[2] // 1000 == 98
    assert values("ttft")[2] // 1000 == 28
    assert values("itl")[0] == 3  # each gap: 10, 20, 40 ms
    assert (values("itl")[1] // 1000, values("itl")[2] // 1000) == (10, 40)
    assert values("tpot")[2] // 1000 == 23  # (100-30)/(4-1)
    assert values("lateness")[0] == 2  # errors have lateness too
    assert rec.errors[("http_5xx", "measure", "s", "t")] == 1
    assert rec.intervals[0].completed == 1 and rec.intervals[0].errors == 1


# verdicts --------------------------------------------------------------------

def hist(values_ms):
    h = new_histogram()
    for v in values_ms:
        record_us(h, int(v * 1000))
    return h


def test_samples_needed():
    assert [samples_needed(q) for q in (0.5, 0.9, 0.99, 0.999)] == [20, 100, 1000, 10000]


def test_percentile_verdicts_and_inconclusive():
    c = Counts(1000, 0, 0, 10.0)
    h = hist(range(1, 1001))  # 1..1000 ms: p99 = 990 ms
    ok = evaluate(parse_objective("latency p99 < 995ms"), [h], c)
    bad = evaluate(parse_objective("latency p99 < 985ms"), [h], c)
    assert (ok.verdict, bad.verdict) == ("pass", "fail")
    assert ok.observed == pytest.approx(990, rel=0.001)
    few = evaluate(parse_objective("latency p99 < 5s"), [hist(range(999))], c)
    assert few.verdict == "inconclusive" and "needs at least 1000" in few.reason
    assert evaluate(parse_objective("latency max < 5s"), [], c).verdict == "inconclusive"


def test_rate_verdicts_count_drops_as_failures():
    o = parse_objective("error_rate < 1%")
    low = evaluate(o, [], Counts(995, 3, 2, 10))  # (3 errors + 2 drops) / 1000
    assert (low.verdict, low.observed) == ("pass", pytest.approx(0.005))
    high = evaluate(o, [], Counts(990, 5, 5, 10))  # drops alone push it to 1%
    assert (high.verdict, high.observed) == ("fail", pytest.approx(0.010))
    t = evaluate(parse_objective("throughput >= 99 req/s"), [], Counts(1000, 0, 0, 10))
    assert (t.verdict, t.observed) == ("pass", 100.0)
    assert overall([t, low]) == "pass" and overall([t, high]) == "fail"
    assert overall([t, evaluate(o, [], Counts(0, 0, 0, 10))]) == "inconclusive"


def test_exit_codes():
    base = {"trusted": True, "verdict": "pass"}
    assert exit_code(base) == 0
    assert exit_code({**base, "verdict": "fail"}) == 1
    assert exit_code({**base, "verdict": "inconclusive"}) == 1
    assert exit_code({**base, "verdict": "inconclusive"}, "pass") == 0
    assert exit_code({**base, "trusted": False, "verdict": "fail"}) == 3


# renderers -------------------------------------------------------------------

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


def test_failures_count_as_slower_than_any_threshold():
    """17% timeouts cannot hide behind fast answers: p90 over all attempts fails."""
    fast = hist([5] * 830)
    o = parse_objective("latency p90 < 100ms")
    r = evaluate(o, [fast], Counts(830, 170, 0, 10))
    assert r.verdict == "fail" and r.samples == 1000 and "170 of 1000" in r.reason
    # 0.5% failures: p99 over all attempts is p(99.5) of the answers
    h = hist(range(1, 996))  # 995 answers, 1..995 ms
    r = evaluate(parse_objective("latency p99 < 2s"), [h], Counts(995, 3, 2, 10))
    assert r.verdict == "pass" and r.observed == pytest.approx(990, rel=0.002)
    assert evaluate(parse_objective("latency max < 5s"), [h], Counts(995, 1, 0, 10)).verdict == "fail"
    # per-token metrics are not failure-aware: they have no value for a failure
    assert evaluate(parse_objective("itl p90 < 100ms"), [fast], Counts(830, 170, 0, 10)).verdict == "pass"


def test_sse_decoder_bounds_an_endless_line():
    from loadkit.protocols.sse import MAX_LINE, SSEError
    d = SSEDecoder()
    fed = 0
    with pytest.raises(SSEError):
        while fed < 4 * MAX_LINE:  # a stream that never sends a newline
            d.feed(b"x" * 1024)
            fed += 1024
    assert fed <= MAX_LINE + 1024


def test_lying_usage_is_a_protocol_error():
    for bad in (b'-5', b'true', b'"7"'):
        s = OpenAIStream()
        with pytest.raises(ProtocolError, match="completion_tokens"):
            s.feed(b'data: {"choices": [], "usage": {"completion_tokens": ' + bad + b'}}\n\n')
