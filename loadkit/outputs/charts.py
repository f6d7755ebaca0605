"""The run report's charts: matplotlib figures, drawn on canvas.py's style
and rendered there as inline SVG.

Each public function takes the RunResult and returns a matplotlib Figure,
or None when the run has nothing to draw there.
Long series are decimated to min/max/mean envelopes (decimate.py).
matplotlib is imported lazily: only rendering a report pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from loadkit.outputs.canvas import COLOURS, WIDTH, envelope, figure
from loadkit.outputs.chartdata import (
    SPECTRUM_DECADES,
    column,
    distribution,
    gpu_columns,
    histogram,
    rate,
    span,
    spectrum,
    telemetry_series,
    time_unit,
    times,
)
from loadkit.outputs.decimate import as_array, decimate, decimate_points
from loadkit.outputs.format import quantity
from loadkit.record.histogram import percentile_us
from loadkit.result.model import ALL, RunResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import HashableList

    from loadkit.record.histogram import HdrHistogram

_PERCENTILE_SLO = re.compile(r"^\s*\w+\s+(p[\d.]+|max)\b")


# -- drawing helpers -----------------------------------------------------------------


def _phases(axes: Sequence[Axes], r: RunResult, div: float) -> None:
    """Shade phases (alternating; warm-ups grey) and name the wide ones;
    notes typed on the live view are dashed lines, as on the live page."""
    for n in r.notes:
        for ax in axes:
            ax.axvline(n.at_s / div, color="#6a3d9a", lw=0.8, ls="--")
    if len(r.phases) < 2:
        return
    total = span(r)
    for i, p in enumerate(r.phases):
        a, b = p.start_s / div, (p.start_s + p.duration_s) / div
        colour = "#999999" if p.warmup else ("#4c72b0" if i % 2 else "#dd8452")
        for ax in axes:
            ax.axvspan(a, b, color=colour, alpha=0.07 if not p.warmup else 0.15, lw=0)
        if p.duration_s >= 0.06 * total:
            axes[0].text((a + b) / 2, 1.0, p.name + (" (warm-up)" if p.warmup else ""),
                         transform=axes[0].get_xaxis_transform(), ha="center", va="bottom",
                         fontsize=8, color="#555555", clip_on=False)


def _finish_time_axes(axes: Sequence[Axes], r: RunResult, div: float, unit: str) -> None:
    _phases(axes, r, div)
    axes[-1].set_xlabel(f"time since start ({unit})")
    axes[-1].set_xlim(0, span(r) / div)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", ncols=4)


def _log_scale(ax: Axes, axis: str = "y") -> None:
    """A log axis labelled with plain numbers (math text is off)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


def _log_if_wide(ax: Axes, values: np.ndarray) -> None:
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) and v.max() / max(np.median(v), 1e-9) > 50:
        _log_scale(ax)


def _recovery_marks(ax: Axes, r: RunResult, div: float, named: int = 8) -> None:
    """recovery_time SLOs: each disturbance (grey), the time from its end until
    p99 was back (red, the limit it had to come under dashed), and when (green);
    the first `named` are named on the chart."""
    found = {(d.start_s, d.end_s): d for s in r.slos if s.recovery is not None
             for d in s.recovery.disturbances}
    for k, d in enumerate(sorted(found.values(), key=lambda d: d.start_s)):
        what = f"{d.kind} {d.name}" if d.name else d.kind
        ax.axvspan(d.start_s / div, d.end_s / div, color="#555555", alpha=0.12, lw=0,
                   label=None if k else "disturbance (spike phase or outage)")
        until = d.recovered_at_s
        if until is not None:
            ax.axvspan(d.end_s / div, max(until, d.end_s) / div, color="#c62828", alpha=0.15,
                       lw=0, label=None if k else "recovery: until p99 was back")
            if d.limit_ms is not None and until > d.end_s:
                ax.hlines(d.limit_ms, d.end_s / div, until / div, colors="#c62828", lw=1,
                          ls="--")
            ax.axvline(until / div, color="#2e7d32", ls="--", lw=1)
        if k < named:
            text = f"{what}: back after {d.recovery_s or 0:.3g} s" if until is not None \
                else f"{what}: {d.reason or 'not back'}"
            ax.text((until if until is not None else d.end_s) / div, 0.75, f" {text}",
                    color="#2e7d32" if until is not None else "#c62828", fontsize=8,
                    transform=ax.get_xaxis_transform(), ha="left", va="top", rotation=90)


