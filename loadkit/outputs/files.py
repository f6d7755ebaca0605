"""Where every result's files touch the disk: a run's, a comparison's, a
capacity search's. Each names its files by kind (`json`, `md`, `junit`,
`html`, `csv`); the data (JSON, CSV) is always written (the reports are
rendered from it, then or later), the reports as `--outputs` asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from loadkit.errors import InputError
from loadkit.record.journal import HLOG_NAME, JOURNAL_NAME

# The reports a result may have beside its data, as `--outputs` names them.
REPORTS = frozenset({"md", "junit", "html"})
DATA = frozenset({"json", "csv"})  # always written

Render = Callable[[], str]

# A folder holding any of these holds an earlier result: a run's data, a
# capacity search's (its probes' folders too, should it have been cut short).
RESULT_DATA = frozenset({"run.json", JOURNAL_NAME, HLOG_NAME, "capacity.json"})


def earlier_result(folder: Path) -> list[str]:
    """The files of an earlier result in `folder` (none: a new folder, or one
    without): a run there would overwrite its measurements and leave its
    reports beside the new ones (a stale junit.xml read as the new run's)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name in RESULT_DATA or p.name.startswith("probe-")) \
        if folder.is_dir() else []


def parse_outputs(text: str) -> frozenset[str]:
    """`--outputs md,junit` -> the reports named (`json` may be named: it is
    always written); ValueError naming what is unknown."""
    names = {n.strip() for n in text.split(",") if n.strip()}
    if unknown := names - REPORTS - {"json"}:
        raise ValueError(f"unknown output(s) {', '.join(sorted(unknown))}: choose from json, "
                         f"{', '.join(sorted(REPORTS))}")
    return frozenset(names & REPORTS)


def write_files(out_dir: Path, files: Mapping[str, tuple[str, Render]],
                reports: frozenset[str] = REPORTS) -> dict[str, Path]:
    """Render and write `files` ({kind: (file name, render)}): the data and
    the reports of the kinds in `reports`; their paths by kind. InputError
    (exit 2) when the folder cannot be written."""
    written = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for kind, (name, render) in files.items():
            if kind in DATA or kind in reports:
                (out_dir / name).write_text(render(), encoding="utf-8")
                written[kind] = out_dir / name
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    return written


def page(written: Mapping[str, Path]) -> Path:
    """The file a person should open: the HTML, else the Markdown, else the JSON."""
    return next(written[k] for k in ("html", "md", "json") if k in written)
