"""capacity.json, capacity.md, capacity-junit.xml and capacity.html: a search, written out.

Pure renderers over the CapacityResult (the HTML page and its charts are
loadkit.capacity.html); `write_all` is the one place touching disk.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadkit.capacity.gate import ANSWERED
from loadkit.capacity.knee import knee_line
from loadkit.capacity.model import CapacityResult, Percentiles, ProbeRecord, SloPoint
from loadkit.outputs.format import quantity
from loadkit.outputs.junit import junit_document
from loadkit.result.model import Verdict

_WORD = {Verdict.PASS: "✅ PASS", Verdict.FAIL: "❌ FAIL", Verdict.INCONCLUSIVE: "⚠️ INCONCLUSIVE"}
_MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?", "generator_limited": "⚠ generator",
         "untrusted": "⚠ untrusted"}


def headline(r: CapacityResult) -> str:
    """'41.2–43.0 req/s', '>= 80 req/s', '< 10 req/s' or 'unknown'."""
    lo, hi = r.capacity.passed, r.capacity.failed
    if lo is not None and hi is not None:
        return f"{lo:.4g}–{hi:.4g} {r.unit}"
    if lo is not None:
        return f">= {lo:.4g} {r.unit}"
    return f"< {hi:.4g} {r.unit}" if hi is not None else "unknown"


def verdict_word(r: CapacityResult) -> str:
    return "⚠️ UNTRUSTED" if not r.trusted else _WORD[r.verdict]


def facts(r: CapacityResult) -> list[tuple[str, str]]:
    """The answer's lines, as (label, text), for every renderer."""
    out = [("capacity", f"{headline(r)} — {r.summary}")]
    if r.binding_slo:
        out.append(("binding SLO", r.binding_slo))
    if r.knee is not None:
        out.append(("knee", knee_line(r.knee)))
    if h := r.headroom:
        low = f"{h.low:.3g}×" if h.low is not None else "0×"
        high = f"{h.high:.3g}×" if h.high is not None else "∞"
        out.append(("headroom", f"{low}–{high} over {h.production:g} {r.unit} in production"))
    if e := r.expectation:
        out.append(("expectation", f"{e.text}: {e.verdict.upper()} ({e.reason})"))
    if r.ramp is not None:
        out.append(("ramp", ramp_fact(r)))
    s = r.settings
    out.append(("search", f"{len(r.probes)} probes in {r.spent_s:,.0f} s of a "
                          f"{s.budget_s:,.0f} s budget; precision {s.precision:.1%}, probes of "
                          f"{s.probe_s:g} s or more from {s.start:.4g} {r.unit}; "
                          f"{r.conclusion}"))
    return out


def ramp_fact(r: CapacityResult) -> str:
    ramp = r.ramp
    assert ramp is not None
    steps = ramp.steps
    reached = (f"{len(steps)} of {len(ramp.loads)} steps of {ramp.step_s:g} s, "
               f"{steps[0].value:.4g} to {steps[-1].value:.4g} {r.unit}" if steps
               else f"none of {len(ramp.loads)} steps")
    if not ramp.trusted:
        return f"{reached} in {ramp.elapsed_s:,.0f} s, ignored: {'; '.join(ramp.reasons)}"
    failed = f"failed at {ramp.failed:.4g} {r.unit}" if ramp.failed is not None \
        else "no step failed"
    confirm = f"; the probes started at {ramp.confirm:.4g} {r.unit}" \
        if ramp.confirm is not None else ""
    return f"{reached} in {ramp.elapsed_s:,.0f} s: {failed}{confirm}"