# -- the charts ----------------------------------------------------------------------


def spectrum_chart(curves: Sequence[tuple[str, HdrHistogram]],
                   thresholds: Sequence[tuple[str, float]] = ()) -> Figure | None:
    """Latency by percentile, HdrHistogram style: x = 1/(1-p), log-scaled."""
    if not curves:
        return None
    fig, (ax,) = figure(1, height=3.4, sharex=False)
    top = 0.0
    for label, h in curves:
        x, y = spectrum(h)
        ax.plot(x, y, lw=1.4, label=f"{label} ({h.get_total_count():,} samples)")
        top = max(top, y.max())
    off = []
    for text, value in thresholds:
        if value > 3 * top:  # far above: say so rather than squash the curves
            off.append(f"SLO {text}: {value:g} ms, above the chart")
            continue
        ax.axhline(value, color="#c62828", ls="--", lw=1)
        ax.text(10.0 ** (SPECTRUM_DECADES + 0.25), value, f"SLO {text} ", color="#c62828",
                ha="right", va="bottom", fontsize=8)
        top = max(top, value)
    if off:
        ax.text(0.99, 0.97, "\n".join(off), transform=ax.transAxes, ha="right", va="top",
                color="#c62828", fontsize=8)
    ax.set_xscale("log")
    ticks = [10.0 ** d for d in range(SPECTRUM_DECADES + 1)]
    ax.set_xticks(ticks, ["0%", "90%", "99%", "99.9%", "99.99%"][:len(ticks)])
    ax.set_xticks([], minor=True)
    ax.set_xlim(1, 10.0 ** (SPECTRUM_DECADES + 0.3))
    ax.set_ylim(0, top * 1.08 or 1)
    ax.set_xlabel("percentile (the last point is the maximum)")
    ax.set_ylabel("ms")
    fig.legend(loc="outside upper left", ncols=2)
    return fig


def run_spectrum(r: RunResult) -> Figure | None:
    curves = [(label, h) for metric, label in (
        ("latency", "latency (corrected: end − intended)"),
        ("service_time", "service time (uncorrected: end − sent)"))
        if (h := histogram(r, metric)) is not None]
    lines = [(s.text, s.threshold) for s in r.slos
             if s.metric in ("latency", "service_time") and s.scope == ALL and s.unit == "ms"
             and _PERCENTILE_SLO.match(s.text)]
    return spectrum_chart(curves, lines)


def latency_over_time(r: RunResult, points: int) -> Figure | None:
    """Latency percentiles per interval, with GPU utilisation and power below
    on the same time axis when telemetry has them."""
    gpu_t, gpu = gpu_columns(r)
    if not r.timeseries and not gpu:
        return None
    panels = 1 + len(gpu)
    fig, axes = figure(panels, height=2.6 if panels == 1 else 2.0)
    div, unit = time_unit(span(r))
    t = times(r)
    ax = axes[0]
    p99 = column(r, "latency_p99_ms")
    envelope(ax, decimate(t, column(r, "latency_max_ms"), points), div, "max", COLOURS[6],
              line="high")
    envelope(ax, decimate(t, p99, points), div, "p99", COLOURS[1])
    envelope(ax, decimate(t, column(r, "latency_p50_ms"), points), div, "p50", COLOURS[0])
    _log_if_wide(ax, p99)
    _recovery_marks(ax, r, div)
    ax.set_ylabel("latency (ms)")
    simulated = " (simulated)" if r.telemetry is not None and r.telemetry.simulated else ""
    for ax, (field, values) in zip(axes[1:], gpu.items()):
        label, ylabel, colour = {"util": ("GPU utilisation", "GPU util (%)", COLOURS[2]),
                                 "power": ("GPU power", "GPU power (W)", COLOURS[4])}[field]
        envelope(ax, decimate(gpu_t, values, points), div,
                 f"{label}{simulated}, mean over GPUs", colour)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    _finish_time_axes(axes, r, div, unit)
    return fig


