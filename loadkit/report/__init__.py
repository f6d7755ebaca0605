"""Renderers: the run.json document -> json | junit | markdown | html text.

Pure functions; `write_all` is the one place that touches the disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from loadkit.report.html import render_html
from loadkit.report.junit import render_junit
from loadkit.report.markdown import render_markdown


def render_json(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_all(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(render_json(result), encoding="utf-8")
    (out_dir / "summary.md").write_text(render_markdown(result), encoding="utf-8")
    (out_dir / "junit.xml").write_text(render_junit(result), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(result), encoding="utf-8")


__all__ = ["render_html", "render_json", "render_junit", "render_markdown", "write_all"]
