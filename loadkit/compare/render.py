"""compare.json / compare.md / compare-junit.xml / console lines: a comparison, rendered.

Pure renderers over the Comparison model; the HTML side by side is
loadkit.compare.html.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from loadkit.compare.model import Comparison, Decision, Row
from loadkit.compare.stats import samples_for
from loadkit.outputs.junit import junit_document

_WORD = {Decision.REGRESSION: "❌ REGRESSION", Decision.IMPROVEMENT: "✅ IMPROVEMENT",
         Decision.NO_CHANGE: "✅ NO SIGNIFICANT CHANGE", Decision.INCONCLUSIVE: "⚠️ INCONCLUSIVE",
         Decision.INSUFFICIENT_SAMPLES: "too few samples"}
_UNDECIDED = (Decision.INCONCLUSIVE, Decision.INSUFFICIENT_SAMPLES)
_HEADER = "| metric | scope | stat | base | candidate | change | 95% CI | p | tolerance | decision |"


def render_compare_json(c: Comparison) -> str:
    """compare.json: json.dumps' own bytes (ASCII escapes, Python's float repr)."""
    return json.dumps(c.document(), indent=2, allow_nan=False) + "\n"


def value_text(v: float | None, unit: str) -> str:
    """A row's base or candidate value in its unit: '212 ms', '13.6%'."""
    if v is None:
        return "n/a"
    return f"{v * 100:.3g}%" if unit == "%" else f"{v:.4g} {unit}"


def change_text(v: float | None, r: Row) -> str:
    """A change or a bound of its interval: relative ('+20.7%'), or in
    percentage points for a share ('+13.6pp'), never one labelled the other."""
    return "n/a" if v is None else f"{v:+.3g}{_change_unit(r)}"


def tolerance_text(r: Row) -> str:
    return f"{r.tolerance_pct:g}{_change_unit(r)}"


def _change_unit(r: Row) -> str:
    return "pp" if r.unit == "%" else "%"


def row_line(r: Row) -> str:
    """'p99 12.1 ms -> 14.6 ms (+20.7%, 95% CI [+12.3%, +29.9%], p=1e-9; tolerance 10%)'."""
    if r.change_pct is None:
        need = (f"; {r.stat} needs {samples_for(r.stat):,} in each"
                if r.decision == Decision.INSUFFICIENT_SAMPLES and r.stat.startswith("p")
                else "")
        return (f"{r.stat}: {r.decision.replace('_', ' ')} "
                f"({r.samples_base:,} vs {r.samples_cand:,} samples{need})")
    ci = ""
    if r.ci_low_pct is not None or r.ci_high_pct is not None:
        low = change_text(r.ci_low_pct, r) if r.ci_low_pct is not None else "-∞"
        high = change_text(r.ci_high_pct, r) if r.ci_high_pct is not None else "+∞"
        ci = f", 95% CI [{low}, {high}]"
    return (f"{r.stat} {value_text(r.base, r.unit)} -> {value_text(r.cand, r.unit)} "
            f"({change_text(r.change_pct, r)}{ci}, p{_p(r.p_value)}; "
            f"tolerance {tolerance_text(r)})")


def console_lines(c: Comparison) -> list[str]:
    """One line per row that is not `no_change`, for the terminal."""
    return [f"{r.decision.upper():13} {r.metric} [{r.scope}] {row_line(r)}"
            for r in c.rows if r.decision != Decision.NO_CHANGE]


def _p(p: float | None) -> str:
    return "" if p is None else "<1e-15" if p < 1e-15 else f"={p:.2g}"


def p_text(p: float | None) -> str:
    return _p(p).lstrip("=") or "n/a"


def render_compare_markdown(c: Comparison) -> str:
    lines = [f"# loadkit compare — {_WORD[c.verdict]}", "",
             (f"Base `{c.base.run_id}` ({c.base.workload}) · candidate "
              f"`{c.cand.run_id}` ({c.cand.workload}) · α = {c.alpha}"), ""]
    lines += [f"> ⚠️ {w}" for w in c.warnings] + ([""] if c.warnings else [])
    lines += [_HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in c.rows:
        ci = (f"[{r.ci_low_pct:+.3g}, {r.ci_high_pct:+.3g}]"
              if r.ci_low_pct is not None and r.ci_high_pct is not None else "")
        p = p_text(r.p_value)
        lines.append(f"| {r.metric} | {r.scope} | {r.stat} | "
                     f"{value_text(r.base, r.unit)} | {value_text(r.cand, r.unit)} | "
                     f"{change_text(r.change_pct, r)} | {ci} | {p} | {tolerance_text(r)} | "
                     f"{_WORD[r.decision]} |")
    return "\n".join(lines) + "\n"


def render_compare_junit(c: Comparison) -> str:
    rows = c.rows
    suite = ET.Element("testsuite", name="loadkit.compare", tests=str(len(rows)),
                       failures=str(sum(r.decision == Decision.REGRESSION for r in rows)),
                       skipped=str(sum(r.decision in _UNDECIDED for r in rows)),
                       errors="0")
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=f"loadkit.compare.{r.scope}",
                             name=f"{r.metric} {r.stat} [{r.scope}]")
        if r.decision == Decision.REGRESSION:
            ET.SubElement(case, "failure", message=row_line(r), type="Regression")
        elif r.decision in _UNDECIDED:
            ET.SubElement(case, "skipped", message=row_line(r))
    return junit_document(suite)
