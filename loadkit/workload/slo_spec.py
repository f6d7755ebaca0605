"""SLO objectives as written in workload and SLO files, parsed without eval.

Grammar (one line each)::

    objective := METRIC [STAT] OP NUMBER [UNIT] [WINDOW]
    STAT      := pNN[.N] | mean | max | min          (time and gauge metrics)
    OP        := < | <= | > | >=
    UNIT      := us | ms | s (time) · % (shares) · req/s · tok/s · W · C · J · kJ
    WINDOW    := in every DURATION window
               | in [at least] NN% of DURATION windows

    trend     := METRIC [STAT] trend OP NUMBER AMOUNT/PER [in DURATION windows]
    AMOUNT    := % (relative) | us | ms | s (time metrics) | KB | MB | GB | KiB | MiB | GiB
    PER       := s | min | h
    recovery  := recovery_time [after PHASE] OP NUMBER (us | ms | s)

A trend (``ttft p99 trend < 10%/h``, ``gpu.mem_used trend < 200MB/h``) is
the Theil-Sen slope of per-window values (loadkit.slo.trend); recovery time
(``recovery_time < 60s``) is measured from the end of a spike phase or an
outage until per-interval latency p99 is back near its baseline
(loadkit.slo.recovery). Both are judged once the run has ended.

Examples: ``latency p99 < 500ms``, ``ttft p50 <= 0.2s``, ``error_rate < 1%``,
``throughput >= 10 req/s``, ``goodput >= 95%``, ``gpu.util mean >= 60%``,
``energy_per_request <= 5 J``, ``latency p99 < 300ms in every 60s window``,
``isolation_ratio <= 1.5`` (a tenant's latency p99 while another tenant
spikes / in quiet phases). Thresholds are normalised: times to milliseconds,
shares to fractions.

A goodput condition (one per-request rule, all must hold for a request to be
"good") is ``METRIC OP NUMBER UNIT`` over the per-request metrics.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from loadkit.workload.metric_aliases import peer_name, resolve_metric
from loadkit.workload.units import parse_duration

TIME_METRICS = ("latency", "service_time", "ttft", "ttft_corrected", "itl", "inter_chunk",
                "tpot", "max_stall", "lateness", "session", "ttfo", "ttfo_corrected",
                "reasoning_time", "tool_call_time", "reasoning_itl", "answer_itl",
                "abandon_time", "reclaim_time", "latency_per_doc")
RATE_METRICS = ("error_rate", "abandon_rate", "throughput", "output_tokens_per_s", "goodput",
                "isolation_ratio")
# Telemetry figures (loadkit.telemetry.derive.slo_values): metric -> (unit, stats).
GAUGE_METRICS = {
    "gpu.util": ("%", ("mean", "max")), "gpu.mem_util": ("%", ("mean", "max")),
    "gpu.power": ("W", ("mean", "max")), "gpu.temp": ("C", ("mean", "max")),
    "idle_silicon": ("%", ()), "energy_per_request": ("J", ()),
    "energy_per_1k_output_tokens": ("J", ()), "cost_per_1k_requests": ("", ()),
    "cost_per_1m_output_tokens": ("", ()),
    # Tokens generated for clients that had left (slo/reclaim.py)
    "zombie_tokens": ("", ()), "zombie_share": ("%", ()),
}
# Judged by their trend only (`gpu.mem_used trend < 200MB/h`): metric -> value unit.
TREND_GAUGES = {"gpu.mem_used": "MiB"}
RECOVERY_METRIC = "recovery_time"
END_OF_RUN_METRICS = ("isolation_ratio", "abandon_rate", *GAUGE_METRICS, *TREND_GAUGES,
                      RECOVERY_METRIC)  # known only when the run ends
METRICS = TIME_METRICS + RATE_METRICS + tuple(GAUGE_METRICS) + ("prom.<metric>",) \
    + tuple(TREND_GAUGES) + (RECOVERY_METRIC,)
# Per-request metrics a goodput condition can test (every request has one value).
REQUEST_METRICS = ("latency", "service_time", "ttft", "ttft_corrected", "tpot", "max_stall",
                   "ttfo", "ttfo_corrected", "reasoning_time", "tool_call_time")

# OP of the grammar: how an objective or a goodput condition is judged (observed OP limit).
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_GAUGE_UNITS = {"%": {"%": 0.01}, "W": {"W": 1.0, "kW": 1000.0}, "C": {"C": 1.0, "°C": 1.0},
                "J": {"J": 1.0, "kJ": 1000.0, "Wh": 3600.0}, "": {"$": 1.0, "USD": 1.0}}
_OBJECTIVE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.:]*)\s+(?:(?P<stat>p\d+(?:\.\d+)?|mean|max|min)\s+)?"
    r"(?:after\s+(?P<after>[A-Za-z0-9_-]+)\s+)?(?:(?P<trend>trend)\s+)?"
    r"(?P<op><=|>=|<|>)\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-zA-Zµ°/%$]+)?"
    r"(?:\s+in\s+(?:every\s+(?P<every>\S+)\s+window"
    r"|(?:at\s+least\s+)?(?P<share>[0-9]*\.?[0-9]+)%\s+of\s+(?P<of>\S+)\s+windows"
    r"|(?P<per>\S+)\s+windows))?\s*$"
)
# A trend's unit: AMOUNT/PER. PER in seconds; AMOUNT in the metric's value unit.
_PER = {"s": 1.0, "min": 60.0, "h": 3600.0}
_SIZES = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0,
          "KB": 1e3 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}  # in MiB
_CONDITION = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|<|>)\s*(?P<num>[0-9]*\.?[0-9]+)\s*"
    r"(?P<unit>[a-zµ]+)?\s*$")


class TrendSpec(BaseModel):
    """How a trend objective is measured: `ttft p99 trend < 10%/h in 60s windows`."""

    model_config = ConfigDict(frozen=True)

    per_s: float  # the rate's time unit in seconds: 1 (/s), 60 (/min), 3600 (/h)
    relative: bool  # %: relative to the fitted value at the start of the measured time
    scale: float  # the threshold's amount in the metric's value unit (ms, MiB); 1 if relative
    window_s: float | None = None  # None: the default (loadkit.slo.trend.default_window)


class Objective(BaseModel):
    """One parsed SLO: `metric stat op threshold [window]`, with its scope."""

    model_config = ConfigDict(frozen=True)

    text: str
    metric: str
    stat: str | None  # "p99", "mean", "max", "min"; None for rate metrics
    quantile: float | None  # 0.99 for p99
    op: str
    threshold: float  # ms for time metrics, fraction for shares, else as `unit`
    unit: str  # how to display observed values: "ms", "%", "req/s", "x", "W", ...
    scope: str = "all"  # "all", "tenant:<name>", "scenario:<name>" or "phase:<name>"
    window_s: float | None = None  # judged per window of this length
    window_share: float | None = None  # None: every window; else the share that must pass
    abort: bool = False  # checked while the run goes; a clear breach stops it
    abort_after_s: float = 10.0
    trend: TrendSpec | None = None  # a trend: threshold and unit are a change per time
    after: str | None = None  # recovery_time: the phase whose end starts the clock

    @property
    def name(self) -> str:
        return f"{self.text} [{self.scope}]"

    @property
    def counted(self) -> bool:
        """Decided by counting requests on either side of the threshold (a
        percentile of a time metric, error_rate, goodput in %) over the whole
        scope: what a run can decide before its end (stop_when_decided)."""
        if self.window_s is not None or self.trend is not None:
            return False
        return (self.metric in TIME_METRICS and self.quantile is not None
                or self.metric == "error_rate" or self.metric == "goodput" and self.unit == "%")


class Condition(BaseModel):
    """One per-request goodput rule: `ttft <= 200ms`. Threshold in ns."""

    model_config = ConfigDict(frozen=True)

    text: str
    metric: str
    op: str
    threshold_ns: int


def parse_condition(text: str) -> Condition:
    m = _CONDITION.match(text)
    if not m:
        raise ValueError(f"cannot parse goodput condition {text!r}; expected e.g. "
                         "'ttft <= 200ms' or 'tpot < 50ms'")
    metric, op, num, unit = m.group("metric", "op", "num", "unit")
    if metric not in REQUEST_METRICS and peer_name(metric) is not None:
        metric = resolve_metric(metric, REQUEST_METRICS)  # another tool's name (or why not)
    if metric not in REQUEST_METRICS:
        raise ValueError(f"goodput conditions take per-request metrics "
                         f"({', '.join(REQUEST_METRICS)}), not {metric!r}")
    if unit not in _TIME_UNITS:
        raise ValueError(f"{metric} needs a time unit (us, ms, s), got {unit!r}")
    return Condition(text=text.strip(), metric=metric, op=op,
                     threshold_ns=round(float(num) * _TIME_UNITS[unit] * 1e6))


def check_decidable(objectives: list[Objective]) -> None:
    """stop_when_decided needs SLOs, each decided by counts (Objective.counted)."""
    if not objectives:
        raise ValueError("stop_when_decided: true needs `slos` to decide")
    if others := [o.text for o in objectives if not o.counted]:
        raise ValueError(
            "stop_when_decided: true needs every SLO to be a percentile, error_rate or "
            f"goodput in % over the whole run; these are judged at its end: {others}")


def scopes_for(metric: str) -> tuple[str, ...] | None:
    """The scope kinds a metric can be judged in; None: any. A tenant or a
    scenario has no GPU of its own, isolation is a tenant's against the
    others, zombie tokens are the server's."""
    if metric == "isolation_ratio":
        return ("tenant",)
    if metric == RECOVERY_METRIC:
        return ("all", "tenant", "phase")
    if metric.startswith("zombie_"):
        return ("all",)
    if metric in GAUGE_METRICS or metric in TREND_GAUGES or metric.startswith("prom."):
        return ("all", "phase")
    return None


