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
from loadkit.workload.slo_spec import Objective

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
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

    def to_dict(self) -> dict:
        return asdict(self)


def samples_needed(quantile: float) -> int:
    return math.ceil(round(10.0 / (1.0 - quantile), 6))  # round: 1-0.999 is inexact


def evaluate(objective: Objective, histograms: list[HdrHistogram], counts: Counts) -> SLOResult:
    """One objective against the histograms and counts of its scope."""
    o = objective
    observed: float | None = None
    samples = 0
    reason = ""
    if o.quantile is not None or o.stat in ("mean", "max", "min"):
        h = merged(histograms)
        samples = h.get_total_count()
        if o.quantile is not None and samples < samples_needed(o.quantile):
            reason = (f"{samples} samples; {o.stat} needs at least "
                      f"{samples_needed(o.quantile)}")
        elif samples == 0:
            reason = "no samples"
        elif o.quantile is not None:
            observed = h.get_value_at_percentile(o.quantile * 100.0) / 1000.0
        elif o.stat == "mean":
            observed = h.get_mean_value() / 1000.0
        elif o.stat == "max":
            observed = h.get_max_value() / 1000.0
        else:
            observed = h.get_min_value() / 1000.0
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
        verdict = INCONCLUSIVE
    else:
        verdict = PASS if _OPS[o.op](observed, o.threshold) else FAIL
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
                 counts: Mapping[str, Counts]) -> list[SLOResult]:
    """`histograms[(metric, scope)]` and `counts[scope]` come from the result."""
    return [evaluate(o, histograms.get((o.metric, o.scope), []),
                     counts.get(o.scope, Counts(0, 0, 0, 1.0)))
            for o in objectives]
