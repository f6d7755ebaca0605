"""Percentile confidence intervals from histogram counts: coverage and verdicts."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from loadkit.record.histogram import new_histogram, record_us
from loadkit.slo.confidence import percentile_interval, rank_interval, share_interval
from loadkit.slo.evaluate import Counts, evaluate
from loadkit.workload.slo_spec import parse_objective


@pytest.mark.parametrize("name,draw,true_p99_ms", [
    ("exponential, mean 20 ms", lambda r: r.expovariate(1 / 20), 20 * math.log(100)),
    ("lognormal, median 50 ms", lambda r: 50 * math.exp(r.gauss(0, 0.8)),
     50 * math.exp(0.8 * 2.3263478740408408)),
])
# n: exact binomial sums, normal approximation
@pytest.mark.parametrize("n", [2000, pytest.param(6000, marks=pytest.mark.slow)])
def test_p99_interval_covers_the_truth_95_percent_of_the_time(
        name: str, draw: Callable[[random.Random], float], true_p99_ms: float, n: int) -> None:
    rng = random.Random(f"{name}:{n}")
    trials, hits = 400, 0
    for _ in range(trials):
        h = new_histogram()
        for _ in range(n):
            record_us(h, round(draw(rng) * 1000))
        low, high = percentile_interval(h, 0.99)
        hits += low <= true_p99_ms <= (high if high is not None else math.inf)
    assert 0.93 <= hits / trials <= 0.97, (name, n, hits / trials)


def test_small_samples_are_conservative() -> None:
    # 300 samples: p99's upper rank lies past the last sample, so the interval
    # is open above (covering more than 95%, never less)
    assert rank_interval(300, 0.99)[1] > 300


def test_rank_interval_agrees_across_methods() -> None:
    # at the switch-over the exact and approximate ranks are within one of each other
    exact = rank_interval(5000, 0.99)  # n q (1-q) = 49.5: exact
    approx = rank_interval(5100, 0.99)  # 50.5: normal
    assert abs(exact[0] - (approx[0] - 99)) <= 2 and abs(exact[1] - (approx[1] - 101)) <= 2
    assert rank_interval(100, 0.99)[1] == 101  # too few samples: unbounded above


def test_marginal_and_strict() -> None:
    rng = random.Random(1)
    h = new_histogram()
    for _ in range(3000):
        record_us(h, round(rng.expovariate(1 / 20) * 1000))
    c = Counts(3000, 0, 0, 10)
    observed = evaluate(parse_objective("latency p99 < 1s"), [h], c).observed
    assert observed is not None
    near = parse_objective(f"latency p99 < {observed + 0.5:.1f}ms")
    loose = evaluate(near, [h], c)
    assert loose.verdict == "pass" and loose.marginal
    assert loose.ci_low is not None and loose.ci_high is not None
    assert loose.ci_low <= observed <= loose.ci_high
    strict = evaluate(near, [h], c, strict=True)
    assert strict.verdict == "inconclusive" and "confidence interval" in strict.reason
    clear = evaluate(parse_objective("latency p99 < 1s"), [h], c, strict=True)
    assert clear.verdict == "pass" and not clear.marginal


@pytest.mark.parametrize("k,n,low,high", [
    # Clopper-Pearson reference values (e.g. R's binom.test)
    (0, 300, 0.0, 0.01222),
    (5, 100, 0.01643, 0.11284),
    (50, 100, 0.39832, 0.60168),
    (100, 100, 0.96378, 1.0),
])
def test_share_interval_is_clopper_pearson(k: int, n: int, low: float, high: float) -> None:
    lo, hi = share_interval(k, n)
    assert lo == pytest.approx(low, abs=2e-5) and hi == pytest.approx(high, abs=2e-5)
