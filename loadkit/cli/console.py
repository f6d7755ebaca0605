"""What a person sees while a run goes and when it ends.

On a terminal: a live line redrawn every interval (rich). Without one (CI):
one plain line every few seconds. At the end: the verdict table and the path
of the report.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console as RichConsole
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadkit.engine import Progress
from loadkit.outputs.format import error_summary, interval, quantity, samples, seconds
from loadkit.result.model import NOTHING_JUDGED, RunResult, Verdict

PLAIN_EVERY_S = 5.0
_STYLE = {Verdict.PASS: "bold green", Verdict.FAIL: "bold red",
          Verdict.INCONCLUSIVE: "bold yellow"}


class Console:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        # Off a terminal (CI logs) rich would wrap at 80 columns: lines stay whole.
        tty = sys.stderr.isatty()
        self.out = RichConsole(stderr=True, highlight=False, soft_wrap=not tty,
                               width=None if tty else 200)
        self.live: Live | None = None
        self._last_plain = 0.0

    def started(self, target: str, out_dir: Path, notes: list[str]) -> None:
        if self.quiet:
            return
        self.out.print(f"loadkit: target {target}, results in {out_dir}/")
        for note in notes:
            self.out.print(f"  {note}", markup=False)
        if self.out.is_terminal:
            self.live = Live(Text("starting..."), console=self.out, auto_refresh=False)
            self.live.start()

    def progress(self, p: Progress) -> None:
        if self.quiet or p.last is None:
            return
        elapsed = min(p.last.end_s, p.total_s)
        width = max(p.last.end_s - p.last.start_s, 1e-9)
        p99 = quantity(p.last.latency_p99_ms, "ms")
        line = (f"{elapsed:5.0f}/{p.total_s:.0f} s  sent {p.scheduled - p.dropped:,} "
                f"({p.scheduled / max(elapsed, 1e-9):.1f}/s intended)  "
                f"done {p.last.completed / width:.1f}/s  in flight {p.in_flight}  "
                f"errors {p.errors:,}  dropped {p.dropped:,}  p99 {p99}")
        if self.live is not None:
            self.live.update(Text(line), refresh=True)
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            print(line, file=sys.stderr, flush=True)

    def finished(self, result: RunResult, page: Path, code: int) -> None:
        """The verdict, and `page`: the file of the run a person should open."""
        if self.live is not None:
            self.live.stop()
        table = Table(title=f"SLOs of {result.workload.name}", title_justify="left")
        for col in ("SLO", "scope", "observed", "95% CI", "threshold", "samples", "verdict"):
            table.add_column(col, justify="left" if col in ("SLO", "scope") else "right")
        for s in result.slos:
            table.add_row(s.text, s.scope, quantity(s.observed, s.unit), interval(s),
                          f"{s.op} {quantity(s.threshold, s.unit)}", samples(s),
                          Text(s.verdict + (" (marginal)" if s.marginal else "")
                               + (f" ({s.reason})" if s.reason else ""),
                               style=_STYLE[s.verdict]))
        if result.slos:
            self.out.print(table)
        c = result.counts
        self.out.print(f"{c.completed:,} completed, {c.errors:,} errors, {c.dropped:,} dropped; "
                       f"lateness p99 {result.health.lateness_p99_ms:.2f} ms")
        for kind, n, example in error_summary(result.errors):
            self.out.print(Text(f"  {kind} {n:,}" + (f": {example}" if example else ""),
                                style="red"))
        for reason in result.untrusted_reasons:
            self.out.print(Text(f"UNTRUSTED: {reason}", style="bold red"))
        if a := result.aborted:
            self.out.print(Text(f"ABORTED at {seconds(a.at_s)} by {a.slo}: {a.reason}",
                                style="bold red"))
        if d := result.decided:
            self.out.print(f"ended early at {seconds(d.at_s)}: {d.reason}")
        if c.none_answered and result.verdict == Verdict.INCONCLUSIVE:
            self.out.print(Text(NOTHING_JUDGED, style=_STYLE[result.verdict]))
        # An untrusted PASS is no pass (exit 3): the line says so beside it.
        doubt = "" if result.trusted else ", untrusted"
        self.out.print(Text(f"verdict: {result.verdict.upper()}{doubt} (exit {code})",
                            style=_STYLE[result.verdict]))
        self.out.print(f"report: {page}")
