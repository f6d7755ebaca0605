"""SLO verdicts: pure functions over the measured histograms and counts.

A percentile needs at least 10/(1-q) samples to be estimated (100 for p90,
1,000 for p99); with fewer, the verdict is `inconclusive`, and says how many
samples it would take. Only the measured phase counts (warm-up is excluded).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from hdrh.histogram import HdrHistogram

from loadkit.record.histogram import merged
from loadkit.slo.confidence import percentile_interval
from loadkit.workload.slo_spec import Objective

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
FAILURE_AWARE = ("latency", "service_time")  # every request has them, or failed
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Counts:
    """Request outcomes in one scope of the measured phase."""

    completed: int
    errors: int
    dropped: int
    duration_s: float


@dataclass(frozen=True)
class SLOResult:
    name: str
    text: str
    metric: str
    scope: str
    op: str
    threshold: float
    unit: str
    observed: float | None
    samples: int
    verdict: str
    reason: str = ""
    ci_low: float | None = None  # 95% interval of a percentile (ms); None: unbounded
    ci_high: float | None = None
    marginal: bool = False  # the threshold lies inside that interval

    def to_dict(self) -> dict:
        return asdict(self)


def samples_needed(quantile: float) -> int:
    return math.ceil(round(10.0 / (1.0 - quantile), 6))  # round: 1-0.999 is inexact


def evaluate(objective: Objective, histograms: list[HdrHistogram], counts: Counts,
             isolation: dict | None = None, strict: bool = False) -> SLOResult:
    """One objective against the histograms, counts (and isolation) of its scope.

    A percentile verdict whose threshold lies inside its 95% confidence
    interval is marked marginal; with `strict` it is inconclusive instead."""
    o = objective
    interval: tuple[float, float | None] | None = None
    observed: float | None = None
    samples = 0
    reason = ""
    if o.quantile is not None or o.stat in ("mean", "max", "min"):
        h = merged(histograms)
        samples = h.get_total_count()
        # A failed or dropped request never answered: for end-to-end metrics
        # it counts as slower than any threshold, so errors cannot thin a tail.
        failed = counts.errors + counts.dropped if o.metric in FAILURE_AWARE else 0
        attempts = samples + failed
        if o.quantile is not None and attempts < samples_needed(o.quantile):
            reason = (f"{attempts} samples; {o.stat} needs at least "
                      f"{samples_needed(o.quantile)}")
        elif o.quantile is not None and failed > (1.0 - o.quantile) * attempts:
            reason = (f"{failed} of {attempts} requests failed or were dropped: more than "
                      f"the {100 * (1 - o.quantile):.3g}% tail, so {o.stat} is a failure")
            return _result(o, None, attempts, FAIL if o.op.startswith("<") else PASS, reason)
        elif o.stat == "max" and failed:
            return _result(o, None, attempts, FAIL if o.op.startswith("<") else PASS,
                           f"{failed} requests failed or were dropped")
        elif samples == 0:
            reason = "no samples"
        elif o.quantile is not None:
            q = o.quantile * attempts / samples  # failures sit above every answer
            observed = h.get_value_at_percentile(min(q, 1.0) * 100.0) / 1000.0
            interval = percentile_interval(h, o.quantile, failed)
        elif o.stat == "mean":
            observed = h.get_mean_value() / 1000.0
        elif o.stat == "max":
            observed = h.get_max_value() / 1000.0
        else:
            observed = h.get_min_value() / 1000.0
        samples = attempts
    elif o.metric == "isolation_ratio":
        iso = isolation or {}
        samples = min(iso.get("samples_spike", 0), iso.get("samples_quiet", 0))
        if iso.get("ratio") is None:
            reason = ("needs phases where another tenant spikes and quiet phases"
                      if not iso.get("spike_phases") or not iso.get("quiet_phases")
                      else "no latency samples in spike or quiet phases")
        elif samples < samples_needed(0.99):
            reason = f"{samples} samples on one side; a p99 needs at least 1000"
        else:
            observed = iso["ratio"]
    elif o.metric == "error_rate":
        samples = counts.completed + counts.errors + counts.dropped
        if samples == 0:
            reason = "no requests in scope"
        else:
            observed = (counts.errors + counts.dropped) / samples
    else:  # throughput: completed requests per second of the measured phase
        samples = counts.completed
        observed = counts.completed / counts.duration_s
    if observed is None:
        return _result(o, None, samples, INCONCLUSIVE, reason)
    verdict = PASS if _OPS[o.op](observed, o.threshold) else FAIL
    if interval is None:
        return _result(o, observed, samples, verdict, reason)
    low, high = interval
    marginal = low <= o.threshold and (high is None or o.threshold <= high)
    if marginal and strict:
        verdict, reason = INCONCLUSIVE, ("the threshold lies inside the 95% confidence "
                                         "interval (--strict)")
    return SLOResult(o.name, o.text, o.metric, o.scope, o.op, o.threshold, o.unit, observed,
                     samples, verdict, reason, low, high, marginal)


def _result(o: Objective, observed: float | None, samples: int, verdict: str,
            reason: str) -> SLOResult:
    return SLOResult(o.name, o.text, o.metric, o.scope, o.op, o.threshold, o.unit,
                     observed, samples, verdict, reason)


def overall(results: list[SLOResult]) -> str:
    verdicts = {r.verdict for r in results}
    if FAIL in verdicts:
        return FAIL
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return PASS


def evaluate_all(objectives: list[Objective],
                 histograms: Mapping[tuple[str, str], list[HdrHistogram]],
                 counts: Mapping[str, Counts],
                 isolation: Mapping[str, dict] | None = None,
                 strict: bool = False) -> list[SLOResult]:
    """`histograms[(metric, scope)]`, `counts[scope]` and `isolation[tenant]`
    come from the result."""
    iso = isolation or {}
    return [evaluate(o, histograms.get((o.metric, o.scope), []),
                     counts.get(o.scope, Counts(0, 0, 0, 1.0)),
                     iso.get(o.scope.removeprefix("tenant:")), strict)
            for o in objectives]
