"""junit.xml: one test case per SLO, read by GitLab, Jenkins and GitHub reporters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadkit.errors import printable
from loadkit.outputs.format import error_line, slo_line
from loadkit.outputs.why import why_line
from loadkit.result.model import RunResult, Verdict


def render_junit(result: RunResult) -> str:
    slos = result.slos
    # A verdict worse than its SLOs' (nothing answered, a warm cache: a pass
    # made inconclusive) is a case of its own.
    own = result.own_verdict_reason
    suite = ET.Element("testsuite", name=f"loadkit.{result.workload.name}",
                       tests=str(len(slos) + 1 + (own is not None)),
                       failures=str(sum(s.verdict == Verdict.FAIL for s in slos)),
                       skipped=str(sum(s.verdict == Verdict.INCONCLUSIVE for s in slos)
                                   + (own is not None)),
                       errors=str(0 if result.trusted else 1),
                       timestamp=result.started_at)
    trust = ET.SubElement(suite, "testcase", classname="loadkit.run", name="run is trustworthy")
    if not result.trusted:
        ET.SubElement(trust, "error", message=printable("; ".join(result.untrusted_reasons)))
    if own is not None:
        case = ET.SubElement(suite, "testcase", classname="loadkit.run", name="verdict")
        ET.SubElement(case, "skipped", message=f"inconclusive: {own}")
    cause = why_line(result.why)
    for s in slos:
        case = ET.SubElement(suite, "testcase", classname=f"loadkit.slo.{s.scope}",
                             name=s.name)
        if s.verdict == Verdict.FAIL:
            why = f"; errors: {error_line(result.errors)}" if s.metric == "error_rate" \
                and result.counts.errors else f"; why: {cause}" if cause else ""
            ET.SubElement(case, "failure", message=printable(slo_line(s) + why),
                          type="SLOViolation")
        elif s.verdict == Verdict.INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=f"inconclusive: {slo_line(s)}")
    return junit_document(suite)


def junit_document(suite: ET.Element) -> str:
    """One <testsuite> as a whole JUnit file (runs, comparisons, capacity searches)."""
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
