"""Two capacity results compared: did the candidate lose capacity? Pure.

Each capacity is an interval, so the change is one too, taken at its
extremes: from (candidate's lowest / base's highest) - 1 to (candidate's
highest / base's lowest) - 1. A **regression** is a loss beyond the
tolerance for the whole interval; **no change** when no part of it is (an
**improvement** when all of it is a gain beyond the tolerance);
**inconclusive** when it straddles the tolerance: narrower searches
(`--precision`) would tell.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from loadkit.capacity.model import CapacityResult, Interval
from loadkit.compare.model import Decision
from loadkit.errors import ExitCode, InputError, gate
from loadkit.outputs.files import REPORTS, page, write_files
from loadkit.outputs.junit import junit_document
from loadkit.result.model import Part


class CapacityComparison(Part):
    """What `capacity-compare.json` holds."""

    schema_version: Literal[1] = 1
    kind: Literal["capacity_comparison"] = "capacity_comparison"
    unit: str
    base: Interval
    cand: Interval
    change_low: float | None  # fractions: -0.2 is 20% less; None: unbounded below
    change_high: float | None  # None: unbounded above
    max_loss: float
    decision: Decision
    reason: str
    trusted: bool  # both searches were
    warnings: list[str]


def compare_capacity(base: CapacityResult, cand: CapacityResult,
                     max_loss: float = 0.10) -> CapacityComparison:
    if base.unit != cand.unit:
        raise InputError(f"cannot compare a capacity in {base.unit} with one in {cand.unit}")
    b, c = base.capacity, cand.capacity
    low = c.passed / b.failed - 1 if c.passed is not None and b.failed is not None else -1.0
    high = c.failed / b.passed - 1 if c.failed is not None and b.passed else None
    if high is not None and high < -max_loss:
        decision, why = Decision.REGRESSION, "every value of the change is a loss beyond"
    elif low >= -max_loss:
        gained = low > max_loss
        decision = Decision.IMPROVEMENT if gained else Decision.NO_CHANGE
        why = "every value of the change is a gain beyond" if gained else \
            "no value of the change is a loss beyond"
    else:
        decision, why = Decision.INCONCLUSIVE, "the change straddles"
    span = f"[{low:+.1%}, {'+∞' if high is None else f'{high:+.1%}'}]"
    warnings = [f"{name} search is untrusted: {'; '.join(r.untrusted_reasons)}"
                for name, r in (("base", base), ("candidate", cand)) if not r.trusted]
    if base.workload.sha256 != cand.workload.sha256:
        warnings.append("the two searches used different workload files")
    return CapacityComparison(
        unit=base.unit, base=b, cand=c, change_low=round(low, 6),
        change_high=round(high, 6) if high is not None else None, max_loss=max_loss,
        decision=decision, reason=f"capacity change {span}: {why} the {max_loss:.0%} tolerance",
        trusted=base.trusted and cand.trusted, warnings=warnings)


def exit_code(c: CapacityComparison, inconclusive: str = "fail") -> ExitCode:
    return gate(trusted=c.trusted, failed=c.decision == Decision.REGRESSION,
                undecided=c.decision == Decision.INCONCLUSIVE, inconclusive=inconclusive)


def load_capacity(path: Path) -> CapacityResult:
    """A saved capacity.json (or its folder); InputError (exit 2) when it is not one."""
    file = path / "capacity.json" if path.is_dir() else path
    try:
        document = json.loads(file.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != "capacity":
        raise InputError(f"{file} is not a loadkit capacity.json (no \"kind\": \"capacity\")")
    try:
        return CapacityResult.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise InputError(f"{file} is not a complete capacity result: {problems}") from None


def render_markdown(c: CapacityComparison, base: str, cand: str) -> str:
    def interval(i: Interval) -> str:
        return f"[{_n(i.passed)}, {_n(i.failed)}) {c.unit}"
    lines = [f"# loadkit capacity compare — {c.decision.replace('_', ' ').upper()}", "",
             f"- base `{base}`: capacity {interval(c.base)}",
             f"- candidate `{cand}`: capacity {interval(c.cand)}",
             f"- {c.reason}", ""]
    return "\n".join(lines + [f"> ⚠️ {w}" for w in c.warnings]) + "\n"


def render_junit(c: CapacityComparison) -> str:
    suite = ET.Element("testsuite", name="loadkit.capacity.compare", tests="1",
                       failures=str(int(c.decision == Decision.REGRESSION)),
                       skipped=str(int(c.decision == Decision.INCONCLUSIVE)),
                       errors=str(int(not c.trusted)))
    case = ET.SubElement(suite, "testcase", classname="loadkit.capacity",
                         name=f"capacity lost at most {c.max_loss:.0%}")
    if not c.trusted:
        ET.SubElement(case, "error", message="; ".join(c.warnings))
    elif c.decision == Decision.REGRESSION:
        ET.SubElement(case, "failure", message=c.reason, type="Regression")
    elif c.decision == Decision.INCONCLUSIVE:
        ET.SubElement(case, "skipped", message=c.reason)
    return junit_document(suite)


def write(c: CapacityComparison, out_dir: Path, base: str, cand: str,
          reports: frozenset[str] = REPORTS) -> Path:
    """capacity-compare.json and the `reports` asked for (its .md and JUnit);
    returns the page to open."""
    return page(write_files(out_dir, {
        "json": ("capacity-compare.json", lambda: c.model_dump_json(indent=2) + "\n"),
        "md": ("capacity-compare.md", lambda: render_markdown(c, base, cand)),
        "junit": ("capacity-compare-junit.xml", lambda: render_junit(c))}, reports))


def _n(v: float | None) -> str:
    return "?" if v is None else f"{v:.4g}"
