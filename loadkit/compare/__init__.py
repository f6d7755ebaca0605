"""`loadkit compare`: the regression gate of a candidate run against a baseline.

    compare_runs(base, cand, tolerances) -> Comparison   pure: the statistics
    write(comparison, base, cand, out_dir)               the one place touching disk
    exit_code(comparison, inconclusive)                  the gate's exit code

Modules: `model` (Comparison, Row, Decision: compare.json's typed model),
`stats` (the statistics, pure), `render` (compare.json, compare.md,
compare-junit.xml and the console lines), `html` (compare.html).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from loadkit.compare.html import render_compare_html
from loadkit.compare.model import Comparison, Decision, Row, RunIdentity
from loadkit.compare.render import (
    console_lines,
    render_compare_json,
    render_compare_junit,
    render_compare_markdown,
    row_line,
)
from loadkit.compare.stats import (
    ALPHA,
    COMPARED_METRICS,
    DEFAULT_ERROR_TOLERANCE_PP,
    DEFAULT_STATS,
    compare_errors,
    compare_series,
    parse_tolerances,
    scoped,
    verdict,
)
from loadkit.errors import ExitCode, InputError, gate
from loadkit.outputs.files import REPORTS, Render, earlier_result, page, write_files
from loadkit.result.model import RunResult

__all__ = ["Comparison", "Decision", "Row", "RunIdentity", "compare_runs", "console_lines",
           "exit_code", "parse_tolerances", "render_compare_html", "render_compare_json",
           "render_compare_junit", "render_compare_markdown", "row_line", "write"]


def compare_runs(base: RunResult, cand: RunResult,
                 tolerances: Mapping[str, float] | None = None,
                 stats: tuple[str, ...] = DEFAULT_STATS) -> Comparison:
    """Every series the two runs share, statistic by statistic, and the error
    rate. InputError (exit 2) for runs of no scenario in common: their
    latencies are of different requests (an embeddings run read as a chat
    run's "improvement")."""
    mine, theirs = _scenarios(base), _scenarios(cand)
    if mine and theirs and not mine & theirs:
        raise InputError("the two runs share no scenario (base: " + _names(mine)
                         + "; candidate: " + _names(theirs) + "): their latencies are of "
                         "different requests, so there is nothing to compare")
    tolerances = tolerances or {}
    hb, hc = scoped(base), scoped(cand)
    rows: list[Row] = []
    for key in sorted(hb.keys() & hc.keys(), key=lambda k: (COMPARED_METRICS.index(k[0]), k[1])):
        rows += compare_series(*key, hb[key], hc[key], stats, tolerances)
    rows.append(compare_errors(base, cand, tolerances.get("error_rate",
                                                          DEFAULT_ERROR_TOLERANCE_PP)))
    warnings = [f"{name} run is untrusted: {'; '.join(run.untrusted_reasons)}"
                for name, run in (("base", base), ("candidate", cand)) if not run.trusted]
    if base.workload.sha256 != cand.workload.sha256:
        warnings.append("the two runs used different workload files")
    only = sorted(hb.keys() ^ hc.keys())
    if only:
        warnings.append("series in one run only (not compared): "
                        + ", ".join(f"{m} [{s}]" for m, s in only))
    return Comparison(verdict=verdict(rows), alpha=ALPHA,
                      trusted=base.trusted and cand.trusted, warnings=warnings,
                      base=RunIdentity.of(base), cand=RunIdentity.of(cand), rows=rows)


def _scenarios(run: RunResult) -> set[tuple[str, str]]:
    """The run's scenarios as (name, kind), from its workload as written (an
    older run.json without it: none, and nothing is refused)."""
    return {(str(s.get("name")), str(s.get("kind")))
            for s in run.workload.spec.get("scenarios", []) if isinstance(s, dict)}


def _names(scenarios: set[tuple[str, str]]) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in sorted(scenarios))


def write(comparison: Comparison, base: RunResult, cand: RunResult, out_dir: Path,
          reports: frozenset[str] = REPORTS) -> Path:
    """compare.json and the `reports` asked for (compare.md, compare-junit.xml,
    compare.html) into `out_dir` (made if missing); returns the page to open.
    An earlier comparison's reports not written again are removed, so that
    the folder holds one comparison's. InputError (exit 2) when the folder
    cannot be written, or holds a run's or a search's data."""
    if held := earlier_result(out_dir):
        raise InputError(f"{out_dir} holds a run's or a search's data ({', '.join(held)}), "
                         "not a comparison's: give --out another folder")
    files: dict[str, tuple[str, Render]] = {
        "json": ("compare.json", lambda: render_compare_json(comparison)),
        "md": ("compare.md", lambda: render_compare_markdown(comparison)),
        "junit": ("compare-junit.xml", lambda: render_compare_junit(comparison)),
        "html": ("compare.html", lambda: render_compare_html(comparison, base, cand))}
    try:
        for kind, (name, _render) in files.items():
            if kind not in reports and kind != "json":
                (out_dir / name).unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    return page(write_files(out_dir, files, reports))


def exit_code(comparison: Comparison, inconclusive: str = "fail") -> ExitCode:
    """3 if a run was untrusted, 1 on a regression (or an inconclusive shift
    unless `inconclusive` is "pass"), else 0."""
    return gate(trusted=comparison.trusted,
                failed=comparison.verdict == Decision.REGRESSION,
                undecided=comparison.verdict == Decision.INCONCLUSIVE,
                inconclusive=inconclusive)
