"""junit.xml: one test case per SLO, read by GitLab, Jenkins and GitHub reporters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadkit.report.format import error_line, slo_line


def render_junit(result: dict) -> str:
    slos = result["slos"]
    suite = ET.Element("testsuite", name=f"loadkit.{result['workload']['name']}",
                       tests=str(len(slos) + 1),
                       failures=str(sum(s["verdict"] == "fail" for s in slos)),
                       skipped=str(sum(s["verdict"] == "inconclusive" for s in slos)),
                       errors=str(0 if result["trusted"] else 1),
                       timestamp=result["started_at"])
    trust = ET.SubElement(suite, "testcase", classname="loadkit.run", name="run is trustworthy")
    if not result["trusted"]:
        ET.SubElement(trust, "error", message="; ".join(result["untrusted_reasons"]))
    for s in slos:
        case = ET.SubElement(suite, "testcase", classname=f"loadkit.slo.{s['scope']}",
                             name=s["name"])
        if s["verdict"] == "fail":
            why = f"; errors: {error_line(result)}" if s.get("metric") == "error_rate" \
                and result["counts"]["errors"] else ""
            ET.SubElement(case, "failure", message=slo_line(s) + why, type="SLOViolation")
        elif s["verdict"] == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {slo_line(s)}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
