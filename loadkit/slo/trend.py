"""Trend objectives: the slope of per-window values, with its confidence interval.

`ttft p99 trend < 10%/h` is judged on one value per window (the window's
p99, from its own merged histograms; or, for `gpu.mem_used`, the window's
mean memory in use summed over GPUs), placed at the window's middle:

- **Estimator: Theil-Sen**, the median of the slopes between every pair of
  windows (robust: a few wild windows cannot tilt it), and the line through
  the median of `value - slope * t` (t from the start of the measured time).
- **Interval: Sen's (1968)** distribution-free 95% interval: Kendall's S has
  variance n(n-1)(2n+5)/18 (less ties), so with C = z * sqrt(Var S) and N
  pairwise slopes, the bounds are the sorted slopes of rank (N - C)/2 and
  (N + C)/2 + 1 (the normal approximation; as scipy.stats.theilslopes).
- **Units**: an absolute trend (`ms/min`, `MB/h`) is the slope in the
  threshold's unit; a relative one (`%/h`) is the slope over the fitted value
  at the start of the measured time, in percent (the interval's bounds
  divided by the same value).
- **Verdict**: pass when the whole interval satisfies the threshold, fail
  when none of it does, inconclusive otherwise, or with fewer than
  MIN_WINDOWS windows that have a value (a window without one had too few
  samples for its percentile, or failures beyond its tail).

Windows: `in 60s windows`, else `default_window`: 60 s, shortened for runs
under 20 minutes so that the scope holds at least 20 windows, always whole
intervals. Over MAX_FIT_POINTS windows, consecutive windows are pooled
(median value at their mean time) before fitting: the pairwise slopes grow
with the square of the count, and pooling only widens the interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from loadkit.result.model import Scope, SLOResult, Trend, Verdict
from loadkit.workload.slo_spec import OPERATORS, Objective

LEVEL = 0.95
MIN_WINDOWS = 10
DEFAULT_WINDOW_S = 60.0
MIN_DEFAULT_WINDOWS = 20
MAX_FIT_POINTS = 1000


@dataclass(frozen=True)
class Fit:
    """A Theil-Sen line: value = intercept + slope * x, slope's interval [low, high]."""

    slope: float
    intercept: float
    low: float
    high: float
    n: int
    level: float


