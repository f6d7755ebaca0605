"""run.json's verdicts: each SLO's result (`slos`), with its windows, its
trend or its recoveries where it has them, and why a run ended early
(`aborted`, `decided`)."""

from __future__ import annotations

from typing import Any

from pydantic import model_serializer

from loadkit.result.parts import Part, Scope, Verdict


class Aborted(Part):
    """An `abort: true` SLO stopped the run."""

    slo: str
    at_s: float
    observed: float | None
    reason: str


class DecidedEarly(Part):
    """stop_when_decided: the verdict was decided at `at_s` (every SLO
    passed, or one failed), and the run ended there (what was in flight
    drained, as at the schedule's end)."""

    at_s: float
    verdicts: dict[str, Verdict]  # by SLO name, when decided
    reason: str


class Window(Part):
    start_s: float
    end_s: float
    observed: float | None
    samples: int
    verdict: Verdict
    ci_low: float | None = None
    ci_high: float | None = None


class Windows(Part):
    """How a windowed SLO did, window by window."""

    window_s: float
    share_required: float | None  # None: every window must pass
    total: int
    judged: int
    passed: int
    worst_start_s: float | None = None
    series: list[Window]


class Trend(Part):
    """A trend SLO's per-window values and its Theil-Sen line (loadkit.slo.trend)."""

    window_s: float
    value_unit: str  # of the points and the line: "ms", or "MiB" for gpu.mem_used
    origin_s: float  # the start of the measured time: the line's x = 0
    points: list[tuple[float, float]]  # (window middle, s since the run's start; value)
    windows: int  # windows measured, with or without a value
    level: float = 0.95  # of ci_low / ci_high
    slope_per_s: float | None = None  # value_unit per second; None: too few windows
    intercept: float | None = None  # the fitted value at origin_s


class Disturbance(Part):
    """One spike phase or outage, and how long latency took to come back after it."""

    kind: str  # phase (named) | spike (a phase at >= 2x the lowest rate) | outage (errors)
    name: str | None = None  # the phase, when it is one
    start_s: float
    end_s: float  # recovery is timed from here
    baseline_ms: float | None = None  # median per-interval p99 before the disturbance
    limit_ms: float | None = None  # recovered: p99 at or below this
    baseline_intervals: int = 0
    recovered_at_s: float | None = None  # start of the first of `consecutive` good intervals
    recovery_s: float | None = None  # recovered_at_s - end_s; None: not recovered or unknown
    reason: str = ""


class Recovery(Part):
    """How a recovery_time SLO was judged (loadkit.slo.recovery)."""

    tolerance: float  # recovered: p99 <= (1 + tolerance) x baseline (or the baseline's p90)
    consecutive: int  # intervals in a row that must be back
    disturbances: list[Disturbance]


class SLOResult(Part):
    """One objective in one scope: what was observed and the verdict."""

    name: str  # `text [scope]`, unique per run
    text: str
    metric: str
    scope: Scope
    op: str
    threshold: float  # in `unit` terms (ms; a fraction for %)
    unit: str
    observed: float | None  # None when inconclusive; windowed: the worst window's
    samples: int
    verdict: Verdict
    reason: str = ""
    # The observed value's interval (a percentile's or a share's); ci_high None: unbounded
    ci_low: float | None = None
    ci_high: float | None = None
    marginal: bool = False  # the threshold lies inside that interval
    # The samples' worth as independent ones, measured from the run's
    # intervals (slo/correlation.py): under `samples` when they were correlated.
    n_eff: float | None = None
    windows: Windows | None = None
    abort: bool = False  # judged while the run went; could stop it on a clear breach
    trend: Trend | None = None  # trend SLOs: observed and ci_* are the slope in `unit`
    recovery: Recovery | None = None  # recovery_time SLOs

    @model_serializer(mode="wrap")
    def _only_where_they_apply(self, handler: Any) -> dict[str, Any]:
        """`trend` and `recovery` are written only for the SLOs they belong to
        (so a run.json written before them re-dumps unchanged)."""
        out = handler(self)
        for key in ("trend", "recovery"):
            if out.get(key) is None:
                out.pop(key, None)
        return out