def parse_objective(text: str, scope: str = "all") -> Objective:
    """Parse one objective line; ValueError says what is wrong with it."""
    m = _OBJECTIVE.match(text)
    if not m:
        raise ValueError(
            f"cannot parse SLO {text!r}; expected e.g. 'latency p99 < 500ms', "
            "'error_rate < 1%', 'throughput >= 10 req/s' or "
            "'latency p99 < 300ms in every 60s window'")
    metric, stat, op, num, unit = m.group("metric", "stat", "op", "num", "unit")
    if (canonical := resolve_metric(metric, METRICS)) != metric:  # another tool's name
        text = text[:m.start("metric")] + canonical + text[m.end("metric"):]
        metric = canonical  # kept in loadkit's words (workload/metric_aliases.py)
    trend, after, per = m.group("trend", "after", "per")
    if after is not None and metric != RECOVERY_METRIC:
        raise ValueError(f"'after PHASE' belongs to recovery_time (e.g. 'recovery_time after "
                         f"spike < 60s'), not to {metric}")
    if per is not None and not any(c.isdigit() for c in per):  # 'in most windows'
        raise ValueError(f"'in {per} windows' is no rule loadkit reads: 'in every 60s window', "
                         "'in at least 95% of 60s windows', or a trend's 'in 60s windows'")
    if per is not None and trend is None:
        raise ValueError(f"'in {per} windows' sets a trend's windows (e.g. 'ttft p99 trend "
                         f"< 10%/h in {per} windows'); a windowed objective reads "
                         f"'in every {per} window'")
    if trend is not None or metric == RECOVERY_METRIC or metric in TREND_GAUGES:
        return _judged_over_time(text.strip(), scope, metric, stat, op, float(num), unit,
                                 trend is not None, after, per,
                                 m.group("every") or m.group("of"))
    fields = dict(text=text.strip(), metric=metric, op=op, scope=scope,
                  **_window(m.group("every"), m.group("share"), m.group("of")))
    if fields["window_s"] is not None and metric in ("isolation_ratio", "abandon_rate"):
        raise ValueError(f"{metric} is judged over the whole run; it takes no window")
    value = float(num)
    if metric in TIME_METRICS:
        quantile = _stat(metric, stat, ("mean", "max", "min"), percentiles=True)
        if unit not in _TIME_UNITS:
            raise ValueError(f"{metric} needs a time unit (us, ms, s), got {unit!r}")
        return Objective(stat=stat, quantile=quantile, threshold=value * _TIME_UNITS[unit],
                         unit="ms", **fields)
    if metric in GAUGE_METRICS or metric.startswith("prom."):
        if fields["window_s"] is not None:
            raise ValueError(f"{metric} is judged over the whole run; it takes no window")
        base, stats = GAUGE_METRICS.get(metric, ("", ("mean", "max")))
        _stat(metric, stat, stats)
        if metric.startswith("prom."):
            if unit is not None:
                raise ValueError(f"{metric} is compared as scraped; write no unit")
            return Objective(stat=stat, quantile=None, threshold=value, unit="", **fields)
        scale = _GAUGE_UNITS[base]
        if unit not in scale and not (unit is None and base == ""):
            raise ValueError(f"{metric} takes {' or '.join(scale)}, got {unit!r}")
        return Objective(stat=stat, quantile=None, threshold=value * scale.get(unit or "", 1.0),
                         unit=base, **fields)
    if metric not in RATE_METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if stat is not None:
        raise ValueError(f"{metric} takes no statistic, got {stat!r}")
    if metric == "goodput" and unit is None:
        raise ValueError("goodput takes % (a share) or req/s (a rate)")
    if metric in ("error_rate", "abandon_rate", "goodput") and unit in ("%", None):
        value = value / 100.0 if unit == "%" else value
        if value > 1.0:
            raise ValueError(f"{metric} threshold must be at most 100%")
        return Objective(stat=None, quantile=None, threshold=value, unit="%", **fields)
    if metric in ("error_rate", "abandon_rate"):
        raise ValueError(f"{metric} takes % or a bare fraction, got {unit!r}")
    if metric == "isolation_ratio":
        if unit not in ("x", None):
            raise ValueError(f"isolation_ratio is a plain ratio, got unit {unit!r}")
        return Objective(stat=None, quantile=None, threshold=value, unit="x", **fields)
    if metric == "output_tokens_per_s":
        if unit not in ("tok/s", None):
            raise ValueError(f"output_tokens_per_s takes tok/s, got {unit!r}")
        return Objective(stat=None, quantile=None, threshold=value, unit="tok/s", **fields)
    if unit not in ("req/s", "rps") and not (unit is None and metric == "throughput"):
        raise ValueError(f"{metric} takes req/s{' or %' if metric == 'goodput' else ''}, "
                         f"got {unit!r}")
    return Objective(stat=None, quantile=None, threshold=value, unit="req/s", **fields)


