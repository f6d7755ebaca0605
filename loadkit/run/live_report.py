"""The live report: report.html rewritten from the journal while a run goes.

`loadkit run` (with `--live-report PERIOD`) starts `loadkit report DIR --live`
as a child process: at idle priority (SCHED_IDLE on Linux, nice 19: it runs
on CPU the generator and the target leave idle, and lags rather than
competes on a saturated machine), in its own session (a Ctrl-C at the
terminal is the run's, not its), reading only its own files. So nothing of
it runs on the generator's event loop or holds the generator's GIL: the
generator's share is one fork/exec before the run's zero and one terminate
at its end.

The child reads the journal and latency.hlog incrementally every second
(loadkit.run.recover.Rebuild: only the bytes appended since), and every
PERIOD rewrites report.html, marked "in progress", atomically (a temporary
file, then rename), so a reader never sees half a page. It stops when the
run's end is journaled or run.json appears (the run then writes the final
report over it; the parent also terminates the child before writing). If
the run dies (kill -9, OOM), the child writes report.html once more, marked
"incomplete", and exits; `loadkit report DIR` then rebuilds run.json too.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loadkit.errors import InputError
from loadkit.outputs.html import render_html
from loadkit.processes import stop
from loadkit.record.journal import JOURNAL_NAME
from loadkit.run.recover import Rebuild

NICENESS = 19
POLL_S = 1.0
TMP_NAME = ".report.html.live"


@contextlib.contextmanager
def live_report(out_dir: Path, every_s: float) -> Iterator[subprocess.Popen | None]:
    """Run the live report's child while the block runs (every_s <= 0: none)."""
    if every_s <= 0:
        yield None
        return
    debug = bool(os.environ.get("LOADKIT_DEBUG"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadkit", "report", str(out_dir), "--live",
         "--every", f"{every_s:g}s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=None if debug else subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
        with contextlib.suppress(OSError):
            (out_dir / TMP_NAME).unlink(missing_ok=True)


def watch(run_dir: Path, every_s: float, echo: Callable[[str], None] = lambda _s: None,
          poll_s: float = POLL_S) -> int:
    """Rewrite run_dir/report.html every `every_s` while its run goes.

    0 when the run ended (its own report follows); 3 when its writer died
    (report.html then says "incomplete")."""
    _lowest_priority()
    state = Rebuild(run_dir)
    parent = os.getppid()
    due = time.monotonic() + every_s
    shown = 0
    while True:
        try:
            state.update()
        except InputError:
            if state.header is not None or not (run_dir / JOURNAL_NAME).exists():
                raise
        if state.header is not None and finished(run_dir, state.header):
            return 0
        if state.ended is not None:
            return 0
        if state.header is not None and not writer_alive(state.header, run_dir, parent):
            if state.intervals:
                seconds = write_report(run_dir, state, in_progress=False)
                echo(f"report: {run_dir / 'report.html'} (the run died: incomplete; "
                     f"rebuilt in {seconds:.2f} s)")
            return 3
        if time.monotonic() >= due:
            due = time.monotonic() + every_s
            if state.intervals > shown:
                shown = state.intervals
                seconds = write_report(run_dir, state, in_progress=True)
                echo(f"report: {run_dir / 'report.html'} (in progress, {shown} intervals; "
                     f"rebuilt in {seconds:.2f} s)")
        time.sleep(poll_s)


def _lowest_priority() -> None:
    """Run only on CPU the generator leaves idle: SCHED_IDLE on Linux (a
    waking normal task always preempts it), and the lowest nice value."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def write_report(run_dir: Path, state: Rebuild, in_progress: bool) -> float:
    """report.html from what was read so far, replaced whole; the seconds it took."""
    t0 = time.perf_counter()
    html = render_html(state.result(in_progress=in_progress))
    tmp = run_dir / TMP_NAME
    tmp.write_text(html, encoding="utf-8")
    if state.header is not None and finished(run_dir, state.header):
        tmp.unlink()  # the run finished meanwhile: its report stands
    else:
        os.replace(tmp, run_dir / "report.html")
    return time.perf_counter() - t0


def finished(run_dir: Path, header: dict[str, Any]) -> bool:
    """The journal's run wrote its run.json (not an earlier run's in the same folder)."""
    return run_id_of(run_dir / "run.json") == header.get("run_id")


def run_id_of(path: Path) -> str | None:
    """The run_id near the top of a run.json, without parsing all of it."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    m = re.search(rb'"run_id"\s*:\s*"([^"]+)"', head)
    return m.group(1).decode() if m else None


def writer_alive(header: dict[str, Any], run_dir: Path, parent: int | None = None) -> bool:
    """Is the process writing the journal still there? `parent`: this
    process's parent when it started (the live child's is the run)."""
    pid = header.get("pid")
    if not isinstance(pid, int):
        return True
    if pid == parent:  # started by the run: orphaned when it dies
        return os.getppid() == pid
    if header.get("host") != platform.node():
        return True  # cannot tell from here: wait for the end line
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A pid reused long after the run died: a live run appends every interval.
    try:
        quiet_s = time.time() - (run_dir / JOURNAL_NAME).stat().st_mtime
    except OSError:
        return False
    return quiet_s < max(30.0, 10 * float(header.get("interval_s") or 1.0))