def render_markdown(r: CapacityResult) -> str:
    lines = [f"# loadkit capacity — {r.workload.name}: {verdict_word(r)}", ""]
    lines += [f"- **{label}**: {text}" for label, text in facts(r)] + [""]
    lines += [f"> ⚠️ untrusted: {x}" for x in r.untrusted_reasons]
    lines += [f"> 💡 {x}" for x in r.advice]
    if r.untrusted_reasons or r.advice:
        lines.append("")
    names = slo_names(r)
    lines += ["## Probes", "", *_head(["#", "load", "sent", "throughput", "goodput", "status",
                                       *(f"`{n}`" for n in names), "latency p50 / p99",
                                       "ttft p99", "itl p99", "GPU util", "cost / 1M tokens",
                                       "folder"])]
    for p in r.probes:
        slos = {s.name: s for s in p.slos}
        cells = [str(p.index), f"{p.value:.4g} {r.unit}" + (f" (×{p.attempt + 1} long)"
                                                              if p.attempt else ""),
                 _rps(p.sent_rps), _rps(p.throughput_rps), _rps(p.goodput_rps),
                 _MARK.get(p.status, p.status)]
        cells += [slo_cell(slos.get(n)) for n in names]
        lat = p.latency.get("latency") or Percentiles()
        cells += [f"{quantity(lat.p50, 'ms')} / {quantity(lat.p99, 'ms')}",
                  _p99(p, "ttft"), _p99(p, "itl"),
                  f"{p.gpu_util_mean:.3g}%" if p.gpu_util_mean is not None else "",
                  f"${p.cost_per_1m_output_tokens:.4g}"
                  if p.cost_per_1m_output_tokens is not None else "",
                  f"`{p.folder}`"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- probe {p.index}: {'; '.join(p.reasons)}" for p in r.probes if p.reasons]
    if notes:
        lines += ["", *notes]
    if r.ramp is not None and r.ramp.steps:
        lines += ["", "## Ramp", "", f"One run, `{r.ramp.folder}/`; each step judged on its own "
                  "requests.", "", *_head(["step", "load", "from", "samples", "status",
                                            *(f"`{n}`" for n in names)])]
        for i, step in enumerate(r.ramp.steps, 1):
            slos = {s.name: s for s in step.slos}
            lines.append("| " + " | ".join(
                [str(i), f"{step.value:.4g} {r.unit}", f"{step.start_s:g} s", str(step.samples),
                 _MARK.get(step.status, step.status)] + [slo_cell(slos.get(n)) for n in names])
                + " |")
    return "\n".join(lines) + "\n"


def slo_names(r: CapacityResult) -> list[str]:
    points = [s for p in r.probes for s in p.slos]
    points += [s for step in (r.ramp.steps if r.ramp else []) for s in step.slos]
    return list(dict.fromkeys(s.name for s in points))


def slo_cell(s: SloPoint | None) -> str:
    """'162 ms [150 ms, 171 ms] ✗': observed, its 95% interval, the verdict
    (marginal: the threshold lies inside the interval)."""
    if s is None:
        return ""
    ci = ""
    if s.ci_low is not None:
        ci = f" [{quantity(s.ci_low, s.unit)}, " \
             f"{quantity(s.ci_high, s.unit) if s.ci_high is not None else '∞'}]"
    marginal = " (marginal)" if s.marginal else ""
    return f"{quantity(s.observed, s.unit)}{ci} {_MARK.get(s.verdict, s.verdict)}{marginal}"


def _rps(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"


def _p99(p: ProbeRecord, metric: str) -> str:
    x = p.latency.get(metric)
    return quantity(x.p99, "ms") if x is not None and x.p99 is not None else ""


def render_junit(r: CapacityResult) -> str:
    e = r.expectation
    suite = ET.Element("testsuite", name=f"loadkit.capacity.{r.workload.name}",
                       tests=str(2 + (e is not None)),
                       failures=str(int(e is not None and e.verdict == Verdict.FAIL)),
                       skipped=str(int(r.conclusion not in ANSWERED)
                                   + int(e is not None and e.verdict == Verdict.INCONCLUSIVE)),
                       errors=str(int(not r.trusted)), timestamp=r.started_at)
    trust = ET.SubElement(suite, "testcase", classname="loadkit.capacity",
                          name="search is trustworthy")
    if not r.trusted:
        ET.SubElement(trust, "error", message="; ".join([r.summary, *r.advice]))
    found = ET.SubElement(suite, "testcase", classname="loadkit.capacity",
                          name=f"capacity found within {r.settings.precision:.1%}")
    if r.conclusion not in ANSWERED:
        ET.SubElement(found, "skipped", message=r.summary)
    if e is not None:
        case = ET.SubElement(suite, "testcase", classname="loadkit.capacity", name=e.text)
        if e.verdict == Verdict.FAIL:
            ET.SubElement(case, "failure", message=e.reason, type="CapacityExpectation")
        elif e.verdict == Verdict.INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=f"inconclusive: {e.reason}")
    return junit_document(suite)


def _head(cells: list[str]) -> list[str]:
    """A Markdown table's header and its separator, cell for cell."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
