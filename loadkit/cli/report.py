"""`loadkit report RUN_DIR`: rewrite a run's reports from its saved run.json.

report.html, summary.md and junit.xml are regenerated (run.json is written
back unchanged); rendering is deterministic, so an unchanged run.json gives
byte-identical files. $GITHUB_STEP_SUMMARY is left alone: the run already
appended its summary there.

A folder without run.json (or with a truncated one) whose run left a
journal (kill -9, the OOM killer, a power cut) is rebuilt from journal.jsonl
and latency.hlog (loadkit/run/recover.py): run.json and every report,
marked incomplete, exit 3. `--live` rewrites report.html while the run goes
(loadkit/run/live_report.py; `loadkit run --live-report` starts it).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console as RichConsole
from rich.progress import Progress

from loadkit.cli.console import Console
from loadkit.cli.params import duration
from loadkit.errors import ExitCode
from loadkit.outputs import run_page, write_all
from loadkit.record.journal import JOURNAL_NAME, read_journal
from loadkit.result import load_run
from loadkit.run.live_report import watch, write_report, writer_alive
from loadkit.run.recover import Rebuild, has_journal


def _needs_rebuild(run_dir: Path) -> bool:
    """No usable run.json of the journal's run: it died before writing it."""
    if not run_dir.is_dir() or not has_journal(run_dir):
        return False
    try:
        document = json.loads((run_dir / "run.json").read_bytes())
    except FileNotFoundError:
        return True
    except (UnicodeDecodeError, ValueError):
        return True  # cut off mid-write: the journal knows more
    records, _ = read_journal(run_dir / JOURNAL_NAME, limit=1)
    # A run.json left by an earlier run in the same folder is not this run's.
    return bool(records) and isinstance(document, dict) \
        and document.get("run_id") != records[0].get("run_id")


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--live", is_flag=True,
              help="While the run writing RUN_DIR goes: rewrite its report.html from the "
                   "journal every --every, marked in progress; ends with the run.")
@click.option("--every", default="60s", show_default=True, callback=duration(),
              help="How often --live rewrites report.html.")
def report_command(run_dir: Path, live: bool, every: float) -> int:
    """Regenerate report.html, summary.md and junit.xml in RUN_DIR from its run.json.

    A folder left by a run that died (no run.json) is rebuilt from its journal
    and latency.hlog, run.json included, marked incomplete: exit 3."""
    if live:
        return watch(run_dir, every, echo=lambda text: click.echo(text, err=True))
    if _needs_rebuild(run_dir):
        return _rebuilt(run_dir)
    result = load_run(run_dir)
    folder = run_dir if run_dir.is_dir() else run_dir.parent  # RUN_DIR/run.json is taken too
    write_all(result, folder)
    click.echo(f"report: {run_page(folder)}")
    return ExitCode.UNTRUSTED if result.incomplete else 0


PROGRESS_FROM = 32 * 2**20  # a journal this long (~8 h at 1-s intervals) shows a progress bar


def _rebuilt(run_dir: Path) -> int:
    state = Rebuild(run_dir)
    size = (run_dir / JOURNAL_NAME).stat().st_size
    if size < PROGRESS_FROM:
        state.update()
    else:
        # rich, as the run's own progress: on stderr, gone once done.
        with Progress(console=RichConsole(stderr=True), transient=True) as bar:
            task = bar.add_task(f"rebuilding from {JOURNAL_NAME}", total=size)
            state.update(progress=lambda done: bar.update(task, completed=done))
    if state.header is not None and state.ended is None \
            and writer_alive(state.header, run_dir):
        # Still going (a person asking mid-run): the page only; the run writes the rest.
        write_report(run_dir, state, in_progress=True)
        click.echo(f"report: {run_dir / 'report.html'} (in progress: the run writing this "
                   f"folder is still going, pid {state.header.get('pid')}; its results follow "
                   "at its end)", err=True)
        return 0
    result = state.result()
    write_all(result, run_dir)
    Console().finished(result, run_page(run_dir), ExitCode.UNTRUSTED)
    return ExitCode.UNTRUSTED
