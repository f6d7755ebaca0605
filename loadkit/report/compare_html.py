"""compare.html: two runs side by side (`loadkit compare`).

`comparison` is the comparison's own document (verdict and rows, each with a
decision); `base` and `cand` are the two run.json documents. Rendered
defensively: a missing key leaves out its part of the page rather than
failing, since either run may come from another loadkit version. Same rules
as report.html: one file, no JavaScript, everything autoescaped, charts from
matplotlib as inline SVG.
"""

from __future__ import annotations

from loadkit.report import chartdata, charts
from loadkit.report.decimate import DEFAULT_POINTS, decimate
from loadkit.report.format import quantity
from loadkit.report.html import _ENV, VERDICT_MARK, VERDICT_WORD, chart_entry, metadata

DECISION_CLASS = {"regression": "fail", "fail": "fail", "worse": "fail",
                  "improvement": "pass", "better": "pass", "no_change": "pass",
                  "pass": "pass", "inconclusive": "inconclusive"}
COMPARE_WORD = {**VERDICT_WORD, "regression": "REGRESSION", "improvement": "IMPROVEMENT",
                "no_change": "NO CHANGE"}
COMPARE_MARK = {**VERDICT_MARK, "regression": "✗", "improvement": "✓", "no_change": "="}


def render_compare_html(comparison: dict, base: dict, cand: dict,
                        points: int = DEFAULT_POINTS) -> str:
    comparison = comparison if isinstance(comparison, dict) else {}
    rows = [row for row in comparison.get("rows") or [] if isinstance(row, dict)]
    return _ENV.get_template("compare.html.j2").render(
        verdict=str(comparison.get("verdict") or "unknown"), rows=rows,
        runs=[_run_card("base", base), _run_card("candidate", cand)],
        charts=_charts(base, cand, points), word=COMPARE_WORD, mark=COMPARE_MARK,
        decision_class=DECISION_CLASS, pct=_pct, value=_value)


def _run_card(label: str, r: dict) -> dict:
    r = r if isinstance(r, dict) else {}
    try:
        meta = metadata(r)
    except (TypeError, ValueError, AttributeError):
        meta = []
    return {"label": label, "name": (r.get("workload") or {}).get("name", "?"),
            "verdict": r.get("verdict"), "trusted": r.get("trusted", True),
            "slos": [s for s in r.get("slos") or [] if isinstance(s, dict)], "meta": meta}


def _pct(v) -> str:
    return "—" if not isinstance(v, (int, float)) else f"{v:+.2f}%"


def _value(v, stat: str | None = None) -> str:
    if not isinstance(v, (int, float)):
        return "—" if v is None else str(v)
    return quantity(v, "ms") if stat and stat[:1] in "pm" else f"{v:.4g}"


def _charts(base: dict, cand: dict, points: int) -> list[dict]:
    specs = [("compare-spectrum", "Latency by percentile, both runs", _spectra,
              "Percentile spectra over each run's measured phases, overlaid."),
             ("compare-p99", "Latency p99 over time, both runs", _p99_over_time,
              "Per-interval latency p99, each run from its own start.")]
    return [e for chart_id, title, draw, caption in specs
            if (e := chart_entry(chart_id, title, caption, draw, base, cand, points))]


def _spectra(base: dict, cand: dict, _points: int):
    curves = [(f"{label} latency", h) for label, r in (("base", base), ("candidate", cand))
              if isinstance(r, dict) and (h := chartdata.histogram(r, "latency")) is not None]
    return charts.spectrum_chart(curves)


def _p99_over_time(base: dict, cand: dict, points: int):
    runs = [(label, r) for label, r in (("base", base), ("candidate", cand))
            if isinstance(r, dict) and r.get("timeseries")]
    if not runs:
        return None
    fig, (ax,) = charts.figure(1, height=2.8)
    div, unit = chartdata.time_unit(max(chartdata.span(r) for _l, r in runs))
    for j, (label, r) in enumerate(runs):
        env = decimate(chartdata.times(r), chartdata.column(r, "latency_p99_ms"), points)
        charts.envelope(ax, env, div, f"{label} p99", charts.COLOURS[j])
    ax.set_ylabel("latency p99 (ms)")
    ax.set_xlabel(f"time since each run's start ({unit})")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", ncols=2)
    return fig
