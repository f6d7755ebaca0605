"""The effective sample size of correlated latencies (loadkit.slo.correlation)
and the coverage it buys: on AR(1) series and on M/M/1 and M/M/4 queues at
loads 0.5-0.95, the nominal 95% interval of p99 from n_eff, its counts batched
as a run's are (ShareBatches), covers the true p99 93-97% of the time, where
the interval that takes the samples as independent covers it 5-55% of the
time once they are correlated (docs/slo.md has the table)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from statistics import NormalDist

import numpy as np
import pytest
from scipy.signal import lfilter

from loadkit.slo.confidence import exceedance_decides, rank_interval
from loadkit.slo.correlation import BATCHES, ShareBatches, _t_quantile_95, effective_samples

PER = 500  # samples per interval: a 1-s interval at 500 req/s


def test_independent_samples_are_worth_about_themselves() -> None:
    rng = np.random.default_rng(1)
    k = (rng.random((600, PER)) < 0.05).sum(axis=1)
    n_eff = effective_samples(list(k), [PER] * 600)
    assert n_eff is not None and 0.85 * 600 * PER <= n_eff <= 600 * PER
    # nothing beyond the threshold (or everything): nothing to measure a correlation by
    assert effective_samples([0] * 50, [PER] * 50) == 50 * PER
    assert effective_samples([], []) is None


def test_batches_stay_flat_and_agree_with_the_series() -> None:
    rng = np.random.default_rng(2)
    batches = ShareBatches()
    ks = [int(x) for x in rng.binomial(PER, 0.02, size=10_000)]
    for k in ks:
        batches.add(k, PER)
    # a day of 1-s intervals would hold the same: at most 2 x BATCHES sums
    assert len(batches._k) < 2 * BATCHES and batches.size == 256
    whole = [sum(ks[i:i + 256]) for i in range(0, 10_000, 256)]
    expected = effective_samples(whole, [PER * len(ks[i:i + 256])
                                         for i in range(0, 10_000, 256)])
    assert batches.n_eff() == pytest.approx(expected)


def test_the_t_quantile_is_student_s() -> None:
    from scipy.stats import t
    for df in (1.0, 2.5, 7.0, 40.0, 1e5, 1e7):
        assert _t_quantile_95(df) == pytest.approx(t.ppf(0.975, df), abs=1e-5)
    assert _t_quantile_95(0.2) == _t_quantile_95(1.0)  # at least one degree of freedom


def test_correlation_weakens_a_verdict() -> None:
    """3% of 50,000 beyond the threshold of p97.5 < T fails outright as
    independent samples; worth 500, the same share no longer decides it."""
    assert exceedance_decides(1500, 1500, 50_000, 0.025) is False
    assert exceedance_decides(1500, 1500, 50_000, 0.025, n_eff=500) is None


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """A stationary Gaussian AR(1) series of unit variance."""
    e = rng.normal(size=n) * math.sqrt(1.0 - phi * phi)
    return lfilter([1.0], [1.0, -phi], e, zi=[phi * rng.normal()])[0]


def mm1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """Sojourn times of n customers of a stationary M/M/1 queue (service rate
    1), by Lindley's recursion in closed form: W_n = U_n - min(-W_0, min U_j)."""
    service = rng.exponential(1.0, n)
    gaps = rng.exponential(1.0 / rho, n)
    w0 = rng.exponential(1.0 / (1.0 - rho)) if rng.random() < rho else 0.0
    # In place (the same floats as fresh arrays; a fresh array's pages cost
    # here as much as the arithmetic): u_0 = 0, u_k = sum_{j<k} S_j - A_{j+1}.
    u = gaps
    np.subtract(service[:-1], gaps[1:], out=u[1:])
    u[0] = 0.0
    np.cumsum(u[1:], out=u[1:])
    low = np.minimum.accumulate(u)
    np.minimum(-w0, low, out=low)
    np.subtract(u, low, out=low)
    low += service
    return low


