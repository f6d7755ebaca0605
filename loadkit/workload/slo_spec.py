"""SLO objectives as written in workload files, parsed without eval.

Grammar (one line each)::

    objective := METRIC [STAT] OP NUMBER [UNIT]
    STAT      := pNN[.N] | mean | max | min          (time metrics only)
    OP        := < | <= | > | >=
    UNIT      := us | ms | s  (time) · %  (error_rate) · req/s  (throughput)

Examples: ``latency p99 < 500ms``, ``ttft p50 <= 0.2s``,
``error_rate < 1%``, ``throughput >= 10 req/s``, ``isolation_ratio <= 1.5``
(a tenant's latency p99 while another tenant spikes / in quiet phases).
Thresholds are normalised: times to milliseconds, rates to fractions.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

TIME_METRICS = ("latency", "service_time", "ttft", "ttft_corrected", "itl", "tpot",
                "max_stall", "lateness")
RATE_METRICS = ("error_rate", "throughput", "isolation_ratio")
METRICS = TIME_METRICS + RATE_METRICS

_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_OBJECTIVE = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\s+(?:(?P<stat>p\d+(?:\.\d+)?|mean|max|min)\s+)?"
    r"(?P<op><=|>=|<|>)\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zµ/%]+)?\s*$"
)


class Objective(BaseModel):
    """One parsed SLO: `metric stat op threshold`, with an optional tenant scope."""

    model_config = ConfigDict(frozen=True)

    text: str
    metric: str
    stat: str | None  # "p99", "mean", "max", "min"; None for rate metrics
    quantile: float | None  # 0.99 for p99
    op: str
    threshold: float  # ms for time metrics, fraction for error_rate, req/s for throughput
    unit: str  # how to display observed values: "ms", "%", "req/s", "x"
    scope: str = "all"  # "all", "tenant:<name>" or "phase:<name>"

    @property
    def name(self) -> str:
        return f"{self.text} [{self.scope}]"


def parse_objective(text: str, scope: str = "all") -> Objective:
    """Parse one objective line; ValueError says what is wrong with it."""
    m = _OBJECTIVE.match(text)
    if not m:
        raise ValueError(
            f"cannot parse SLO {text!r}; expected e.g. 'latency p99 < 500ms', "
            "'error_rate < 1%' or 'throughput >= 10 req/s'"
        )
    metric, stat, op, num, unit = m.group("metric", "stat", "op", "num", "unit")
    value = float(num)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    quantile = None
    if metric in TIME_METRICS:
        if stat is None:
            raise ValueError(f"{metric} needs a statistic (p99, p50, mean, max, min)")
        if stat.startswith("p"):
            quantile = float(stat[1:]) / 100.0
            if not 0.0 < quantile < 1.0:
                raise ValueError(f"percentile {stat} must lie strictly between p0 and p100")
        if unit not in _TIME_UNITS:
            raise ValueError(f"{metric} needs a time unit (us, ms, s), got {unit!r}")
        return Objective(text=text.strip(), metric=metric, stat=stat, quantile=quantile,
                         op=op, threshold=value * _TIME_UNITS[unit], unit="ms", scope=scope)
    if stat is not None:
        raise ValueError(f"{metric} takes no statistic, got {stat!r}")
    if metric == "error_rate":
        if unit == "%":
            value /= 100.0
        elif unit is not None:
            raise ValueError(f"error_rate takes % or a bare fraction, got {unit!r}")
        if value > 1.0:
            raise ValueError("error_rate threshold must be at most 100%")
        return Objective(text=text.strip(), metric=metric, stat=None, quantile=None,
                         op=op, threshold=value, unit="%", scope=scope)
    if metric == "isolation_ratio":
        if unit not in ("x", None):
            raise ValueError(f"isolation_ratio is a plain ratio, got unit {unit!r}")
        return Objective(text=text.strip(), metric=metric, stat=None, quantile=None,
                         op=op, threshold=value, unit="x", scope=scope)
    if unit not in ("req/s", "rps", None):
        raise ValueError(f"throughput takes req/s, got {unit!r}")
    return Objective(text=text.strip(), metric=metric, stat=None, quantile=None,
                     op=op, threshold=value, unit="req/s", scope=scope)
