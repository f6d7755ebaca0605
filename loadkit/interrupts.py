"""Ctrl-C and SIGTERM during `loadkit run` (the CLI's only: RunOptions.handle_signals).

The first stops the run cleanly: the schedule ends, what was measured is
judged and written (run.json says "interrupted", exit 3). A second one
exits at once with 130 (128 + SIGINT, the shell's convention for "killed by
Ctrl-C"): nothing more is written, and the folder holds the journal and
latency.hlog, flushed every interval, from which `loadkit report DIR`
rebuilds the results (marked incomplete, exit 3).

Python-level handlers (signal.signal), installed for the whole run and its
reporting: the first signal reaches the event loop through
call_soon_threadsafe, so it is safe wherever it lands; the second needs no
event loop at all, so it works while the results are being computed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_AT_ONCE = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Installed by `with Interrupts():`; the run `attach`es its stop."""

    def __init__(self, out_dir: str = "") -> None:
        self.count = 0
        self.out_dir = out_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def __exit__(self, *_: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def attach(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
        """The run's event loop is running; `stop` ends its schedule cleanly."""
        self._loop, self._stop = loop, stop
        if self.count:  # a signal came while the run was being set up
            loop.call_soon(stop)

    def detach(self) -> None:
        self._loop = self._stop = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            where = f" {self.out_dir}" if self.out_dir else " DIR"
            _say(f"loadkit: interrupted again: exiting now (exit {EXIT_AT_ONCE}); "
                 f"`loadkit report{where}` rebuilds the results from the journal")
            os._exit(EXIT_AT_ONCE)
        _say(f"loadkit: {signal.Signals(signum).name}: stopping the run and writing what was "
             "measured (again to exit at once)")
        if self._loop is not None and self._stop is not None:
            # RuntimeError: the loop closed meanwhile; the run is over anyway.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())
