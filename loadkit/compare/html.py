"""compare.html: two runs side by side (`loadkit compare`).

The comparison's rows and verdict, both runs' latency charts overlaid, and
each run's SLOs and metadata. Same rules as report.html, whose template
environment and pieces it shares (templates/compare.html.j2 includes
common.html.j2 and style.css.j2): one file, no JavaScript, everything
autoescaped, charts from matplotlib as inline SVG.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loadkit.compare.model import Comparison, Decision
from loadkit.compare.render import change_text, p_text, tolerance_text, value_text
from loadkit.outputs import canvas, chartdata, charts
from loadkit.outputs.decimate import DEFAULT_POINTS, decimate
from loadkit.outputs.html import (
    _ENV,
    VERDICT_MARK,
    VERDICT_WORD,
    Chart,
    chart_entry,
    metadata,
)
from loadkit.result.model import RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The CSS class of a decision's badge (too few samples: neutral).
DECISION_CLASS = {Decision.REGRESSION: "fail", Decision.IMPROVEMENT: "pass",
                  Decision.NO_CHANGE: "pass", Decision.INCONCLUSIVE: "inconclusive"}
# Words and marks of decisions and, for the run cards, of run verdicts.
COMPARE_WORD = {**VERDICT_WORD, Decision.REGRESSION: "REGRESSION",
                Decision.IMPROVEMENT: "IMPROVEMENT", Decision.NO_CHANGE: "NO CHANGE"}
COMPARE_MARK = {**VERDICT_MARK, Decision.REGRESSION: "✗", Decision.IMPROVEMENT: "✓",
                Decision.NO_CHANGE: "="}


def render_compare_html(comparison: Comparison, base: RunResult, cand: RunResult,
                        points: int = DEFAULT_POINTS) -> str:
    return _ENV.get_template("compare.html.j2").render(
        verdict=comparison.verdict, rows=comparison.rows,
        runs=[_run_card("base", base), _run_card("candidate", cand)],
        charts=_charts(base, cand, points), word=COMPARE_WORD, mark=COMPARE_MARK,
        decision_class=DECISION_CLASS, value=value_text, change=change_text,
        tolerance=tolerance_text, p=p_text)


def _run_card(label: str, r: RunResult) -> dict[str, Any]:
    return {"label": label, "name": r.workload.name, "verdict": r.verdict,
            "trusted": r.trusted, "slos": r.slos, "meta": metadata(r)}


def _charts(base: RunResult, cand: RunResult, points: int) -> list[Chart]:
    specs = [("compare-spectrum", "Latency by percentile, both runs", _spectra,
              "Percentile spectra over each run's measured phases, overlaid."),
             ("compare-p99", "Latency p99 over time, both runs", _p99_over_time,
              "Per-interval latency p99, each run from its own start.")]
    return [e for chart_id, title, draw, caption in specs
            if (e := chart_entry(chart_id, title, caption, draw, base, cand, points))]


def _spectra(base: RunResult, cand: RunResult, _points: int) -> Figure | None:
    curves = [(f"{label} latency", h) for label, r in (("base", base), ("candidate", cand))
              if (h := chartdata.histogram(r, "latency")) is not None]
    return charts.spectrum_chart(curves)


def _p99_over_time(base: RunResult, cand: RunResult, points: int) -> Figure | None:
    runs = [(label, r) for label, r in (("base", base), ("candidate", cand)) if r.timeseries]
    if not runs:
        return None
    fig, (ax,) = canvas.figure(1, height=2.8)
    div, unit = chartdata.time_unit(max(chartdata.span(r) for _l, r in runs))
    for j, (label, r) in enumerate(runs):
        env = decimate(chartdata.times(r), chartdata.column(r, "latency_p99_ms"), points)
        canvas.envelope(ax, env, div, f"{label} p99", canvas.COLOURS[j])
    ax.set_ylabel("latency p99 (ms)")
    ax.set_xlabel(f"time since each run's start ({unit})")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", ncols=2)
    return fig
