"""SLO verdicts from histograms and counts (loadkit.slo.evaluate): percentiles
and rates, too few samples, failures counted as slower than any threshold;
and the exit codes the verdicts lead to (loadkit.run.execute.exit_code)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from loadkit.record.histogram import HdrHistogram, new_histogram, record_us
from loadkit.result import SLOResult, Verdict, parse_run
from loadkit.run.execute import exit_code
from loadkit.slo.evaluate import Counts, Served, evaluate, samples_needed
from loadkit.workload.slo_spec import parse_objective
from support.synthetic_run import synthetic_day


def overall(results: Iterable[SLOResult]) -> Verdict:
    return Verdict.overall([r.verdict for r in results])


def hist(values_ms: Iterable[float]) -> HdrHistogram:
    h = new_histogram()
    for v in values_ms:
        record_us(h, int(v * 1000))
    return h


def test_samples_needed() -> None:
    assert [samples_needed(q) for q in (0.5, 0.9, 0.99, 0.999)] == [20, 100, 1000, 10000]


def test_percentile_verdicts_and_inconclusive() -> None:
    c = Counts(1000, 0, 0, 10.0)
    h = hist(range(1, 1001))  # 1..1000 ms: p99 = 990 ms
    ok = evaluate(parse_objective("latency p99 < 995ms"), [h], c)
    bad = evaluate(parse_objective("latency p99 < 985ms"), [h], c)
    assert (ok.verdict, bad.verdict) == ("pass", "fail")
    assert ok.observed == pytest.approx(990, rel=0.001)
    # 999 samples, none near 5 s: the data decide without 1,000 of them
    few = evaluate(parse_objective("latency p99 < 5s"), [hist(range(999))], Counts(999, 0, 0, 10))
    assert few.verdict == "pass" and not few.marginal
    assert evaluate(parse_objective("latency max < 5s"), [], c).verdict == "inconclusive"


@pytest.mark.parametrize("n,above,verdict", [
    (300, 0, "pass"),  # P(none of 300 above | 1%) = 0.99^300 = 4.9% <= 5%
    (100, 5, "fail"),  # P(5 or more of 100 above | 1%) = 0.34%
    (100, 1, "inconclusive"),  # neither: and too few for a point estimate
    (298, 0, "inconclusive"),  # 0.99^298 = 5.0%: one sample short
])
def test_exact_binomial_percentile_verdicts(n: int, above: int, verdict: str) -> None:
    h = hist([100] * (n - above) + [2000] * above)
    r = evaluate(parse_objective("latency p99 < 1s"), [h], Counts(n, 0, 0, 10))
    assert r.verdict == verdict, r.reason
    if verdict == "inconclusive":
        assert "needs at least 1000, or 299 with none beyond" in r.reason


def test_failures_decide_a_tail_however_few() -> None:
    """34 of 34 requests failed: every observation says p99 < 1s failed."""
    r = evaluate(parse_objective("latency p99 < 1s"), [new_histogram()], Counts(0, 34, 0, 6))
    assert r.verdict == "fail" and "34 of 34" in r.reason
    # the other side of the tail: p50 > 50 ms (a floor) holds when few are at or below
    fast = evaluate(parse_objective("latency p50 > 50ms"), [hist([80] * 20)], Counts(20, 0, 0, 1))
    assert fast.verdict == "pass"


def test_rate_verdicts_count_drops_as_failures() -> None:
    o = parse_objective("error_rate < 1%")
    low = evaluate(o, [], Counts(995, 3, 2, 10))  # (3 errors + 2 drops) / 1000
    assert (low.verdict, low.observed) == ("pass", pytest.approx(0.005))
    high = evaluate(o, [], Counts(990, 5, 5, 10))  # drops alone push it to 1%
    assert (high.verdict, high.observed) == ("fail", pytest.approx(0.010))
    t = evaluate(parse_objective("throughput >= 99 req/s"), [], Counts(1000, 0, 0, 10))
    assert (t.verdict, t.observed) == ("pass", 100.0)
    assert overall([t, low]) == "pass" and overall([t, high]) == "fail"
    assert overall([t, evaluate(o, [], Counts(0, 0, 0, 10))]) == "inconclusive"


def test_rates_count_the_requests_that_ended_in_the_scope_s_time() -> None:
    """1,000 requests sent in 10 s, 500 of them (150 good, 20,000 tokens)
    answered inside it: the rates are 50 req/s, 15 req/s and 2,000 tokens/s."""
    c = Counts(1000, 0, 0, 10, good=900, output_tokens=64_000, served=Served(500, 150, 20_000))
    for slo, observed in (("throughput >= 99 req/s", 50.0), ("goodput >= 10 req/s", 15.0),
                          ("output_tokens_per_s >= 1000", 2000.0)):
        r = evaluate(parse_objective(slo), [], c)
        assert r.observed == observed and r.samples == 500, slo
    assert evaluate(parse_objective("goodput >= 85%"), [], c).observed == 0.9  # a share: as sent


def test_a_rate_needs_requests_asked_of_the_server_in_its_scope() -> None:
    """Nothing sent, nothing ended: no rate to judge (a rebuilt run cut 60 µs
    into its measured phase read 0 req/s, a FAIL; an audit). Asked and not
    answered is a rate of 0, and fails."""
    o = parse_objective("throughput >= 10 req/s")
    idle = evaluate(o, [], Counts(0, 0, 0, 6e-5, served=Served(0, 0, 0)))
    assert (idle.verdict, idle.observed, idle.reason) == ("inconclusive", None,
                                                          "no requests in scope")
    for asked in (Counts(0, 30, 0, 3, served=Served(0, 0, 0)),  # every one failed
                  Counts(0, 0, 30, 3, served=Served(0, 0, 0)),  # every one dropped
                  Counts(0, 0, 0, 3, abandoned=30, served=Served(0, 0, 0))):  # all left
        dead = evaluate(o, [], asked)
        assert (dead.verdict, dead.observed) == ("fail", 0.0), asked


@pytest.mark.parametrize("slo,counts,verdict,marginal", [
    # 0 of 300 failed: P(none | 1%) = 0.99^300 = 4.9%, decided
    ("error_rate < 1%", Counts(300, 0, 0, 10), "pass", False),
    # 0 of 200: 13.4%, undecided; the point estimate passes, marked marginal
    ("error_rate < 1%", Counts(200, 0, 0, 10), "pass", True),
    # 5 of 100 failed: P(5 or more | 1%) = 0.34%, decided
    ("error_rate < 1%", Counts(95, 5, 0, 10), "fail", False),
    # goodput >= 95%: 3 of 200 missed (P(3 or fewer | 5%) = 0.9%), decided
    ("goodput >= 95%", Counts(200, 0, 0, 10, good=197), "pass", False),
    # 8 of 100 missed: P(8 or more | 5%) = 12.8%, undecided; the estimate fails
    ("goodput >= 95%", Counts(100, 0, 0, 10, good=92), "fail", True),
    # 20 of 100 missed: decided
    ("goodput >= 95%", Counts(100, 0, 0, 10, good=80), "fail", False),
])
def test_share_verdicts_take_the_exact_test(slo: str, counts: Counts, verdict: str,
                                           marginal: bool) -> None:
    r = evaluate(parse_objective(slo), [], counts)
    assert (r.verdict, r.marginal) == (verdict, marginal), r
    assert r.ci_low is not None and r.ci_high is not None and r.observed is not None
    assert r.ci_low <= r.observed <= r.ci_high
    if marginal:  # the threshold is inside the interval: --strict calls it undecided
        assert r.ci_low <= r.threshold <= r.ci_high
        assert evaluate(parse_objective(slo), [], counts, strict=True).verdict == "inconclusive"


def test_failures_count_as_slower_than_any_threshold() -> None:
    """17% timeouts cannot hide behind fast answers: p90 over all attempts fails."""
    fast = hist([5] * 830)
    o = parse_objective("latency p90 < 100ms")
    r = evaluate(o, [fast], Counts(830, 170, 0, 10))
    assert r.verdict == "fail" and r.samples == 1000 and "170 of 1000" in r.reason
    assert r.observed is None and r.ci_low is None  # the interval's low end is a failure too
    # 0.5% failures: p99 over all attempts is p(99.5) of the answers
    h = hist(range(1, 996))  # 995 answers, 1..995 ms
    r = evaluate(parse_objective("latency p99 < 2s"), [h], Counts(995, 3, 2, 10))
    assert r.verdict == "pass" and r.observed == pytest.approx(990, rel=0.002)
    assert evaluate(parse_objective("latency max < 5s"), [h], Counts(995, 1, 0, 10)).verdict == "fail"
    # per-token metrics are not failure-aware: they have no value for a failure
    assert evaluate(parse_objective("itl p90 < 100ms"), [fast], Counts(830, 170, 0, 10)).verdict == "pass"


def test_failures_just_past_the_tail_are_a_marginal_fail_not_a_clear_one() -> None:
    """16 failures in 1,179 attempts is 1.4%, but the chance of 16 or more at
    the 1% a p99 allows is 13%: the point estimate fails, marked marginal
    (inconclusive with --strict). 19 of 1,179 the exact test decides at 95%,
    not at the 99.9% an abort asks for (its interval [0.67%, 3.2%] holds
    1%): no abort on that."""
    o = parse_objective("latency p99 < 2s")
    r = evaluate(o, [hist([100] * 1163)], Counts(1163, 16, 0, 12))
    assert (r.verdict, r.marginal, r.samples) == ("fail", True, 1179) and "16 of 1179" in r.reason
    strict = evaluate(o, [hist([100] * 1163)], Counts(1163, 16, 0, 12), strict=True)
    assert strict.verdict == "inconclusive" and "(--strict)" in strict.reason
    fast, c = hist([100] * 1160), Counts(1160, 19, 0, 12)
    decided = evaluate(o, [fast], c)
    assert (decided.verdict, decided.marginal) == ("fail", False)
    # its 95% interval starts among the answers, and shows where: the row of an
    # abort (live.py) shows this interval, not the 99.9% one it was judged at
    assert decided.ci_low == pytest.approx(100, rel=0.001) and decided.ci_high is None
    at_abort = evaluate(o, [fast], c, level=0.999)
    assert (at_abort.verdict, at_abort.marginal) == ("fail", True)
    # the same count as an error_rate: the same exact test, the same doubt
    share = evaluate(parse_objective("error_rate < 1%"), [], c, level=0.999)
    assert share.verdict == "fail" and share.marginal


def test_failures_exactly_at_the_tail_leave_the_percentile_an_answer() -> None:
    """100 failures in 1,000: p90 is the 900th attempt, the slowest answer, not
    a failure ((1 - 0.9) * 1000 is 99.99999999999997 in floating point)."""
    r = evaluate(parse_objective("latency p90 < 1s"), [hist([50] * 900)], Counts(900, 100, 0, 10))
    assert r.observed == pytest.approx(50, rel=0.001) and "is a failure" not in r.reason


def test_an_undecided_p99_takes_the_share_the_slo_language_forbids() -> None:
    """`p99 < T`: fewer than 1% take T or more. 11 of 1,060 (1.04%) at 200 ms:
    p99 is 200 ms, a (marginal) fail. 11 of 1,100 (1.0%, the boundary): p99
    is the 1,089th, the last fast answer, a (marginal) pass."""
    o = parse_objective("latency p99 < 100ms")
    over = evaluate(o, [hist([10] * 1049 + [200] * 11)], Counts(1060, 0, 0, 10))
    assert (over.verdict, over.marginal) == ("fail", True)
    assert over.observed == pytest.approx(200, rel=0.001)
    under = evaluate(o, [hist([10] * 1089 + [200] * 11)], Counts(1100, 0, 0, 10))
    assert (under.verdict, under.marginal) == ("pass", True)


def test_exit_codes() -> None:
    base = {**synthetic_day(intervals=10), "trusted": True, "verdict": "pass"}

    def code(*args: str, **changes: Any) -> int:
        return exit_code(parse_run({**base, **changes}), *args)
    assert code() == 0
    assert code(verdict="fail") == 1
    assert code(verdict="inconclusive") == 1
    assert code("pass", verdict="inconclusive") == 0
    assert code(trusted=False, verdict="fail") == 3
