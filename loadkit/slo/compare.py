"""Baseline comparison: is the candidate run slower than the base, for real?

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
percentage points. Pure functions over two run.json documents.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass

from hdrh.histogram import HdrHistogram

from loadkit.record.histogram import decode, merged
from loadkit.slo.confidence import percentile_interval
from loadkit.slo.evaluate import samples_needed
from loadkit.slo.scopes import Phases

COMPARED_METRICS = ("latency", "service_time", "ttft", "itl", "tpot")
DEFAULT_STATS = ("p50", "p90", "p99")
DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_ERROR_TOLERANCE_PP = 0.5  # percentage points
ALPHA = 0.05
REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no_change"
INCONCLUSIVE, INSUFFICIENT = "inconclusive", "insufficient_samples"


@dataclass(frozen=True)
class Row:
    metric: str
    scope: str
    stat: str
    base: float | None
    cand: float | None
    change_pct: float | None
    ci_low_pct: float | None
    ci_high_pct: float | None
    p_value: float | None
    tolerance_pct: float
    decision: str
    samples_base: int
    samples_cand: int
    unit: str = "ms"


def parse_tolerances(items: list[str]) -> dict[str, float]:
    """`p99=10%`, `ttft.p99=20%`, `error_rate=1%` -> {key: percent}."""
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
        out[key.strip()] = number
    return out


def scoped(run: dict) -> dict[tuple[str, str], HdrHistogram]:
    """The run's cumulative histograms merged per (metric, scope)."""
    phases = Phases(run["phases"])
    tags = [tag.split(".") for tag in run.get("histograms", {})]
    # A tenant or scenario that is the only one is the same series as `all`.
    several = {kind: len({t[i] for t in tags}) > 1 for kind, i in (("scenario", 2),
                                                                   ("tenant", 3))}
    parts: dict[tuple[str, str], list[HdrHistogram]] = defaultdict(list)
    for tag, payload in run.get("histograms", {}).items():
        metric, phase, scenario, tenant = tag.split(".")
        if metric not in COMPARED_METRICS:
            continue
        h = decode(payload)
        for scope in phases.scopes(phase, scenario, tenant):
            kind = scope.partition(":")[0]
            if kind == "all" or several.get(kind):
                parts[(metric, scope)].append(h)
    return {k: merged(hs) for k, hs in parts.items()}