def theil_sen(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
              level: float = LEVEL) -> Fit:
    """The median pairwise slope, its intercept and Sen's confidence interval.

    Pairs with equal x carry no slope and are left out. ValueError with fewer
    than two distinct x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xs)
    i, j = np.triu_indices(n, 1)
    dx = xs[j] - xs[i]
    keep = dx != 0
    slopes = np.sort((ys[j] - ys[i])[keep] / dx[keep])
    if not len(slopes):
        raise ValueError("a slope needs at least two distinct times")
    slope = float(np.median(slopes))
    intercept = float(np.median(ys - slope * xs))
    var_s = (n * (n - 1) * (2 * n + 5) - _ties(xs) - _ties(ys)) / 18.0
    c = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(max(var_s, 0.0))
    pairs = len(slopes)
    lo = int(np.clip(np.round((pairs - c) / 2.0) - 1, 0, pairs - 1))
    hi = int(np.clip(np.round((pairs + c) / 2.0), 0, pairs - 1))
    return Fit(slope, intercept, float(slopes[lo]), float(slopes[hi]), n, level)


def _ties(v: np.ndarray) -> float:
    """Sum of t(t-1)(2t+5) over groups of t equal values (Kendall's tie term)."""
    _, counts = np.unique(v, return_counts=True)
    t = counts[counts > 1].astype(float)
    return float(np.sum(t * (t - 1) * (2 * t + 5)))


def pooled(x: np.ndarray, y: np.ndarray, limit: int = MAX_FIT_POINTS
           ) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` points: consecutive groups as (mean x, median y)."""
    if len(x) <= limit:
        return x, y
    groups = np.array_split(np.arange(len(x)), limit)
    return (np.array([x[g].mean() for g in groups]), np.array([np.median(y[g]) for g in groups]))


def default_window(span_s: float, interval_s: float) -> float:
    """60 s, or shorter so that `span_s` holds at least 20 windows; whole
    intervals, and at least 1 s (as every window is)."""
    want = min(DEFAULT_WINDOW_S, span_s / MIN_DEFAULT_WINDOWS)
    k = max(math.floor(want / interval_s + 1e-9), math.ceil(1.0 / interval_s - 1e-9), 1)
    return k * interval_s


def judge(op: str, low: float, high: float, threshold: float) -> Verdict:
    """Pass when the whole interval meets the threshold, fail when none of it does."""
    ok = OPERATORS[op]
    if ok(low, threshold) and ok(high, threshold):
        return Verdict.PASS
    if not ok(low, threshold) and not ok(high, threshold):
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


def trend_result(o: Objective, points: Sequence[tuple[float, float]], *, windows: int,
                 window_s: float, origin_s: float, value_unit: str, samples: int,
                 level: float = LEVEL) -> SLOResult:
    """The verdict of trend objective `o` on its per-window `points`
    ((window middle s, value)); `windows` counts those without a value too."""
    spec = o.trend
    assert spec is not None, "trend_result takes trend objectives"
    pts = sorted((float(t), float(v)) for t, v in points if math.isfinite(v))
    line = Trend(window_s=window_s, value_unit=value_unit, origin_s=round(origin_s, 3),
                 points=[(round(t, 3), round(v, 6)) for t, v in pts], windows=windows,
                 level=level)

    def result(verdict: Verdict, reason: str, observed: float | None = None,
               interval: tuple[float | None, float | None] = (None, None),
               fit: Fit | None = None) -> SLOResult:
        trend = line if fit is None else line.model_copy(update={
            "slope_per_s": fit.slope, "intercept": fit.intercept})
        return SLOResult(name=o.name, text=o.text, metric=o.metric, scope=Scope(o.scope),
                         op=o.op, threshold=o.threshold, unit=o.unit, observed=observed,
                         samples=samples, verdict=verdict, reason=reason,
                         ci_low=interval[0], ci_high=interval[1], trend=trend)

    without = windows - len(pts)
    skipped = (f"; {without} of {windows} windows had no value (too few samples, or "
               "failures beyond the tail)") if without else ""
    if len(pts) < MIN_WINDOWS:
        return result(Verdict.INCONCLUSIVE, f"{len(pts)} windows of {window_s:g}s with a "
                      f"value; a trend needs at least {MIN_WINDOWS}{skipped}")
    x = np.array([t - origin_s for t, _v in pts])
    y = np.array([v for _t, v in pts])
    fit = theil_sen(*pooled(x, y), level=level)
    if spec.relative:
        if fit.intercept <= 0:
            return result(Verdict.INCONCLUSIVE, f"the fitted value at the start is "
                          f"{fit.intercept:.4g} {value_unit}: a relative trend needs a "
                          f"positive one", fit=fit)
        k = spec.per_s * 100.0 / fit.intercept
    else:
        k = spec.per_s / spec.scale
    observed, low, high = fit.slope * k, fit.low * k, fit.high * k
    verdict = judge(o.op, low, high, o.threshold)
    where = {Verdict.PASS: "the whole interval meets the threshold",
             Verdict.FAIL: "the whole interval misses the threshold",
             Verdict.INCONCLUSIVE: "the threshold lies inside the interval"}[verdict]
    pooled_note = f", pooled into {MAX_FIT_POINTS}" if len(pts) > MAX_FIT_POINTS else ""
    reason = (f"Theil-Sen slope over {len(pts)} windows of {window_s:g}s{pooled_note}, "
              f"{level:.0%} interval; fitted {fit.intercept:.4g} {value_unit} at the start; "
              f"{where}{skipped}")
    return result(verdict, reason, observed, (low, high), fit)
