"""What a capacity search reports and how it gates: the expectation on an
interval, headroom, the binding SLO, the comparison of two searches, and
capacity.json / .md / .html / JUnit, from synthetic searches."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from loadkit.capacity import compare_capacity, exit_code, load_capacity, regate, write_all
from loadkit.capacity.gate import judge, parse_expect
from loadkit.capacity.model import CapacityResult, Percentiles, ProbeRecord, SloPoint
from loadkit.capacity.runner import binding_slo, build
from loadkit.capacity.search import Conclusion, Found, Outcome, Probe, Settings, Status
from loadkit.compare.model import Decision
from loadkit.errors import ExitCode, InputError
from loadkit.result.model import Verdict

TTFT, TPOT = "ttft p90 < 150ms [all]", "tpot p90 < 12ms [all]"


def slo(name: str, observed: float, threshold: float) -> SloPoint:
    text = name.split(" [")[0]
    return SloPoint(name=name, text=text, metric=text.split()[0], op="<", threshold=threshold,
                    unit="ms", observed=observed, ci_low=observed * 0.95,
                    ci_high=observed * 1.05,
                    verdict=Verdict.PASS if observed < threshold else Verdict.FAIL)


def record(i: int, value: float, ttft: float, tpot: float, cost: float | None = None,
           status: Status | None = None) -> ProbeRecord:
    slos = [slo(TTFT, ttft, 150.0), slo(TPOT, tpot, 12.0)]
    ok = all(s.verdict == Verdict.PASS for s in slos)
    return ProbeRecord(index=i, value=value, duration_s=10, warmup_s=2,
                       status=status or (Status.PASS if ok else Status.FAIL),
                       folder=f"probe-{i:02d}", elapsed_s=14.0, offered_rps=value,
                       sent_rps=value, throughput_rps=min(value, 42.0),
                       goodput_rps=min(value, 42.0) * (1.0 if ok else 0.5),
                       latency={"latency": Percentiles(p50=100 + ttft, p90=150 + ttft,
                                                       p99=200 + ttft)},
                       slos=slos, cost_per_1m_output_tokens=cost, gpu_util_mean=50.0)


def search_result(records: list[ProbeRecord], conclusion: Conclusion = Conclusion.FOUND,
                  passed: float | None = 40.0, failed: float | None = 42.0) -> CapacityResult:
    trials = [(Probe(r.value, r.duration_s), Outcome(r.status, r.elapsed_s)) for r in records]
    found = Found(conclusion, passed, failed, trials, 14.0 * len(records),
                  stopped_at=records[-1].value if conclusion == Conclusion.GENERATOR_LIMITED
                  else None)
    settings = Settings(start=10, low=10, precision=0.05, probe_s=10, budget_s=600)
    return regate(build(found, records, settings, "req/s"), None, None)


@pytest.fixture
def found() -> CapacityResult:
    return search_result([record(1, 10, 40, 9, cost=9.0), record(2, 20, 41, 9.5, cost=4.6),
                          record(3, 40, 60, 10, cost=2.4), record(4, 80, 900, 10, cost=2.3),
                          record(5, 56.6, 700, 10), record(6, 47.6, 400, 10),
                          record(7, 43.6, 200, 10), record(8, 41.8, 160, 10),
                          record(9, 40.9, 90, 10)],
                         passed=40.9, failed=41.8)


@pytest.mark.parametrize("text,low,high,verdict", [
    ("capacity >= 40 req/s", 40.9, 41.8, Verdict.PASS),
    ("capacity >= 41 req/s", 40.9, 41.8, Verdict.INCONCLUSIVE),
    ("capacity >= 42 req/s", 40.9, 41.8, Verdict.FAIL),
    ("capacity >= 41.8", 40.9, 41.8, Verdict.FAIL),  # capacity < 41.8
    ("capacity > 40.9 req/s", 40.9, 41.8, Verdict.INCONCLUSIVE),  # could be exactly 40.9
    ("capacity >= 100 req/s", 120.0, None, Verdict.PASS),  # above --max
    ("capacity >= 100 req/s", None, 80.0, Verdict.FAIL),  # below --min
    ("capacity <= 50 req/s", 40.9, 41.8, Verdict.PASS),
    ("capacity < 41 req/s", 40.9, 41.8, Verdict.INCONCLUSIVE),
    ("capacity < 41 req/s", 41.0, 41.8, Verdict.FAIL),
])
def test_an_expectation_judges_the_whole_interval(text: str, low: float | None,
                                                  high: float | None, verdict: Verdict) -> None:
    assert judge(parse_expect(text, "req/s"), low, high)[0] == verdict


@pytest.mark.parametrize("text", ["capacity >= lots", "capacity = 4 req/s", "latency < 3",
                                  "capacity >= 4 users", "headroom >= 2 req/s"])
def test_a_malformed_expectation_is_bad_input(text: str) -> None:
    with pytest.raises(InputError, match="--expect"):
        parse_expect(text, "req/s")


def test_gate_exit_codes_on_three_thresholds_around_the_interval(found: CapacityResult) -> None:
    codes = {t: exit_code(regate(found, f"capacity >= {t} req/s", None))
             for t in (35, 41.3, 50)}
    assert codes == {35: ExitCode.PASSED, 41.3: ExitCode.SLO_FAILED, 50: ExitCode.SLO_FAILED}
    straddled = regate(found, "capacity >= 41.3 req/s", None)
    assert straddled.verdict == Verdict.INCONCLUSIVE
    assert exit_code(straddled, "pass") == ExitCode.PASSED
    assert regate(found, "capacity >= 50 req/s", None).verdict == Verdict.FAIL


def test_headroom_is_capacity_over_the_production_rate_as_an_interval(
        found: CapacityResult) -> None:
    r = regate(found, "headroom >= 2x", 20.0)
    assert r.headroom is not None and r.expectation is not None
    assert (r.headroom.low, r.headroom.high) == (pytest.approx(2.045), pytest.approx(2.09))
    assert r.expectation.verdict == Verdict.PASS
    assert regate(found, "headroom >= 2.05x", 20.0).verdict == Verdict.INCONCLUSIVE
    with pytest.raises(InputError, match="--production-rate"):
        regate(found, "headroom >= 2x", None)


def test_the_binding_slo_is_the_one_failing_at_the_lowest_failing_load(
        found: CapacityResult) -> None:
    assert found.binding_slo == TTFT
    # Where both fail, the one furthest beyond its threshold binds.
    both = [record(1, 50, 160, 12.5), record(2, 50, 160, 30.0)]
    first, second = binding_slo(both[:1], 50), binding_slo(both[1:], 50)
    assert first is not None and first.name == TTFT  # 160/150 > 12.5/12
    assert second is not None and second.name == TPOT  # 30/12 > 160/150
    assert binding_slo(both, None) is None


def test_a_generator_limited_search_is_untrusted_and_says_what_to_do() -> None:
    limited = record(3, 40, 40, 9, status=Status.GENERATOR_LIMITED)
    limited = limited.model_copy(update={"reasons": ["120 arrivals were dropped ..."],
                                         "dropped": 120})
    r = search_result([record(1, 10, 40, 9), record(2, 20, 40, 9), limited],
                      conclusion=Conclusion.GENERATOR_LIMITED, passed=20, failed=None)
    assert not r.trusted and exit_code(r) == ExitCode.UNTRUSTED
    assert "generator, not the server" in r.summary and r.capacity.failed is None
    assert any("--workers" in a for a in r.advice) and any("max_in_flight" in a for a in r.advice)
    assert exit_code(regate(r, "capacity >= 5 req/s", None)) == ExitCode.UNTRUSTED


def test_without_expectation_the_verdict_is_whether_the_search_answered(
        found: CapacityResult) -> None:
    assert found.verdict == Verdict.PASS and exit_code(found) == ExitCode.PASSED
    spent = search_result([record(1, 10, 40, 9)], conclusion=Conclusion.BUDGET, passed=10,
                          failed=None)
    assert spent.verdict == Verdict.INCONCLUSIVE and exit_code(spent) == ExitCode.SLO_FAILED
    assert "budget" in spent.summary and exit_code(spent, "pass") == ExitCode.PASSED


@pytest.mark.parametrize("cand,decision", [
    ((40.0, 41.8), Decision.NO_CHANGE),  # change in [-4.3%, +4.5%]
    ((30.0, 31.0), Decision.REGRESSION),  # [-28%, -22.5%]: all of it a loss beyond 10%
    ((36.0, 38.0), Decision.INCONCLUSIVE),  # [-13.9%, -5%]: straddles -10%
    ((50.0, 52.0), Decision.IMPROVEMENT),  # [+19.6%, +30%]
    ((20.0, None), Decision.INCONCLUSIVE),  # at least 20, no upper bound: [-52%, +inf]
])
def test_compare_two_searches(found: CapacityResult, cand: tuple[float, float | None],
                              decision: Decision) -> None:
    base = found.model_copy(update={"capacity": found.capacity.model_copy(
        update={"passed": 40.0, "failed": 41.8})})
    other = base.model_copy(update={"capacity": base.capacity.model_copy(
        update={"passed": cand[0], "failed": cand[1]})})
    c = compare_capacity(base, other, max_loss=0.10)
    assert c.decision == decision, c.reason
    assert c.change_low == pytest.approx(cand[0] / 41.8 - 1, abs=1e-6)
    assert c.change_high == (None if cand[1] is None
                             else pytest.approx(cand[1] / 40.0 - 1, abs=1e-6))


def test_comparing_across_units_is_bad_input(found: CapacityResult) -> None:
    with pytest.raises(InputError, match="users"):
        compare_capacity(found, found.model_copy(update={"unit": "users"}))


def test_outputs_round_trip_and_render(tmp_path: Path, found: CapacityResult) -> None:
    r = regate(found, "capacity >= 41.3 req/s", 20.0)
    page = write_all(r, tmp_path)
    assert load_capacity(tmp_path) == r  # capacity.json reads back equal
    md = (tmp_path / "capacity.md").read_text()
    assert "40.9–41.8 req/s" in md and TTFT in md and "headroom" in md
    assert md.count("| probe-") == 0 and md.count("`probe-0") == 9
    # Every table's rows have as many cells as its header and separator
    # (GitHub renders nothing of a table whose separator is a cell short).
    tables: list[list[int]] = []
    for line in md.splitlines():
        if not line.startswith("|"):
            tables.append([])
        elif tables:
            tables[-1].append(line.replace("\\|", "").count("|"))
    assert [t for t in tables if len(set(t)) > 1] == [] and any(len(t) > 3 for t in tables)
    suite = ET.parse(tmp_path / "capacity-junit.xml").getroot()[0]
    assert suite.get("tests") == "3" and suite.get("skipped") == "1"
    html = page.read_text()
    assert "<script" not in html and html.count("<svg") == 3  # curve, goodput, cost
    assert "Latency against throughput" in html and "knee" in html
    assert json.loads((tmp_path / "capacity.json").read_text())["kind"] == "capacity"


def test_a_damaged_or_foreign_file_is_bad_input(tmp_path: Path, found: CapacityResult) -> None:
    (tmp_path / "run.json").write_text('{"schema_version": 1}')
    with pytest.raises(InputError, match="not a loadkit capacity.json"):
        load_capacity(tmp_path / "run.json")
    doc = json.loads(found.to_json())
    del doc["capacity"]
    (tmp_path / "capacity.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="capacity"):
        load_capacity(tmp_path)


def test_the_knee_names_the_part_that_moved_and_the_failing_probe_s_cause() -> None:
    from loadkit.capacity.knee import knee_line, knee_of
    from loadkit.capacity.report import facts
    from loadkit.result.model import Cause, Decomposition

    def split(queue: float) -> Decomposition:
        return Decomposition(client_ms=queue + 120, requests=100, server_ms=queue + 118,
                             queue_ms=queue, prefill_ms=20, decode_ms=98, remainder_ms=2)
    below = record(1, 40, 60, 10).model_copy(update={
        "split": split(5.0), "energy_per_1k_output_tokens_j": 30.0,
        "cost_per_1m_output_tokens": 2.4})
    queueing = Cause(name="queueing", title="queueing", evidence=["queue wait 300 ms"])
    above = record(2, 42, 900, 10).model_copy(update={
        "split": split(300.0), "causes": [queueing], "energy_per_1k_output_tokens_j": 29.0,
        "cost_per_1m_output_tokens": 2.3})
    k = knee_of([below, above], 40, 42)
    assert k is not None and (k.part, k.moved, k.cause) == ("queue", "queue 5.0 → 300.0 ms",
                                                            "queueing")
    assert knee_line(k) == ("from 40 to 42: queue 5.0 → 300.0 ms; queueing: queue wait "
                            "300 ms; energy per 1k output tokens 30 → 29 J; cost per 1M "
                            "output tokens 2.4 → 2.3")
    assert knee_of([below], 40, None) is None  # no failing probe bounds it
    r = search_result([below, above], passed=40, failed=42)
    assert r.knee == k and ("knee", knee_line(k)) in facts(r)
