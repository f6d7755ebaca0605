"""`loadkit report RUN_DIR`: rewrite a run's reports from its saved run.json.

report.html, summary.md and junit.xml are regenerated (run.json is written
back unchanged); rendering is deterministic, so an unchanged run.json gives
byte-identical files. $GITHUB_STEP_SUMMARY is left alone: the run already
appended its summary there.
"""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.errors import InputError
from loadkit.report import write_all
from loadkit.result import load_run


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> int:
    """Regenerate report.html, summary.md and junit.xml in RUN_DIR from its run.json."""
    result = load_run(run_dir)
    try:
        write_all(result, run_dir if run_dir.is_dir() else run_dir.parent)
    except OSError as exc:
        raise InputError(f"cannot write the reports in {run_dir}: "
                         f"{exc.strerror or exc}") from None
    click.echo(f"report: {run_dir / 'report.html'}")
    return 0
