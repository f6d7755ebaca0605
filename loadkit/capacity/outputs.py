"""A capacity search's files: the one place its outputs touch the disk."""

from __future__ import annotations

from pathlib import Path

from loadkit.capacity.html import render_html
from loadkit.capacity.model import CapacityResult
from loadkit.capacity.report import render_junit, render_markdown
from loadkit.errors import InputError


def write_all(r: CapacityResult, out_dir: Path, html: bool = True) -> Path:
    """capacity.json, capacity.md, capacity-junit.xml and (html) capacity.html
    into `out_dir`; returns the page's path (capacity.md's without html)."""
    files = {"capacity.json": r.to_json(), "capacity.md": render_markdown(r),
             "capacity-junit.xml": render_junit(r)}
    if html:
        files["capacity.html"] = render_html(r)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out_dir / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    return out_dir / ("capacity.html" if html else "capacity.md")