def _judged_over_time(text: str, scope: str, metric: str, stat: str | None, op: str,
                      value: float, unit: str | None, trend: bool, after: str | None,
                      per: str | None, window: str | None) -> Objective:
    """A trend objective, or recovery_time."""
    fields = {"text": text, "metric": metric, "op": op, "scope": scope}
    if metric == RECOVERY_METRIC:
        if trend or stat is not None:
            raise ValueError(f"recovery_time takes no {'trend' if trend else 'statistic'}; "
                             "e.g. 'recovery_time < 60s' or 'recovery_time after spike < 60s'")
        if window is not None:
            raise ValueError("recovery_time takes no window")
        if unit not in _TIME_UNITS:
            raise ValueError(f"recovery_time needs a time unit (us, ms, s), got {unit!r}")
        return Objective(stat=None, quantile=None, threshold=value * _TIME_UNITS[unit],
                         unit="ms", after=after, **fields)
    if not trend:  # a TREND_GAUGES metric without `trend`
        raise ValueError(f"{metric} is judged by its trend, e.g. '{metric} trend < 200MB/h'")
    if window is not None:
        raise ValueError(f"a trend is fitted across windows: write 'in {window} windows', "
                         f"not 'in every {window} window' or a share of windows")
    if metric in TIME_METRICS:
        quantile = _stat(metric, stat, ("mean", "max", "min"), percentiles=True)
        amounts, example = _TIME_UNITS, "ms/min"
    elif metric in TREND_GAUGES:
        if stat is not None:
            raise ValueError(f"{metric} takes no statistic: its trend is that of its "
                             f"per-window mean, got {stat!r}")
        quantile, amounts, example = None, _SIZES, "MB/h"
    else:
        raise ValueError(f"a trend is measured for {', '.join(TIME_METRICS)} and "
                         f"{', '.join(TREND_GAUGES)}, not {metric!r}")
    amount, slash, per_unit = (unit or "").partition("/")
    if not slash or per_unit not in _PER or (amount != "%" and amount not in amounts):
        raise ValueError(f"{metric} trend takes a change per time: %/h (relative to the "
                         f"start) or {example} (amount: % or {', '.join(amounts)}; "
                         f"per: {', '.join(_PER)}), got {unit!r}")
    window_s = None
    if per is not None:
        window_s = parse_duration(per)
        if window_s < 1.0:
            raise ValueError(f"a trend's windows must be at least 1s, got {per!r}")
    spec = TrendSpec(per_s=_PER[per_unit], relative=amount == "%",
                     scale=1.0 if amount == "%" else amounts[amount], window_s=window_s)
    return Objective(stat=stat, quantile=quantile, threshold=value,
                     unit=f"{'µs' if amount == 'us' else amount}/{per_unit}", trend=spec,
                     **fields)


def _stat(metric: str, stat: str | None, allowed: tuple[str, ...],
          percentiles: bool = False) -> float | None:
    """Check the statistic; the quantile for a percentile."""
    names = ", ".join((("p99", "p50") if percentiles else ()) + allowed)
    if not allowed and not percentiles:
        if stat is not None:
            raise ValueError(f"{metric} takes no statistic, got {stat!r}")
        return None
    if stat is None:
        raise ValueError(f"{metric} needs a statistic ({names})")
    if stat.startswith("p") and percentiles:
        quantile = float(stat[1:]) / 100.0
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"percentile {stat} must lie strictly between p0 and p100")
        return quantile
    if stat not in allowed:
        raise ValueError(f"{metric} takes {names}, got {stat!r}")
    return None


def _window(every: str | None, share: str | None, of: str | None) -> dict:
    if every is None and of is None:
        return {"window_s": None, "window_share": None}
    window_s = parse_duration(every or of)
    if window_s < 1.0:
        raise ValueError(f"a window must be at least 1s, got {every or of!r}")
    if share is None:
        return {"window_s": window_s, "window_share": None}
    fraction = float(share) / 100.0
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the share of windows must be in (0%, 100%], got {share}%")
    return {"window_s": window_s, "window_share": fraction}
