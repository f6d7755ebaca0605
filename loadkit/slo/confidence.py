"""Distribution-free confidence intervals for percentiles, from histogram
counts, and the exact test that decides a percentile SLO.

A percentile SLO is a statement about an exceedance probability: `p99 < T`
holds when P(X >= T) < 1%. With k of n samples at or above T, it passes at
level 1 - alpha when even the upper one-sided bound on that probability is
under 1% (P(B <= k) <= alpha for B ~ Binomial(n, 1%)), and fails when even
the lower bound is over it (P(B >= k) <= alpha). No minimum n: 300 samples
none above T pass p99 (0.99^300 = 4.9%), 100 with 5 above fail it. A share
SLO (`error_rate < 1%`, `goodput >= 95%`) is the same test on the requests
that failed, or that missed the goodput rules, with its exact interval.

The q-quantile lies between the order statistics x(l) and x(u) with
probability P(l <= B < u), B ~ Binomial(n, q), whatever the distribution. We
pick l and u with at most alpha/2 of that probability outside on each side
(exact sums for small n, the normal approximation with continuity correction
once n·q·(1−q) is large), then read x(l) and x(u) off the histogram: the
lowest value of l's bucket and the highest of u's, so bucketing only widens
the interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

from loadkit.record.histogram import HdrHistogram, value_at_rank_us

EXACT_BELOW = 50.0  # n·q·(1−q) under this: exact binomial sums


def rank_interval(n: int, q: float, level: float = 0.95,
                  n_eff: float | None = None) -> tuple[int, int]:
    """1-based ranks (l, u); u may exceed n (the interval is then unbounded
    above). With `n_eff` < n (correlated samples: slo/correlation.py) the
    ranks are those of n_eff independent samples, stretched to n."""
    if n_eff is not None and n_eff < n:
        m = max(1, round(n_eff))
        lower, upper = rank_interval(m, q, level)
        return max(1, math.floor((lower - 0.5) * n / m + 0.5)), \
            math.ceil((upper - 0.5) * n / m + 0.5)
    alpha = 1.0 - level
    if n * q * (1.0 - q) >= EXACT_BELOW:
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        sd = math.sqrt(n * q * (1.0 - q))
        return max(1, math.floor(n * q - z * sd + 0.5)), math.ceil(n * q + z * sd + 0.5)
    cdf, lower, upper = 0.0, 1, n + 1
    log_q, log_p = math.log(q), math.log1p(-q)
    # Here n·q·(1−q) < 50: below k0 (12 sd under the mean) the mass is < 1e-30.
    k0 = max(0, math.floor(n * q - 12.0 * math.sqrt(n * q * (1.0 - q)) - 20))
    lower = k0 + 1 if k0 else 1
    for k in range(k0, n + 1):
        pmf = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                       + k * log_q + (n - k) * log_p)
        if cdf + pmf <= alpha / 2.0:
            lower = k + 1  # P(B <= k) still within the lower tail
        cdf += pmf
        if cdf >= 1.0 - alpha / 2.0:
            upper = k + 1
            break
    return lower, upper


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(B <= k), B ~ Binomial(n, p): exact sums while n·p·(1−p) is small
    (the mass beyond 12 sd of the mean is < 1e-30), the normal approximation
    with continuity correction beyond."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    var = n * p * (1.0 - p)
    if var >= EXACT_BELOW:
        return NormalDist().cdf((k + 0.5 - n * p) / math.sqrt(var))
    lo = max(0, math.floor(n * p - 12.0 * math.sqrt(var) - 20))
    hi = min(k, math.ceil(n * p + 12.0 * math.sqrt(var) + 20))
    if hi < lo:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                         + i * log_p + (n - i) * log_q) for i in range(lo, hi + 1))
    return min(1.0, total)


def scaled(k: int, n: int, n_eff: float | None) -> tuple[int, int]:
    """k of n as k' of n' = n_eff: the same share, the evidence of n_eff
    independent samples (None, or n_eff >= n: unchanged)."""
    if n_eff is None or n_eff >= n or n <= 0:
        return k, n
    m = max(1, round(n_eff))
    return round(k * m / n), m


def exceedance_decides(k_sure: int, k_maybe: int, n: int, allowed: float,
                       level: float = 0.95, n_eff: float | None = None) -> bool | None:
    """Whether "P(bad) < allowed" holds, from k of n samples on the bad side
    (`k_sure` surely, `k_maybe` counting those within the histogram's
    resolution of the threshold): True when even k_maybe is few enough,
    False when even k_sure is too many, None when the data do not decide."""
    if n <= 0 or not 0.0 < allowed < 1.0:
        return None  # no sample, or a bound no probability can cross
    (k_sure, _), (k_maybe, n) = scaled(k_sure, n, n_eff), scaled(k_maybe, n, n_eff)
    alpha = 1.0 - level
    if binomial_cdf(k_maybe, n, allowed) <= alpha:
        return True
    if 1.0 - binomial_cdf(k_sure - 1, n, allowed) <= alpha:
        return False
    return None


# Alternatives mixed by the always-valid test, on each side of the bound.
_MIXTURE = 20


def always_valid_decides(k_sure: int, k_maybe: int, n: int, allowed: float,
                         level: float = 0.95, n_eff: float | None = None) -> bool | None:
    """exceedance_decides for data looked at again and again (after every
    interval of a run that stops once decided): a mixture of likelihood
    ratios against the bound is a nonnegative supermartingale under the
    opposite claim, so by Ville's inequality it ever reaches 1/alpha with
    probability at most alpha, however often it is checked. It asks for more
    samples than the one-look test (about 600 rather than 299 to pass p99
    with none above)."""
    if n <= 0 or not 0.0 < allowed < 1.0:
        return None
    (k_sure, _), (k_maybe, n) = scaled(k_sure, n, n_eff), scaled(k_maybe, n, n_eff)
    bar = math.log(1.0 / (1.0 - level))
    # "P(bad) < allowed" against P >= allowed: alternatives q below the bound
    # (each factor's mean is <= 1 for any P >= allowed), and the other way.
    below = [allowed * i / _MIXTURE for i in range(_MIXTURE)]
    above = [allowed ** (1.0 - (i + 1) / (_MIXTURE + 1)) for i in range(_MIXTURE)]
    if _log_mixture(k_maybe, n, allowed, below) >= bar:
        return True
    if _log_mixture(k_sure, n, allowed, above) >= bar:
        return False
    return None


def samples_to_decide(allowed: float, level: float = 0.95) -> int:
    """The fewest samples the always-valid test passes with none on the bad
    side (436 for 1%)."""
    lo, hi = 1, 1
    while always_valid_decides(0, 0, hi, allowed, level) is not True:
        lo, hi = hi, hi * 2
    while lo < hi:  # the test passes at hi, not at lo (or lo is 1)
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if always_valid_decides(0, 0, mid, allowed, level) is not True \
            else (lo, mid)
    return hi


def _log_mixture(k: float, n: float, p0: float, qs: list[float]) -> float:
    terms = [(k * math.log(q / p0) if k else 0.0) + (n - k) * math.log((1.0 - q) / (1.0 - p0))
             for q in qs if q > 0.0 or k == 0]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms) / len(qs))


def share_interval(k: int, n: int, level: float = 0.95,
                   n_eff: float | None = None) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a share, k of n: the p's whose
    binomial puts at least (1 - level)/2 on each side of k."""
    k, n = scaled(k, n, n_eff)
    tail = (1.0 - level) / 2.0

    def solve(holds: Callable[[float], bool]) -> float:
        lo, hi = 0.0, 1.0  # holds(lo) and not holds(hi): bisect the boundary
        for _ in range(50):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        return (lo + hi) / 2.0
    low = 0.0 if k == 0 else solve(lambda p: 1.0 - binomial_cdf(k - 1, n, p) < tail)
    high = 1.0 if k >= n else solve(lambda p: binomial_cdf(k, n, p) > tail)
    return low, high


def samples_to_pass(allowed: float, level: float = 0.95) -> int:
    """The fewest samples that pass with none on the bad side."""
    return math.ceil(math.log(1.0 - level) / math.log1p(-allowed))


def percentile_interval(h: HdrHistogram, q: float, failed: int = 0, level: float = 0.95,
                        n_eff: float | None = None) -> tuple[float, float | None]:
    """(low, high) in ms for the q-quantile over answers plus `failed` attempts
    that count as slower than anything; high is None when unbounded."""
    n_ok = h.get_total_count()
    lower, upper = rank_interval(n_ok + failed, q, level, n_eff)
    low = _at_rank(h, lower, lowest=True) if lower <= n_ok else None
    high = _at_rank(h, upper, lowest=False) if upper <= n_ok else None
    return (low if low is not None else math.inf), high


def _at_rank(h: HdrHistogram, rank: int, lowest: bool) -> float:
    return value_at_rank_us(h, rank, lowest) / 1000.0
