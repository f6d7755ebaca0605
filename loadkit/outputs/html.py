"""report.html: one self-contained page, read by people who did not run the test.

Verdict first, in words and colour, then the SLO table, the charts (inline
SVG, charts.py drawn on canvas.py: no JavaScript, nothing fetched, a
Content-Security-Policy that forbids both), errors with examples, telemetry, generator health and
the run's metadata, with links between sections. jinja2 autoescapes every
value; the only markup passed through unescaped is the SVG that matplotlib
wrote (it escapes its texts; canvas.svg refuses scripts and handlers).
Rendering is a pure function of the RunResult (run.json): re-rendering gives
the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import jinja2
from markupsafe import Markup

from loadkit.outputs import canvas, charts
from loadkit.outputs.decimate import DEFAULT_POINTS
from loadkit.outputs.departures import departure_lines
from loadkit.outputs.finish_mix import finish_mix, finish_notes
from loadkit.outputs.format import interval, quantity, samples, seconds
from loadkit.outputs.why import split_line
from loadkit.result import RunResult, SLOResult, Verdict
from loadkit.result.model import Gpu, Telemetry, TelemetrySource

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("loadkit.outputs", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["quantity"] = quantity
_ENV.filters["interval"] = interval
_ENV.filters["samples"] = samples
_ENV.filters["num"] = lambda v: "n/a" if v is None else f"{v:,}" if isinstance(v, int) \
    else f"{v:.4g}"

# Where each SLO metric is shown (links from the SLO table).
SECTION_OF = {"latency": "spectrum", "service_time": "spectrum", "ttft": "tokens",
              "ttft_corrected": "tokens", "itl": "tokens", "inter_chunk": "tokens",
              "tpot": "tokens", "ttfo": "tokens", "ttfo_corrected": "tokens",
              "reasoning_time": "tokens", "tool_call_time": "tokens", "reasoning_itl": "tokens",
              "answer_itl": "tokens", "max_stall": "tokens",
              "lateness": "health", "error_rate": "errors",
              "throughput": "throughput", "isolation_ratio": "tenants",
              "recovery_time": "over-time"}  # trend SLOs link to "trends" (the template)
VERDICT_WORD = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
VERDICT_MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?"}


@dataclass(frozen=True)
class Chart:
    """One chart for a template: its SVG, or the error that kept it from being drawn."""

    id: str
    section: str | None
    title: str
    caption: str
    svg: Markup | None = None
    error: str | None = None


@dataclass(frozen=True)
class TelemetryView:
    """What the telemetry section shows: the reason when nothing was sampled,
    and the whole-run figures as text."""

    available: bool
    simulated: bool
    reason: str
    interval_s: float | None
    sources: list[TelemetrySource]
    gpus: list[str]
    all: dict[str, str]


def render_html(result: RunResult, points: int = DEFAULT_POINTS) -> str:
    """The report page; `points` bounds every time series (min/max envelopes)."""
    r = result
    return _ENV.get_template("report.html.j2").render(
        r=r, verdict_text=verdict_text(r), charts=run_charts(r, points),
        telemetry=telemetry_summary(r.telemetry), meta=metadata(r), section_of=SECTION_OF,
        word=VERDICT_WORD, mark=VERDICT_MARK, finish=finish_mix(r),
        causes=[(c.title, c.evidence) for c in r.why.causes] if r.why else [],
        split=split_line(r.why.decomposition if r.why else None),
        finish_notes=finish_notes(r),
        departures=departure_lines(r),
        spec=json.dumps(r.workload.spec, indent=2, sort_keys=True))


def verdict_text(r: RunResult) -> str:
    """The verdict as a sentence a release manager can repeat."""
    slos = r.slos
    failed = [s for s in slos if s.verdict == Verdict.FAIL]
    undecided = [s for s in slos if s.verdict == Verdict.INCONCLUSIVE]

    def names(items: list[SLOResult]) -> str:
        return "; ".join(f"{s.text} ({s.scope})" for s in items)

    if not slos:
        text = "No SLOs were declared, so nothing could fail."
    elif failed:
        text = f"{len(failed)} of {len(slos)} SLOs failed: {names(failed)}."
        if undecided:
            text += f" {len(undecided)} more could not be decided."
    elif undecided:
        text = (f"No SLO failed, but {len(undecided)} of {len(slos)} could not be decided "
                f"(too few samples or the threshold inside the confidence interval): "
                f"{names(undecided)}.")
    else:
        text = f"All {len(slos)} SLOs passed."
        if r.verdict == Verdict.INCONCLUSIVE and r.cache is not None:
            text += f" Yet the verdict is inconclusive: {r.cache.reason}."
    if not r.trusted:
        text = ("This run cannot be trusted, whatever its SLOs say: "
                f"{'; '.join(r.untrusted_reasons)}. " + text)
    return text


def run_charts(r: RunResult, points: int) -> list[Chart]:
    """Every chart that has data, in page order."""
    specs: list[tuple[str, str, str, Callable[..., Figure | None], tuple[object, ...], str]] = [
        ("spectrum", "spectrum", "Latency by percentile", charts.run_spectrum, (r,),
         ("HdrHistogram-style percentile spectrum over the measured phases; the x axis is "
          "log-scaled in 1/(1 − percentile), so the tail to 99.99% gets its own room.")),
        ("latency-time", "over-time", "Latency over time", charts.latency_over_time,
         (r, points), ("Per-interval latency percentiles; GPU utilisation and power, when "
                       "sampled, on the same time axis. Shaded bands are the phases; "
                       "recovery_time SLOs mark each disturbance's end (dotted) and the "
                       "time until p99 was back under its limit (dashed).")),
        ("why", "why", "Where the time went", charts.why_chart, (r,),
         ("The mean request per interval by the server's own timers (queue, prefill, "
          "decode), and what lay outside the server (network, gateways, the client): the "
          "client's mean service time minus the server's mean end to end.")),
        ("trends", "trends", "Trends", charts.trends_chart, (r,),
         ("Trend SLOs: each window's value (its percentile, or its mean GPU memory) and "
          "the Theil–Sen line fitted to them; the slope's 95% interval is in the legend.")),
        ("throughput", "throughput", "Throughput and errors over time",
         charts.throughput_over_time, (r, points),
         "Completions, errors and output tokens per second, per interval."),
        ("tokens", "tokens", "Token timing distributions", charts.token_distributions, (r,),
         "Share of samples per log-spaced bin; lines at p50 (solid) and p99 (dashed)."),
        ("tenants", "tenants", "Tenants compared", charts.tenants_chart, (r, points),
         ("Each tenant's latency, its p99 while another tenant spikes against its p99 in "
          "quiet phases (the isolation ratio), and its p99 over time.")),
        ("server-metrics", "server-metrics", "Server metrics", charts.server_metrics_chart,
         (r, points), ("Scraped server metrics other than GPU utilisation and power (up to "
                       "eight: queues, running requests, cache use and rates first).")),
        ("health", "health", "Generator health", charts.health_chart, (r, points),
         ("The generator's own lateness (sent − intended) per interval against its bound, "
          "and its CPU use and the host's CPU steal over the run.")),
    ]
    return [e for chart_id, section, title, draw, args, caption in specs
            if (e := chart_entry(chart_id, title, caption, draw, *args, section=section))]


def chart_entry(chart_id: str, title: str, caption: str, draw: Callable[..., Figure | None],
                *args: object, section: str | None = None) -> Chart | None:
    """One chart for a template: its SVG, or the error that kept it from being
    drawn (one bad chart must not lose the page); None when it has no data."""
    entry = Chart(id=f"chart-{chart_id}", section=section, title=title, caption=caption)
    try:
        svg = canvas.svg(chart_id, draw, *args)
    except Exception as exc:
        if os.environ.get("LOADKIT_DEBUG"):
            raise
        return replace(entry, error=f"{type(exc).__name__}: {exc}")
    if svg is None:
        return None
    return replace(entry, svg=Markup(svg))  # matplotlib's own, escaped output (see canvas.svg)


def telemetry_summary(t: Telemetry | None) -> TelemetryView | None:
    """None for a run without telemetry; else whether it is available, and why not."""
    if t is None:
        return None
    reason = t.reason or "; ".join(
        f"{s.kind} {s.target}: {s.reason}".replace("  ", " ")
        for s in t.sources if s.reason) or "no source answered"
    return TelemetryView(
        available=t.available, simulated=t.simulated, reason=reason, interval_s=t.interval_s,
        sources=t.sources, gpus=[_gpu_line(g) for g in t.gpus],
        all={name: _figure(value) for name, value in t.all.items()})


def _figure(value: float | str | None) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metadata(r: RunResult) -> list[tuple[str, str]]:
    w = r.workload
    rows: list[tuple[str, object]] = [
        ("run", r.run_id), ("workload", w.name), ("file", w.path), ("file sha256", w.sha256),
        ("seed", w.seed), ("target", r.target), ("loadkit version", r.loadkit_version),
        ("host", r.host), ("git commit", r.git_commit or "not run inside a git repository"),
        ("started", r.started_at), ("finished", r.finished_at),
        ("measured", f"{seconds(r.measured_s)}"
                     + (f" of {seconds(w.duration_s)} planned" if r.cut_short else "")
                     + f" after {seconds(w.warmup_s)} warm-up"),
        ("interval", seconds(w.interval_s) if w.interval_s else None),
        ("schema version", r.schema_version)]
    return [(k, str(v)) for k, v in rows if v is not None]


def _gpu_line(g: Gpu) -> str:
    """'GPU 0: NVIDIA H200, 143,771 MiB (nvml); not reported: temp'."""
    text = f"GPU {g.index}: {g.name or 'unnamed'}"
    if g.memory_total_mib:
        text += f", {g.memory_total_mib:,.0f} MiB"
    if g.source:
        text += f" ({g.source})"
    if g.unsupported:
        text += f"; not reported: {', '.join(g.unsupported)}"
    return text
