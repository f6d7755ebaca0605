"""A capacity search's files, written through loadkit.outputs.files."""

from __future__ import annotations

from pathlib import Path

from loadkit.capacity.html import render_html
from loadkit.capacity.model import CapacityResult
from loadkit.capacity.report import render_junit, render_markdown
from loadkit.outputs.files import REPORTS, page, write_files


def write_all(r: CapacityResult, out_dir: Path, reports: frozenset[str] = REPORTS) -> Path:
    """capacity.json and the `reports` asked for (capacity.md,
    capacity-junit.xml, capacity.html) into `out_dir`; returns the page to open."""
    return page(write_files(out_dir, {
        "json": ("capacity.json", r.to_json),
        "md": ("capacity.md", lambda: render_markdown(r)),
        "junit": ("capacity-junit.xml", lambda: render_junit(r)),
        "html": ("capacity.html", lambda: render_html(r))}, reports))