def mann_whitney(a: HdrHistogram, b: HdrHistogram) -> tuple[float, float]:
    """(z, two-sided p) of 'b tends to be larger than a'; values in a bucket tie."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for i, h in enumerate((a, b)):
        for item in h.get_recorded_iterator():
            counts[h.get_lowest_equivalent_value(item.value_iterated_to)][i] += \
                item.count_at_value_iterated_to
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


def compare_series(metric: str, scope: str, base: HdrHistogram, cand: HdrHistogram,
                   stats: tuple[str, ...], tolerances: dict[str, float]) -> list[Row]:
    _z, p = mann_whitney(base, cand)
    rows = []
    for stat in stats:
        q = float(stat[1:]) / 100.0
        tol = tolerances.get(f"{metric}.{stat}", tolerances.get(stat, DEFAULT_TOLERANCE_PCT))
        nb, nc = base.get_total_count(), cand.get_total_count()
        if min(nb, nc) < samples_needed(q):
            rows.append(Row(metric, scope, stat, None, None, None, None, None, p, tol,
                            INSUFFICIENT, nb, nc))
            continue
        b = base.get_value_at_percentile(q * 100.0) / 1000.0
        c = cand.get_value_at_percentile(q * 100.0) / 1000.0
        # Two 97.5% intervals: their ratio bounds cover the change with >= 95%.
        b_low, b_high = percentile_interval(base, q, level=0.975)
        c_low, c_high = percentile_interval(cand, q, level=0.975)
        change = _pct(c, b)
        low = _pct(c_low, b_high) if b_high is not None else None
        high = _pct(c_high, b_low) if c_high is not None and b_low > 0 else None
        rows.append(Row(metric, scope, stat, b, c, change, low, high, p, tol,
                        _decide(low, high, change, tol), nb, nc))
    return rows


def _pct(new: float, old: float) -> float | None:
    return None if old <= 0 else round((new / old - 1.0) * 100.0, 3)


def _decide(low: float | None, high: float | None, change: float | None,
            tol: float) -> str:
    """On the percentile's own interval: a tail can regress while the bulk
    improves, which a rank test over the whole distribution would miss."""
    if low is not None and low > tol:
        return REGRESSION
    if high is not None and high < -tol:
        return IMPROVEMENT
    if low is not None and low > 0 and change is not None and change > tol:
        return INCONCLUSIVE  # surely slower, maybe beyond tolerance: cannot tell
    return NO_CHANGE


def compare_errors(base: dict, cand: dict, tol_pp: float) -> Row:
    nb = base["counts"]["completed"] + base["counts"]["errors"] + base["counts"]["dropped"]
    nc = cand["counts"]["completed"] + cand["counts"]["errors"] + cand["counts"]["dropped"]
    eb = (base["counts"]["errors"] + base["counts"]["dropped"]) / nb if nb else 0.0
    ec = (cand["counts"]["errors"] + cand["counts"]["dropped"]) / nc if nc else 0.0
    pooled = (eb * nb + ec * nc) / (nb + nc) if nb + nc else 0.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / max(nb, 1) + 1 / max(nc, 1)))
    z = (ec - eb) / se if se > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0)) if se > 0 else 1.0
    diff_pp = (ec - eb) * 100.0
    se_pp = math.sqrt(eb * (1 - eb) / max(nb, 1) + ec * (1 - ec) / max(nc, 1)) * 100.0
    low, high = diff_pp - 1.96 * se_pp, diff_pp + 1.96 * se_pp
    decision = (REGRESSION if p < ALPHA and low > tol_pp else
                IMPROVEMENT if p < ALPHA and high < -tol_pp else NO_CHANGE)
    return Row("error_rate", "all", "rate", eb, ec, round(diff_pp, 4), round(low, 4),
               round(high, 4), p, tol_pp, decision, nb, nc, unit="%")


def compare_runs(base: dict, cand: dict, tolerances: dict[str, float] | None = None,
                 stats: tuple[str, ...] = DEFAULT_STATS) -> dict:
    """The comparison document (compare.json)."""
    tolerances = tolerances or {}
    hb, hc = scoped(base), scoped(cand)
    rows: list[Row] = []
    for key in sorted(hb.keys() & hc.keys(), key=lambda k: (COMPARED_METRICS.index(k[0]), k[1])):
        rows += compare_series(*key, hb[key], hc[key], stats, tolerances)
    rows.append(compare_errors(base, cand, tolerances.get("error_rate",
                                                          DEFAULT_ERROR_TOLERANCE_PP)))
    decisions = {r.decision for r in rows}
    decided = any(r.decision != INSUFFICIENT for r in rows if r.metric != "error_rate")
    verdict = (REGRESSION if REGRESSION in decisions else
               INCONCLUSIVE if INCONCLUSIVE in decisions or not decided else
               IMPROVEMENT if IMPROVEMENT in decisions else NO_CHANGE)
    warnings = [f"{name} run is untrusted: {'; '.join(run['untrusted_reasons'])}"
                for name, run in (("base", base), ("candidate", cand)) if not run["trusted"]]
    if base["workload"].get("sha256") != cand["workload"].get("sha256"):
        warnings.append("the two runs used different workload files")
    only = sorted((hb.keys() ^ hc.keys()))
    if only:
        warnings.append("series in one run only (not compared): "
                        + ", ".join(f"{m} [{s}]" for m, s in only))
    return {
        "schema_version": 1,
        "kind": "comparison",
        "verdict": verdict,
        "alpha": ALPHA,
        "trusted": base["trusted"] and cand["trusted"],
        "warnings": warnings,
        "base": _identity(base),
        "cand": _identity(cand),
        "rows": [asdict(r) for r in rows],
    }


def _identity(run: dict) -> dict:
    return {"run_id": run.get("run_id"), "workload": run["workload"]["name"],
            "started_at": run.get("started_at"), "target": run.get("target"),
            "verdict": run.get("verdict")}
