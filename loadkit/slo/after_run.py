"""Objectives judged from the whole run once it has ended, from run.json's parts:
`recovery_time` (loadkit.slo.recovery, on the per-interval `timeseries`) and
trends of GPU memory (`gpu.mem_used trend < 200MB/h`, loadkit.slo.trend, on
telemetry `series`). Trends of time metrics are kept window by window while
the run goes (loadkit.slo.live).

GPU memory per window: each GPU's mean over its samples in the window,
summed over the GPUs (a window where a GPU has no sample has no value), in
MiB, from the best source present: NVML (here or through the agent),
dcgm-exporter (`DCGM_FI_DEV_FB_USED`), the embedded simulator's gauge.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

from loadkit.result.model import Interval, PhaseInfo, Scope, SLOResult, Telemetry, Verdict
from loadkit.slo.recovery import recovery_result
from loadkit.slo.scopes import Phases
from loadkit.slo.trend import default_window, trend_result
from loadkit.workload.slo_spec import RECOVERY_METRIC, TREND_GAUGES, Objective

# (metric, scale to MiB), best first; a scraped one may carry its source's prefix.
MEMORY_SERIES = (("gpu.mem_used", 1.0), ("DCGM_FI_DEV_FB_USED", 1.0),
                 ("loadkit_sim_gpu_memory_used_bytes", 1.0 / 2**20))


def judge_after_run(objectives: Sequence[Objective], timeseries: Sequence[Interval],
                    phases: Sequence[PhaseInfo], telemetry: Telemetry | None,
                    rates: Mapping[str, float], interval_s: float) -> dict[str, SLOResult]:
    """Verdicts by objective name, for evaluate_all's `judged`."""
    out: dict[str, SLOResult] = {}
    for o in objectives:
        if o.metric == RECOVERY_METRIC:
            out[o.name] = recovery_result(o, timeseries, phases, rates)
        elif o.trend is not None and o.metric in TREND_GAUGES:
            out[o.name] = memory_trend(o, telemetry, phases, interval_s)
    return out


def memory_trend(o: Objective, telemetry: Telemetry | None, phases: Sequence[PhaseInfo],
                 interval_s: float) -> SLOResult:
    scope = Scope(o.scope)
    assert o.trend is not None, "memory_trend takes trend objectives"
    if scope.kind not in ("all", "phase"):
        return _inconclusive(o, "GPU memory has no tenant or scenario of its own: judge it "
                                "over the run or a phase")
    start, end = Phases(list(phases)).span(scope)
    window_s = o.trend.window_s or default_window(end - start, interval_s)
    series = memory_series(telemetry)
    if not series:
        return _inconclusive(o, "no GPU memory readings (run.json telemetry.sources says why)")
    pts, windows, samples = window_means(series, start, end, window_s)
    return trend_result(o, pts, windows=windows, window_s=window_s, origin_s=start,
                        value_unit="MiB", samples=samples)


def memory_series(telemetry: Telemetry | None) -> list[tuple[list[float], list[float]]]:
    """Each GPU's (times, MiB) from the best source present; [] when none."""
    if telemetry is None:
        return []
    for metric, scale in MEMORY_SERIES:
        found = [s for s in telemetry.series.values()
                 if (s.metric == metric or s.metric.endswith("." + metric)) and s.points]
        if found:
            return [([t for t, _v in sorted(s.points)], [v * scale for _t, v in sorted(s.points)])
                    for s in found]
    return []


def window_means(series: Sequence[tuple[list[float], list[float]]], start: float, end: float,
                 window_s: float) -> tuple[list[tuple[float, float]], int, int]:
    """(window middle, sum over GPUs of each one's mean) per window of
    [start, end); the number of windows; the samples used."""
    pts, samples = [], 0
    count = max(1, math.ceil((end - start) / window_s - 1e-9))
    for k in range(count):
        a, b = start + k * window_s, min(start + (k + 1) * window_s, end)
        total, used = 0.0, 0
        for t, v in series:
            lo, hi = bisect.bisect_left(t, a), bisect.bisect_left(t, b)
            if hi <= lo:
                break
            total += sum(v[lo:hi]) / (hi - lo)
            used += hi - lo
        else:
            pts.append(((a + b) / 2.0, total))
            samples += used
    return pts, count, samples


def _inconclusive(o: Objective, reason: str) -> SLOResult:
    return SLOResult(name=o.name, text=o.text, metric=o.metric, scope=Scope(o.scope), op=o.op,
                     threshold=o.threshold, unit=o.unit, observed=None, samples=0,
                     verdict=Verdict.INCONCLUSIVE, reason=reason)