def p99_intervals(x: np.ndarray) -> list[tuple[float, float]]:
    """loadkit's order-statistic intervals of p99, with n_eff and taking the
    samples as independent: the first's ranks from n_eff of the indicator
    beyond the estimate, counted per interval of PER samples and batched as
    a run's are (at most 2 x BATCHES batch sums). The estimate is selected
    once and both intervals' bounds by one more selection: order statistics,
    the same values as a selection each."""
    n = len(x)
    rank = math.ceil(0.99 * n) - 1
    s = np.partition(x, rank)
    est = s[rank]
    batches = ShareBatches()
    for k in (x > est).reshape(-1, PER).sum(axis=1):
        batches.add(int(k), PER)
    bounds = [rank_interval(n, 0.99, 0.95, n_eff) for n_eff in (batches.n_eff(), None)]
    s.partition(sorted({r - 1 for lo, hi in bounds for r in (lo, hi) if r <= n}))
    return [(float(s[lo - 1]), float(s[hi - 1]) if hi <= n else math.inf) for lo, hi in bounds]


def mmc(rng: np.random.Generator, reps: int, n: int, c: int, rho: float,
        burn: int = 5_000, block: int = 256) -> np.ndarray:
    """Sojourn times of n customers (after `burn`, from empty) of `reps` M/M/c
    FIFO queues with service rate 1, simulated side by side (float32: 300
    runs of 100,000 hold 120 MB). Each customer's gaps and then services are
    drawn for all queues as one `rng.exponential` call each would draw them
    (the same stream, so the same queues), `block` customers at a time into
    buffers reused: a fresh array's pages cost here as much as the loop."""
    free = np.zeros((c, reps))  # each queue's servers' free times, in order (row 0 first)
    rows = list(free)
    out = np.empty((reps, n), dtype=np.float32)
    now = np.zeros(reps)
    draws, stay = np.empty((block, 2, reps)), np.empty((block, reps))
    total = n + burn
    for b0 in range(0, total, block):
        m = min(block, total - b0)
        rng.standard_exponential(out=draws[:m])
        arrive, service = draws[:m, 0], draws[:m, 1]
        arrive *= 1.0 / (rho * c)
        arrive[0] += now
        np.add.accumulate(arrive, axis=0, out=arrive)  # in order: now += gap, one by one
        for j in range(m):
            # FIFO: the next customer takes the first server free...
            end = np.maximum(arrive[j], rows[0])
            end += service[j]
            np.subtract(end, arrive[j], out=stay[j])
            for i in range(1, c):  # ...which is free again at `end`: kept in order
                np.minimum(end, rows[i], out=rows[i - 1])
                np.maximum(end, rows[i], out=end)
            rows[c - 1][:] = end
        now = arrive[m - 1].copy()
        if b0 + m > burn:
            skip = max(0, burn - b0)
            out[:, b0 + skip - burn:b0 + m - burn] = stay[skip:m].T
    return out


def mmc_p99(c: int, rho: float) -> float:
    """The stationary sojourn time's p99: the wait is 0, or exponential at rate
    c - lambda with the Erlang C probability, plus an exponential service."""
    a = rho * c
    head = sum(a**k / math.factorial(k) for k in range(c))
    last = a**c / math.factorial(c) / (1.0 - rho)
    erlang_c, theta = last / (head + last), c - a

    def tail(t: float) -> float:
        queued = (theta * math.exp(-t) - math.exp(-theta * t)) / (theta - 1.0)
        return (1.0 - erlang_c) * math.exp(-t) + erlang_c * queued
    lo, hi = 0.0, 1e3
    for _ in range(100):
        lo, hi = ((lo + hi) / 2, hi) if tail((lo + hi) / 2) > 0.01 else (lo, (lo + hi) / 2)
    return (lo + hi) / 2


def coverage(runs: Iterable[np.ndarray], truth: float) -> tuple[float, float]:
    """The share of runs whose interval holds the truth: with n_eff, and
    taking the same runs' samples as independent."""
    hits = [[lo <= truth <= hi for lo, hi in p99_intervals(x)] for x in runs]
    return sum(h[0] for h in hits) / len(hits), sum(h[1] for h in hits) / len(hits)


