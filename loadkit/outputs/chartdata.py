"""The numbers the report's charts draw, read from a RunResult.

Pure functions: merged HDR histograms of the measured phases (from the
encoded cumulative histograms), percentile spectra and distributions,
per-interval columns as numpy arrays (None as NaN), and telemetry's series
and per-interval GPU figures (a run without telemetry has none of either).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import numpy as np

from loadkit.outputs.decimate import as_array
from loadkit.record.histogram import decode, new_histogram, percentiles_us, recorded_us
from loadkit.result.model import Figures, RunResult, SeriesTag, TelemetrySeries, safe_part

if TYPE_CHECKING:
    from loadkit.record.histogram import HdrHistogram

SPECTRUM_DECADES = 4  # out to 99.99%

# Interval's numeric fields: the columns `column` reads.
IntervalColumn = Literal["start_s", "end_s", "completed", "errors", "output_tokens",
                         "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "cpu_percent",
                         "steal_percent", "lateness_p99_ms"]
IntervalCount = Literal["completed", "errors", "output_tokens"]


def histogram(r: RunResult, metric: str, tenant: str | None = None) -> HdrHistogram | None:
    """The metric's cumulative histogram over the measured phases (one
    tenant's, when given), merged from run.json's encoded histograms."""
    measured = {safe_part(p.name) for p in r.phases if not p.warmup}
    want = safe_part(tenant) if tenant is not None else None
    out = new_histogram()
    for tag, payload in r.histograms.items():
        key = SeriesTag.parse(tag)
        if key is not None and key.metric == metric and key.phase in measured \
                and (want is None or key.tenant == want):
            out.add(decode(payload))
    return out if out.get_total_count() else None


def spectrum(h: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """(x, ms): x = 1 / (1 - percentile), log-spaced out to 99.99%, plus the max."""
    k = np.linspace(0.0, SPECTRUM_DECADES, 161)
    pct = [round(100.0 * (1.0 - 10.0 ** -d), 6) for d in k]
    values = percentiles_us(h, pct)
    x = np.append(10.0 ** k, 10.0 ** (SPECTRUM_DECADES + 0.25))
    y = np.array([values[p] for p in pct] + [h.get_max_value()], dtype=float) / 1000.0
    return x, y


def distribution(h: HdrHistogram, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges in ms, share of samples %) over log-spaced bins."""
    values, counts = recorded_us(h)
    v = np.array(values, dtype=float) / 1000.0
    lo, hi = max(v.min(), 1e-3), max(v.max(), v.min() * 1.01, 2e-3)
    edges = np.geomspace(lo, hi * 1.0001, bins + 1)
    share, _ = np.histogram(np.clip(v, lo, hi), bins=edges, weights=counts)
    return edges, 100.0 * share / max(sum(counts), 1)


def column(r: RunResult, key: IntervalColumn) -> np.ndarray:
    """One field of every interval, in order (None as NaN)."""
    return as_array(getattr(iv, key) for iv in r.timeseries)


def times(r: RunResult) -> np.ndarray:
    return column(r, "start_s")


def rate(r: RunResult, key: IntervalCount) -> np.ndarray:
    """A count per interval, per second."""
    return np.array([getattr(iv, key) / max(iv.end_s - iv.start_s, 1e-9)
                     for iv in r.timeseries], dtype=float)


def time_unit(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 20 * 60:
        return 60.0, "min"
    return 1.0, "s"


def span(r: RunResult) -> float:
    """Seconds from the start to the last phase's or interval's end (at least 1)."""
    ends = [p.start_s + p.duration_s for p in r.phases]
    ts = r.timeseries
    return max(ends + [ts[-1].end_s if ts else 0.0, 1.0])


def telemetry_series(r: RunResult) -> dict[str, TelemetrySeries]:
    """Scraped series with points, GPU utilisation and power left out (drawn
    per interval with latency), counters only as rates, the busiest first."""
    if r.telemetry is None:
        return {}
    out = {k: v for k, v in r.telemetry.series.items()
           if v.points and v.metric not in _GPU_METRICS
           and not (v.kind == "counter" or k.endswith(("_total", "_bytes")))}
    return dict(sorted(out.items(), key=lambda kv: (not _BUSY.search(kv[0]), kv[0])))


def gpu_columns(r: RunResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-interval GPU utilisation and power (telemetry's per_interval rows)."""
    rows = r.telemetry.per_interval if r.telemetry is not None else []
    t = as_array(_number(row, "start_s") for row in rows)
    cols = {f: as_array(_number(row, f"gpu.{f}") for row in rows) for f in ("util", "power")}
    return t, {f: v for f, v in cols.items() if np.isfinite(v).any()}


def _number(row: Figures, name: str) -> float | None:
    """A figure by name (the names are data); None when absent or not a number."""
    value = row.get(name)
    return value if isinstance(value, (int, float)) else None


_GPU_METRICS = {"gpu.util", "gpu.power", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE",
                "nv_gpu_utilization", "nv_gpu_power_usage", "loadkit_sim_gpu_utilization_ratio",
                "loadkit_sim_gpu_power_watts"}
_BUSY = re.compile(r"waiting|running|cache|\.rate$|\.p99$")
