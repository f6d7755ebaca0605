"""Baseline comparison's statistics: is the candidate slower than the base, for real?

Per series (metric × scope) and statistic (p50, p90, p99):

- The decision rests on the percentile's change and its interval, built from
  each run's distribution-free 97.5% percentile interval (cand_low /
  base_high .. cand_high / base_low, so at least 95% together, and
  conservative). A regression needs the whole interval above the tolerance;
  an improvement mirrors it; a slow-down the interval confirms (it excludes
  zero) but cannot place beyond the tolerance is `inconclusive`. With large samples any tiny shift is
  "significant"; the tolerance keeps a gate from flapping on noise.
- A Mann–Whitney U test on the two histograms (bucket counts as tied values,
  midranks, tie-corrected variance, normal approximation) is reported beside
  it (two-sided p): it says whether the distribution moved as a whole, which
  a tail regression under a faster bulk would not show, so it informs but
  does not decide.

Error rates are compared as two proportions (z-test) against a tolerance in
percentage points. Pure functions over histograms and RunResult models.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from loadkit.compare.model import Decision, Row
from loadkit.errors import InputError
from loadkit.record.histogram import (
    DamagedHistogram,
    HdrHistogram,
    decode,
    merged,
    percentile_us,
    recorded_us,
)
from loadkit.result.model import ALL, RunResult, Scope, SeriesTag
from loadkit.slo.confidence import percentile_interval
from loadkit.slo.evaluate import samples_needed
from loadkit.slo.scopes import Phases

COMPARED_METRICS = ("latency", "service_time", "ttft", "ttfo", "itl", "tpot")
DEFAULT_STATS = ("p50", "p90", "p99")
DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_ERROR_TOLERANCE_PP = 0.5  # percentage points
ALPHA = 0.05

Series = tuple[str, Scope]  # (metric, scope)


def parse_tolerances(items: Iterable[str],
                     stats: tuple[str, ...] = DEFAULT_STATS) -> dict[str, float]:
    """`p99=10%`, `ttft.p99=20%`, `error_rate=1%` -> {key: percent}. A key
    that names no compared metric or statistic is a ValueError naming the
    known ones: a typo must not leave a regression untolerated in silence."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        value = value.strip().removesuffix("%")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not key.strip() or not math.isfinite(number) or number < 0:
            raise ValueError(f"--max-regression takes STAT=PCT such as p99=10% or "
                             f"ttft.p99=20% or error_rate=1%, got {item!r}")
        key = key.strip()
        _check_key(key, item, stats)
        out[key] = number
    return out


def _check_key(key: str, item: str, stats: tuple[str, ...]) -> None:
    if key == "error_rate":
        return
    metric, dot, stat = key.rpartition(".")
    if dot and metric not in COMPARED_METRICS:
        raise ValueError(f"unknown metric {metric!r} in {item!r}: the metrics compared are "
                         f"{', '.join(COMPARED_METRICS)} (and error_rate)")
    if stat not in stats:
        raise ValueError(f"unknown statistic {stat!r} in {item!r}: the statistics compared "
                         f"are {', '.join(stats)} (METRIC.STAT for one metric: "
                         f"{', '.join(COMPARED_METRICS)}; or error_rate)")


def scoped(run: RunResult) -> dict[Series, HdrHistogram]:
    """The run's cumulative histograms merged per (metric, scope)."""
    phases = Phases(run.phases)
    tags = [_parts(run, tag) for tag in run.histograms]
    # A tenant or scenario that is the only one is the same series as `all`.
    several = {kind: len({t[i] for t in tags}) > 1 for kind, i in (("scenario", 2),
                                                                   ("tenant", 3))}
    # TTFO is TTFT's own samples unless the model reasoned first: compared then only.
    reasoned = any(t.metric == "reasoning_time" for t in tags)
    parts: dict[Series, list[HdrHistogram]] = defaultdict(list)
    for (metric, phase, scenario, tenant), payload in zip(tags, run.histograms.values()):
        if metric not in COMPARED_METRICS or (metric == "ttfo" and not reasoned):
            continue
        h = _decode(run, f"{metric}.{phase}.{scenario}.{tenant}", payload)
        for scope in phases.scopes(phase, scenario, tenant):
            if scope.kind == "all" or several.get(scope.kind):
                parts[(metric, scope)].append(h)
    return {k: merged(hs) for k, hs in parts.items()}


def _parts(run: RunResult, tag: str) -> SeriesTag:
    key = SeriesTag.parse(tag)
    if key is None:
        raise InputError(f"run {run.run_id}: histograms: {tag!r} is not "
                         "metric.phase.scenario.tenant")
    return key


def _decode(run: RunResult, tag: str, payload: str) -> HdrHistogram:
    try:
        return decode(payload)
    except DamagedHistogram as exc:
        raise InputError(f"run {run.run_id}: histograms.{tag} is not an encoded HDR "
                         f"histogram ({exc or type(exc).__name__})") from None