Runs = Callable[[np.random.Generator, int], Iterable[np.ndarray]]


def one_by_one(draw: Callable[[np.random.Generator, int], np.ndarray], n: int) -> Runs:
    return lambda rng, reps: (draw(rng, n) for _ in range(reps))


def side_by_side(n: int, c: int, rho: float, burn: int = 5_000) -> Runs:
    """M/M/c runs, simulated up to 150 million samples (600 MB) at a time."""
    def runs(rng: np.random.Generator, reps: int) -> Iterable[np.ndarray]:
        chunk = max(1, 150_000_000 // n)
        for start in range(0, reps, chunk):
            yield from mmc(rng, min(chunk, reps - start), n, c, rho, burn)
    return runs


Z99 = NormalDist().inv_cdf(0.99)
RUNS = 600  # per case: they measure a coverage of 95% to within 0.9 points (one standard error)
# Each case must cover 93-97%, its floor less one point (one standard error).
CASES: list[tuple[str, Runs, float]] = [  # name, runs, true p99
    ("AR(1) phi 0.5", one_by_one(lambda r, n: ar1(r, n, 0.5), 50_000), Z99),
    ("AR(1) phi 0.9", one_by_one(lambda r, n: ar1(r, n, 0.9), 50_000), Z99),
    ("AR(1) phi 0.99", one_by_one(lambda r, n: ar1(r, n, 0.99), 100_000), Z99),
    ("M/M/1 rho 0.5", one_by_one(lambda r, n: mm1(r, n, 0.5), 50_000), math.log(100) / 0.5),
    # A queue near saturation slows in bursts whose sizes vary: a run without
    # a big one looks calmer than the process is. n_eff's Student-t factor
    # (slo/correlation.py) pays for that; without it 89-92% near saturation.
    ("M/M/1 rho 0.8", one_by_one(lambda r, n: mm1(r, n, 0.8), 100_000), math.log(100) / 0.2),
    ("M/M/1 rho 0.95", one_by_one(lambda r, n: mm1(r, n, 0.95), 500_000),
     math.log(100) / 0.05),
    ("M/M/4 rho 0.5", side_by_side(50_000, 4, 0.5), mmc_p99(4, 0.5)),
    ("M/M/4 rho 0.8", side_by_side(100_000, 4, 0.8), mmc_p99(4, 0.8)),
    # Busy, an M/M/c drains at c - lambda = c(1 - rho), relaxing in as many
    # customers as an M/M/1 at the same load (about 1,500 at 0.95): as many
    # samples, and a burn-in of 13 such times from empty.
    ("M/M/4 rho 0.95", side_by_side(500_000, 4, 0.95, burn=20_000), mmc_p99(4, 0.95)),
]


def test_the_m_m_c_p99_is_what_its_simulation_shows() -> None:
    pooled = mmc(np.random.default_rng(5), 20, 50_000, 4, 0.5)
    assert np.quantile(pooled, 0.99) == pytest.approx(mmc_p99(4, 0.5), rel=0.01)
    assert mmc_p99(1, 0.5) == pytest.approx(math.log(100) / 0.5)  # M/M/1: Exp(mu - lambda)


@pytest.mark.slow
@pytest.mark.parametrize("name,runs,truth", CASES, ids=[c[0] for c in CASES])
def test_nominal_95_percent_intervals_cover_the_true_p99(name: str, runs: Runs,
                                                         truth: float) -> None:
    covered, naive = coverage(runs(np.random.default_rng(11), RUNS), truth)
    print(f"{name}: n_eff coverage {covered:.3f}, as independent {naive:.3f}")
    assert 0.92 <= covered <= 0.97, (name, covered)
    if name not in ("AR(1) phi 0.5", "M/M/4 rho 0.5"):  # barely correlated: both cover
        assert naive < 0.9, (name, naive)