def trends_chart(r: RunResult) -> Figure | None:
    """Trend SLOs: each window's value and the Theil-Sen line, one panel each."""
    slos = [s for s in r.slos if s.trend is not None and s.trend.points]
    if not slos:
        return None
    fig, axes = figure(len(slos), height=2.3)
    div, unit = time_unit(span(r))
    for ax, s in zip(axes, slos):
        tr = s.trend
        assert tr is not None  # filtered above
        x = np.array([p[0] for p in tr.points])
        y = np.array([p[1] for p in tr.points])
        ax.plot(x / div, y, "o", ms=3, color=COLOURS[0],
                label=f"per window of {tr.window_s:g} s ({len(x)} of {tr.windows})")
        if tr.slope_per_s is not None and tr.intercept is not None:
            ends = np.array([tr.origin_s, x.max() + tr.window_s / 2])
            ci = f" [{quantity(s.ci_low, s.unit)}, {quantity(s.ci_high, s.unit)}]" \
                if s.ci_low is not None else ""
            ax.plot(ends / div, tr.intercept + tr.slope_per_s * (ends - tr.origin_s),
                    color="#c62828" if s.verdict == "fail" else COLOURS[1], lw=1.5,
                    label=f"Theil–Sen line: {quantity(s.observed, s.unit)}{ci} "
                          f"({tr.level:.0%} interval)")
        ax.set_ylabel(tr.value_unit)
        ax.set_title(f"{s.text} [{s.scope}]: {s.verdict} (threshold {s.op} "
                     f"{quantity(s.threshold, s.unit)})", fontsize=9)
        ax.margins(y=0.15)
        ax.legend(loc="upper left", ncols=2)
    axes[-1].set_xlabel(f"time since start ({unit})")
    axes[-1].set_xlim(0, span(r) / div)
    return fig


def throughput_over_time(r: RunResult, points: int) -> Figure | None:
    if not r.timeseries:
        return None
    tokens = rate(r, "output_tokens")
    fig, axes = figure(3 if tokens.any() else 2, height=1.8)
    div, unit = time_unit(span(r))
    t = times(r)
    envelope(axes[0], decimate(t, rate(r, "completed"), points), div, "completed", COLOURS[0])
    axes[0].set_ylabel("completed / s")
    errors = rate(r, "errors")
    envelope(axes[1], decimate(t, errors, points), div, "errors", COLOURS[1], line="high")
    axes[1].set_ylabel("errors / s")
    axes[1].set_ylim(0, max(1.0, errors.max(initial=0) * 1.1))
    if tokens.any():
        envelope(axes[2], decimate(t, tokens, points), div, "output tokens", COLOURS[2])
        axes[2].set_ylabel("tokens / s")
    for ax in axes:
        ax.set_ylim(bottom=0)
    _finish_time_axes(axes, r, div, unit)
    return fig


def token_distributions(r: RunResult) -> Figure | None:
    """TTFT, TTFO (reasoning models), ITL and TPOT: share of samples per
    log-spaced bin, p50 and p99 marked."""
    ttfo = histogram(r, "reasoning_time") is not None  # differs from TTFT only then
    found = [(m, label, h) for m, label in (("ttft", "TTFT (first token − sent)"),
                                            *((("ttfo", "TTFO (first answer token − sent)"),)
                                              if ttfo else ()),
                                            ("itl", "ITL (gap between token events)"),
                                            ("tpot", "TPOT (time per output token)"))
             if (h := histogram(r, m)) is not None]
    if not found:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    axes = fig.subplots(1, len(found), squeeze=False)[0]
    for ax, (_m, label, h), colour in zip(axes, found, COLOURS):
        edges, share = distribution(h)
        ax.stairs(share, edges, fill=True, color=colour, alpha=0.6)
        for p, ls in ((50.0, "-"), (99.0, "--")):
            v = percentile_us(h, p) / 1000.0
            ax.axvline(v, color="#333333", ls=ls, lw=1, label=f"p{p:g} {v:.4g} ms")
        if edges[-1] / edges[0] > 20:
            _log_scale(ax, "x")
        ax.set_title(f"{label}\n{h.get_total_count():,} samples", fontsize=9)
        ax.set_xlabel("ms")
        ax.set_ylabel("% of samples")
        ax.legend(loc="upper right")
    return fig