def mann_whitney(a: HdrHistogram, b: HdrHistogram) -> tuple[float, float]:
    """(z, two-sided p) of 'b tends to be larger than a'; values in a bucket tie."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for i, h in enumerate((a, b)):
        for value, count in zip(*recorded_us(h), strict=True):
            counts[h.get_lowest_equivalent_value(value)][i] += count
    n_a, n_b = a.get_total_count(), b.get_total_count()
    n = n_a + n_b
    rank_sum_b, below, ties = 0.0, 0, 0.0
    for value in sorted(counts):
        ca, cb = counts[value]
        t = ca + cb
        rank_sum_b += cb * (below + (t + 1) / 2.0)
        below += t
        ties += t ** 3 - t
    u_b = rank_sum_b - n_b * (n_b + 1) / 2.0
    var = n_a * n_b / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 0.0, 1.0
    z = (u_b - n_a * n_b / 2.0) / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2.0))


def samples_for(stat: str) -> int:
    """The samples each run needs for a percentile (`p99`) to be compared."""
    return samples_needed(float(stat[1:]) / 100.0)


def compare_series(metric: str, scope: str, base: HdrHistogram, cand: HdrHistogram,
                   stats: tuple[str, ...], tolerances: Mapping[str, float]) -> list[Row]:
    _z, p = mann_whitney(base, cand)
    rows = []
    for stat in stats:
        q = float(stat[1:]) / 100.0
        tol = tolerances.get(f"{metric}.{stat}", tolerances.get(stat, DEFAULT_TOLERANCE_PCT))
        nb, nc = base.get_total_count(), cand.get_total_count()
        if min(nb, nc) < samples_for(stat):
            rows.append(_row(metric, scope, stat, None, None, None, None, None, p, tol,
                             Decision.INSUFFICIENT_SAMPLES, nb, nc))
            continue
        b = percentile_us(base, q * 100.0) / 1000.0
        c = percentile_us(cand, q * 100.0) / 1000.0
        # Two 97.5% intervals: their ratio bounds cover the change with >= 95%.
        b_low, b_high = percentile_interval(base, q, level=0.975)
        c_low, c_high = percentile_interval(cand, q, level=0.975)
        change = _pct(c, b)
        low = _pct(c_low, b_high) if b_high is not None else None
        high = _pct(c_high, b_low) if c_high is not None and b_low > 0 else None
        rows.append(_row(metric, scope, stat, b, c, change, low, high, p, tol,
                         _decide(low, high, change, tol), nb, nc))
    return rows


def _row(metric: str, scope: str, stat: str, base: float | None, cand: float | None,
         change: float | None, low: float | None, high: float | None, p: float | None,
         tol: float, decision: Decision, nb: int, nc: int, unit: str = "ms") -> Row:
    return Row(metric=metric, scope=Scope(scope), stat=stat, base=base, cand=cand,
               change_pct=change, ci_low_pct=low, ci_high_pct=high, p_value=p,
               tolerance_pct=tol, decision=decision, samples_base=nb, samples_cand=nc,
               unit=unit)


def _pct(new: float, old: float) -> float | None:
    return None if old <= 0 else round((new / old - 1.0) * 100.0, 3)


def _decide(low: float | None, high: float | None, change: float | None,
            tol: float) -> Decision:
    """On the percentile's own interval: a tail can regress while the bulk
    improves, which a rank test over the whole distribution would miss."""
    if low is not None and low > tol:
        return Decision.REGRESSION
    if high is not None and high < -tol:
        return Decision.IMPROVEMENT
    if low is not None and low > 0 and change is not None and change > tol:
        return Decision.INCONCLUSIVE  # surely slower, maybe beyond tolerance: cannot tell
    return Decision.NO_CHANGE


def compare_errors(base: RunResult, cand: RunResult, tol_pp: float) -> Row:
    b, c = base.counts, cand.counts
    nb = b.completed + b.errors + b.dropped
    nc = c.completed + c.errors + c.dropped
    eb = (b.errors + b.dropped) / nb if nb else 0.0
    ec = (c.errors + c.dropped) / nc if nc else 0.0
    pooled = (eb * nb + ec * nc) / (nb + nc) if nb + nc else 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / max(nb, 1) + 1 / max(nc, 1)))
    z = (ec - eb) / se if se > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0)) if se > 0 else 1.0
    diff_pp = (ec - eb) * 100.0
    se_pp = math.sqrt(eb * (1 - eb) / max(nb, 1) + ec * (1 - ec) / max(nc, 1)) * 100.0
    low, high = diff_pp - 1.96 * se_pp, diff_pp + 1.96 * se_pp
    decision = (Decision.REGRESSION if p < ALPHA and low > tol_pp else
                Decision.IMPROVEMENT if p < ALPHA and high < -tol_pp else Decision.NO_CHANGE)
    return _row("error_rate", ALL, "rate", eb, ec, round(diff_pp, 4), round(low, 4),
                round(high, 4), p, tol_pp, decision, nb, nc, unit="%")


def verdict(rows: list[Row]) -> Decision:
    """A regression anywhere; else inconclusive if any row is, or no latency
    series had the samples to decide; else an improvement anywhere."""
    decisions = {r.decision for r in rows}
    decided = any(r.decision != Decision.INSUFFICIENT_SAMPLES
                  for r in rows if r.metric != "error_rate")
    return (Decision.REGRESSION if Decision.REGRESSION in decisions else
            Decision.INCONCLUSIVE if Decision.INCONCLUSIVE in decisions or not decided else
            Decision.IMPROVEMENT if Decision.IMPROVEMENT in decisions else Decision.NO_CHANGE)
