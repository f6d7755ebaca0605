"""`loadkit report RUN_DIR`: rewrite a run's reports from its saved run.json.

report.html, summary.md and junit.xml are regenerated (run.json is written
back unchanged); rendering is deterministic, so an unchanged run.json gives
byte-identical files. $GITHUB_STEP_SUMMARY is left alone: the run already
appended its summary there.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from loadkit.errors import InputError
from loadkit.report import write_all
from loadkit.result import SCHEMA_VERSION


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> int:
    """Regenerate report.html, summary.md and junit.xml in RUN_DIR from its run.json."""
    result = load_run(run_dir)
    try:
        write_all(result, run_dir)
    except OSError as exc:
        raise InputError(f"cannot write the reports in {run_dir}: "
                         f"{exc.strerror or exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{run_dir / 'run.json'} is not a complete loadkit run "
                         f"({type(exc).__name__}: {exc})") from None
    click.echo(f"report: {run_dir / 'report.html'}")
    return 0


def load_run(run_dir: Path) -> dict:
    """run.json of a run folder (or the file itself), checked to be a loadkit run."""
    path = run_dir if run_dir.is_file() else run_dir / "run.json"
    if not run_dir.exists():
        raise InputError(f"{run_dir}: no such folder")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{run_dir}: no run.json here (is it a loadkit output folder?)") \
            from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(result, dict) or "schema_version" not in result:
        raise InputError(f"{path} is not a loadkit run.json (no schema_version)")
    if result["schema_version"] != SCHEMA_VERSION:
        raise InputError(f"{path} has schema_version {result['schema_version']!r}; this "
                         f"loadkit reads version {SCHEMA_VERSION}")
    return result