def tenants_chart(r: RunResult, points: int) -> Figure | None:
    """Per tenant: latency p50/p99/p99.9, the isolation comparison, and p99 over time."""
    lat = sorted(((scope.name, s) for scope, s in r.series.get("latency", {}).items()
                  if scope.kind == "tenant" and s.count), key=lambda ts: ts[0])
    if len(lat) < 2:
        return None
    from matplotlib.figure import Figure

    tenants = [name for name, _s in lat]
    iso = {t: i for t, i in r.isolation.items() if i.p99_quiet_ms}
    over_time = any(iv.tenant_latency_p99_ms for iv in r.timeseries)
    layout: list[HashableList[str]] = [["bars", "iso" if iso else "bars"]]
    if over_time:
        layout.append(["time", "time"])
    fig = Figure(figsize=(WIDTH, 3.0 * len(layout)), layout="constrained")
    ax = fig.subplot_mosaic(layout)
    x = np.arange(len(tenants))
    for j, (stat, vals) in enumerate((("p50", [s.p50 for _t, s in lat]),
                                      ("p99", [s.p99 for _t, s in lat]),
                                      ("p99.9", [s.p99_9 for _t, s in lat]))):
        ax["bars"].bar(x + (j - 1) * 0.27, as_array(vals), 0.27, label=stat, color=COLOURS[j])
    ax["bars"].set_xticks(x, tenants)
    ax["bars"].set_ylabel("latency (ms)")
    ax["bars"].set_title("latency by tenant (measured phases)", fontsize=9)
    ax["bars"].legend(loc="upper left", ncols=3)
    ax["bars"].margins(y=0.2)
    if iso:
        names = list(iso)
        xi = np.arange(len(names))
        quiet = [i.p99_quiet_ms or np.nan for i in iso.values()]  # all set: see `iso`
        loud = [i.p99_spike_ms or np.nan for i in iso.values()]
        ax["iso"].bar(xi - 0.2, quiet, 0.4, label="p99 in quiet phases", color=COLOURS[0])
        ax["iso"].bar(xi + 0.2, loud, 0.4, label="p99 while another tenant spikes",
                      color=COLOURS[1])
        for k, i in enumerate(iso.values()):
            ratio = i.ratio
            text = "ratio n/a" if ratio is None else f"ratio {ratio:.3g}"
            ax["iso"].annotate(text, (k, max(quiet[k], np.nan_to_num(loud[k]))),
                               ha="center", va="bottom", xytext=(0, 3),
                               textcoords="offset points", fontsize=8)
        ax["iso"].set_xticks(xi, names)
        ax["iso"].set_ylabel("latency p99 (ms)")
        ax["iso"].set_title("noisy neighbours: isolation ratio = spike p99 / quiet p99",
                            fontsize=9)
        ax["iso"].legend(loc="upper left", ncols=2)
        ax["iso"].margins(y=0.25)
    if over_time:
        div, unit = time_unit(span(r))
        t = times(r)
        for j, name in enumerate(tenants):
            v = as_array(iv.tenant_latency_p99_ms.get(name) for iv in r.timeseries)
            envelope(ax["time"], decimate(t, v, points), div, f"{name} p99",
                      COLOURS[j % len(COLOURS)])
        ax["time"].set_ylabel("latency p99 (ms)")
        _finish_time_axes([ax["time"]], r, div, unit)
    return fig


