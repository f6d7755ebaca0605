"""Renderers: a RunResult -> json | junit | markdown | html text.

Pure functions; `write_all` is the one place that touches the disk.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from loadkit.outputs.html import render_html
from loadkit.outputs.junit import render_junit
from loadkit.outputs.markdown import render_markdown
from loadkit.result.model import RunResult


def render_json(result: RunResult) -> str:
    return result.to_json()


# The reports a run may write beside run.json (always written: the result
# itself, which `loadkit report` renders the others from later).
REPORTS = frozenset({"md", "junit", "html"})


def parse_outputs(text: str) -> frozenset[str]:
    """`--outputs md,junit` -> the reports named (`json` may be named: it is
    always written); ValueError naming what is unknown."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    if unknown := names - REPORTS - {"json"}:
        raise ValueError(f"unknown output(s) {', '.join(sorted(unknown))}: choose from json, "
                         f"{', '.join(sorted(REPORTS))}")
    return frozenset(names & REPORTS)


def write_all(result: RunResult, out_dir: Path, step_summary: str | None = None,
              reports: frozenset[str] = REPORTS) -> None:
    """run.json and the `reports` asked for (summary.md, junit.xml,
    report.html); the Markdown is also appended to `step_summary` (GitHub
    Actions' $GITHUB_STEP_SUMMARY) when given and asked for. Leaving out
    report.html saves its charts (~1 s); `loadkit report` renders it later."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(render_json(result), encoding="utf-8")
    if "md" in reports:
        markdown = render_markdown(result)
        (out_dir / "summary.md").write_text(markdown, encoding="utf-8")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(markdown + "\n")
    if "junit" in reports:
        (out_dir / "junit.xml").write_text(render_junit(result), encoding="utf-8")
    if "html" in reports:
        (out_dir / "report.html").write_text(render_html(result), encoding="utf-8")
    if result.telemetry and result.telemetry.per_interval:
        (out_dir / "telemetry.csv").write_text(render_telemetry_csv(result), encoding="utf-8")


def render_telemetry_csv(result: RunResult) -> str:
    """One row per interval: the run's latency figures and telemetry joined."""
    rows = result.telemetry.per_interval if result.telemetry else []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


__all__ = ["REPORTS", "parse_outputs", "render_html", "render_json", "render_junit", "render_markdown",
           "render_telemetry_csv", "write_all"]
