"""capacity.html: one self-contained page, the report.html way (no JavaScript,
nothing fetched, everything autoescaped, charts as matplotlib's inline SVG
through loadkit.outputs.canvas), with the report's own stylesheet.

Charts: latency against achieved throughput with the knee (the highest
passing probe) marked, and the binding SLO's value with its 95% interval
against the load; goodput and throughput against offered load; cost per 1M
output tokens against load, when telemetry and a price gave one.

The template lives here as a string rather than a .j2 file, so that an
installed loadkit carries it without a package-data entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2

from loadkit.capacity.model import CapacityResult, ProbeRecord
from loadkit.capacity.report import facts, headline, slo_cell, slo_names, verdict_word
from loadkit.capacity.search import Status
from loadkit.outputs import canvas
from loadkit.outputs.format import quantity
from loadkit.outputs.html import Chart, chart_entry

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_STATUS_COLOUR = {Status.PASS: "#009E73", Status.FAIL: "#D55E00",
                  Status.INCONCLUSIVE: "#E69F00"}
_OTHER = "#7f7f7f"  # generator-limited or untrusted: no measure of the server


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("loadkit.outputs", "templates"),  # capacity.html.j2
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(r: CapacityResult) -> str:
    css = "untrusted" if not r.trusted else r.verdict.value
    return _ENV.get_template("capacity.html.j2").render(
        r=r, headline=headline(r), word=verdict_word(r).split(" ", 1)[1], css=css,
        facts=facts(r), charts=capacity_charts(r), names=slo_names(r),
        cell=lambda p, n: slo_cell(next((s for s in p.slos if s.name == n), None)),
        lat=_lat, pct=lambda v: "" if v is None else f"{v:.3g}%", num=_num)


def capacity_charts(r: CapacityResult) -> list[Chart]:
    specs = [
        ("capacity-curve", "Latency against throughput", _curve,
         "Latency p50 and p99 of each probe against the throughput it achieved; the dashed "
         "line marks the knee (the highest load that passed). Below, the binding SLO's value "
         "at each load with its 95% interval, and its threshold. Grey: probes where the "
         "generator was the limit, no measure of the server."),
        ("capacity-goodput", "Goodput against offered load", _goodput,
         "Requests completed, and completed within the goodput rules, per second, against the "
         "load asked; the shaded band is the capacity interval."),
        ("capacity-cost", "Cost per 1M output tokens against load", _cost,
         "From telemetry.price_per_gpu_hour and the GPUs sampled (simulated gauges when the "
         "simulator's); it falls with load until the knee."),
    ]
    return [e for chart_id, title, draw, caption in specs
            if (e := chart_entry(chart_id, title, caption, draw, r))]


def _judged(r: CapacityResult) -> list[ProbeRecord]:
    return sorted(r.probes, key=lambda p: p.value)


def _colour(p: ProbeRecord) -> str:
    return _STATUS_COLOUR.get(p.status, _OTHER)


def _band(ax: Axes, r: CapacityResult) -> None:
    lo, hi = r.capacity.passed, r.capacity.failed
    if lo is not None and hi is not None:
        ax.axvspan(lo, hi, color="#009E73", alpha=0.12, lw=0,
                   label=f"capacity {lo:.4g}–{hi:.4g} {r.unit}")
    elif lo is not None:
        ax.axvline(lo, color="#009E73", ls="--", lw=1, label=f"capacity >= {lo:.4g} {r.unit}")


def _curve(r: CapacityResult) -> Figure | None:
    probes = [p for p in _judged(r) if (p.latency.get("latency") or None) is not None]
    if not probes:
        return None
    binding = r.binding_slo
    points = [(p, s, s.observed) for p in _judged(r) for s in p.slos
              if s.name == binding and s.observed is not None]
    fig, axes = canvas.figure(2 if points else 1, height=2.8, sharex=False)
    ax = axes[0]
    by_tp = sorted(probes, key=lambda p: p.throughput_rps)
    for stat, style in (("p50", ":"), ("p99", "-")):
        xs = [p.throughput_rps for p in by_tp if getattr(p.latency["latency"], stat) is not None]
        ys = [getattr(p.latency["latency"], stat) for p in by_tp
              if getattr(p.latency["latency"], stat) is not None]
        ax.plot(xs, ys, style, color=canvas.COLOURS[0], lw=1, label=f"latency {stat}")
        ax.scatter(xs, ys, c=[_colour(p) for p in by_tp
                              if getattr(p.latency["latency"], stat) is not None], s=18, zorder=3)
    knee = [p for p in probes if r.capacity.passed is not None and p.value == r.capacity.passed
            and p.status == Status.PASS]
    if knee:
        ax.axvline(knee[-1].throughput_rps, color="#009E73", ls="--", lw=1,
                   label=f"knee: {knee[-1].throughput_rps:.4g} req/s achieved")
    _log_if_wide(ax, [y for p in probes for y in (p.latency["latency"].p50,
                                                  p.latency["latency"].p99) if y])
    ax.set_xlabel("throughput achieved (req/s)")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left")
    if points:
        bx = axes[1]
        s0 = points[0][1]
        for p, s, y in points:
            low = y - s.ci_low if s.ci_low is not None else 0.0
            high = s.ci_high - y if s.ci_high is not None else 0.0
            bx.errorbar([p.value], [y], yerr=[[max(low, 0.0)], [max(high, 0.0)]],
                        fmt="o", color=_colour(p), ms=4, capsize=3)
        bx.axhline(s0.threshold, color="#D55E00", ls="--", lw=1,
                   label=f"threshold {s0.op} {quantity(s0.threshold, s0.unit)}")
        _band(bx, r)
        bx.set_xlabel(f"load asked ({r.unit})")
        bx.set_ylabel(f"{s0.text.split(' ')[0]} {s0.unit}".strip())
        bx.set_title(f"binding SLO: {s0.name}", fontsize=9, loc="left")
        bx.legend(loc="upper left")
    return fig


def _goodput(r: CapacityResult) -> Figure | None:
    probes = [p for p in _judged(r) if p.status != Status.UNTRUSTED]
    if not probes:
        return None
    fig, (ax,) = canvas.figure(1, height=2.8)
    xs = [p.value for p in probes]
    ax.plot(xs, [p.throughput_rps for p in probes], "-o", ms=3, color=canvas.COLOURS[0],
            lw=1, label="throughput")
    good = [(p.value, g) for p in probes if (g := p.goodput_rps) is not None]
    if good:
        ax.plot([x for x, _ in good], [y for _, y in good], "-o", ms=3,
                color=canvas.COLOURS[2], lw=1, label="goodput")
    if r.unit == "req/s":
        ax.plot(xs, xs, ":", color="#999999", lw=1, label="offered")
    _band(ax, r)
    ax.set_xlabel(f"load asked ({r.unit})")
    ax.set_ylabel("req/s")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    return fig


def _cost(r: CapacityResult) -> Figure | None:
    costs = [(p, p.cost_per_1m_output_tokens) for p in _judged(r)
             if p.cost_per_1m_output_tokens is not None]
    if not costs:
        return None
    probes = [p for p, _ in costs]
    fig, (ax,) = canvas.figure(1, height=2.6)
    xs, ys = [p.value for p in probes], [c for _, c in costs]
    ax.plot(xs, ys, "-", color=canvas.COLOURS[3], lw=1, label="cost per 1M output tokens")
    ax.scatter(xs, ys, c=[_colour(p) for p in probes], s=18, zorder=3)
    _band(ax, r)
    simulated = " (simulated GPU)" if any(p.telemetry_simulated for p in probes) else ""
    ax.set_xlabel(f"load asked ({r.unit})")
    ax.set_ylabel(f"$ per 1M output tokens{simulated}")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right")
    return fig


def _log_if_wide(ax: Axes, values: list[float]) -> None:
    """A log axis labelled with plain numbers (math text is off) when the
    values span more than a decade: a knee's tail dwarfs the rest."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    if not values or max(values) / max(min(values), 1e-9) <= 10:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))


def _lat(p: ProbeRecord, stat: str) -> str:
    x = p.latency.get("latency")
    return quantity(getattr(x, stat), "ms") if x is not None else ""


def _num(v: float | None, unit: str = "") -> str:
    return "" if v is None else f"{v:.4g}{unit}"