def health_chart(r: RunResult, points: int) -> Figure:
    """The generator's own lateness, CPU and the host's steal over time, and
    their whole-run figures."""
    h = r.health
    lateness = column(r, "lateness_p99_ms")
    has_time = bool(np.isfinite(lateness).any())
    cpu, steal = column(r, "cpu_percent"), column(r, "steal_percent")
    has_load = has_time and bool(np.isfinite(cpu).any())
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, 4.6 if has_load else 2.8), layout="constrained")
    mosaic: list[HashableList[str]] = [["time", "time", "cpu"]] if has_time else [["cpu"]]
    ax = fig.subplot_mosaic(mosaic + [["load", "load", "cpu"]] if has_load else mosaic)
    if has_load:
        div, unit = time_unit(span(r))
        envelope(ax["load"], decimate(times(r), cpu, points), div, "generator CPU",
                 COLOURS[0], line="high")
        if np.isfinite(steal).any():
            envelope(ax["load"], decimate(times(r), steal, points), div, "host CPU steal",
                     COLOURS[1], line="high")
        ax["load"].set_ylabel("% (CPU of one core)")
        ax["load"].set_ylim(bottom=0)
        _finish_time_axes([ax["load"]], r, div, unit)
    if has_time:
        div, unit = time_unit(span(r))
        envelope(ax["time"], decimate(times(r), lateness, points), div, "lateness p99",
                  COLOURS[4], line="high")
        ax["time"].axhline(h.lateness_bound_ms, color="#c62828", ls="--", lw=1,
                           label=f"bound {h.lateness_bound_ms:g} ms")
        ax["time"].set_ylabel("lateness p99 (ms)")
        ax["time"].set_ylim(bottom=0)
        _finish_time_axes([ax["time"]], r, div, unit)
    names = ["generator CPU", "host CPU steal"]
    vals = [h.cpu_percent, h.steal_percent]
    bars = ax["cpu"].barh(names, [v or 0 for v in vals], color=[COLOURS[0], COLOURS[1]])
    for bar, v in zip(bars, vals):
        ax["cpu"].annotate("n/a" if v is None else f"{v:.3g}%",
                           (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                           xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax["cpu"].set_xlim(0, max(100.0, *(v or 0 for v in vals)) * 1.15)
    ax["cpu"].set_xlabel("% of one core (CPU) / of host time (steal)")
    return fig


def server_metrics_chart(r: RunResult, points: int, limit: int = 8) -> Figure | None:
    """Scraped telemetry other than GPU utilisation and power: up to `limit`
    series, queues, running requests, cache use and rates first."""
    series = list(telemetry_series(r).items())[:limit]
    if not series:
        return None
    fig, axes = figure(len(series), height=1.5)
    div, unit = time_unit(span(r))
    for j, (ax, (name, s)) in enumerate(zip(axes, series)):
        envelope(ax, decimate_points(s.points, points), div, name,
                  COLOURS[j % len(COLOURS)])
        ax.set_ylabel(s.unit)
    _finish_time_axes(axes, r, div, unit)
    return fig


def why_chart(r: RunResult) -> Figure | None:
    """Where the mean request's time went, interval by interval: the
    server's queue, prefill and decode, and what lay outside it, stacked;
    the client's mean service time as a line over them."""
    pts = [p for p in (r.why.over_time if r.why else []) if p.remainder_ms is not None]
    if not pts:
        return None
    fig, axes = figure(1, height=2.6)
    ax = axes[0]
    div, unit = time_unit(span(r))
    t = np.array([p.t_s for p in pts]) / div
    layers = [(name, np.array([getattr(p, f"{key}_ms") or 0.0 for p in pts]))
              for name, key in (("queue", "queue"), ("prefill", "prefill"),
                                ("decode", "decode"), ("outside the server", "remainder"))]
    if all(not v.any() for _, v in layers[:3]):  # the server timed only its whole
        layers = [("the server", np.array([p.client_ms - (p.remainder_ms or 0.0)
                                           for p in pts])), layers[3]]
    ax.stackplot(t, *[np.clip(v, 0, None) for _, v in layers], labels=[n for n, _ in layers],
                 colors=COLOURS[:len(layers)], alpha=0.8)
    ax.plot(t, [p.client_ms for p in pts], color="black", linewidth=1,
            label="client mean service time")
    ax.set_ylabel("mean time (ms)")
    ax.set_ylim(bottom=0)
    _finish_time_axes(axes, r, div, unit)
    return fig
