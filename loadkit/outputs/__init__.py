"""Renderers: a RunResult -> json | junit | markdown | html text.

Pure functions; `write_all` writes them, through outputs/files.py (the one
place any result's files touch the disk).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from loadkit.outputs.files import REPORTS, page, parse_outputs, write_files
from loadkit.outputs.html import render_html
from loadkit.outputs.junit import render_junit
from loadkit.outputs.markdown import render_markdown
from loadkit.result.model import RunResult


def render_json(result: RunResult) -> str:
    return result.to_json()


RUN_FILES = {"json": "run.json", "md": "summary.md", "junit": "junit.xml",
             "html": "report.html"}


def run_page(out_dir: Path, reports: frozenset[str] = REPORTS) -> Path:
    """The file of a run's folder a person should open, of those written."""
    return page({kind: out_dir / RUN_FILES[kind] for kind in reports | {"json"}})


def write_all(result: RunResult, out_dir: Path, step_summary: str | None = None,
              reports: frozenset[str] = REPORTS) -> None:
    """run.json and the `reports` asked for (summary.md, junit.xml,
    report.html); the Markdown is also appended to `step_summary` (GitHub
    Actions' $GITHUB_STEP_SUMMARY) when given and asked for. Leaving out
    report.html saves its charts (~1 s); `loadkit report` renders it later."""
    files = {"json": (RUN_FILES["json"], lambda: render_json(result)),
             "md": (RUN_FILES["md"], lambda: render_markdown(result)),
             "junit": (RUN_FILES["junit"], lambda: render_junit(result)),
             "html": (RUN_FILES["html"], lambda: render_html(result))}
    if result.telemetry and result.telemetry.per_interval:
        files["csv"] = ("telemetry.csv", lambda: render_telemetry_csv(result))
    written = write_files(out_dir, files, reports)
    if step_summary and "md" in written:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(written["md"].read_text(encoding="utf-8") + "\n")


def render_telemetry_csv(result: RunResult) -> str:
    """One row per point of the time series: the run's latency figures and
    telemetry joined."""
    rows = result.telemetry.per_interval if result.telemetry else []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


__all__ = ["REPORTS", "RUN_FILES", "page", "parse_outputs", "render_html", "render_json",
           "render_junit", "render_markdown", "render_telemetry_csv", "run_page", "write_all"]
