"""The recorder on its own thread: nothing periodic on the loop that releases requests.

The event loop only appends to a deque: a finished request, a dropped
arrival, an interval mark (the time to rotate at). A thread takes them in
order and does the rest: histogram recording, interval rotation, the hlog
write, and every rotation listener (live SLO windows, fail-fast, the journal,
the metrics exporter, the console). On the loop, a rotation (hlog encoding,
merges, listeners) stalled the releases of requests for milliseconds
(docs/design.md has the figure), and every request's samples were recorded
on it too.

All recorder state is written on that thread only, so listeners read it
without locks. Anything they hand back to the loop goes through
`call_soon_threadsafe` (Engine.halt_threadsafe). The loop gets the GIL back
within the interpreter's switch interval, which the run shortens
(`responsive_gil`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator

from loadkit.record.recorder import Recorder, RequestRecord

__all__ = ["RecorderThread", "responsive_gil"]

POLL_S = 0.002  # how often the thread looks for work: requests wait at most this long
CUT = "cut"  # a session_cut item's mark (the one object, compared by identity)


class RecorderThread:
    """`record`, `drop` and `rotate` as the engine calls them, done on a thread."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.start_ns = recorder.start_ns
        self._items: deque[RequestRecord | tuple[str, ...] | int] = deque()
        self._closing = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="loadkit-recorder",
                                        daemon=True)

    # The event loop's side: one append each.
    def record(self, r: RequestRecord) -> None:
        self._items.append(r)

    def drop(self, phase: str, scenario: str, tenant: str) -> None:
        self._items.append((phase, scenario, tenant))

    def session_cut(self, phase: str, scenario: str, tenant: str) -> None:
        self._items.append((CUT, phase, scenario, tenant))

    def rotate(self, now_ns: int) -> None:
        self._items.append(now_ns)

    def __enter__(self) -> RecorderThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Record what is queued, then stop; a listener's error surfaces here."""
        self._closing.set()
        self._thread.join()
        if self._failure is not None and exc[0] is None:
            raise self._failure

    def _work(self) -> None:
        items, rec = self._items, self.recorder
        # A rotation takes ~4 ms of this thread's time. Between its steps it
        # gives up the core and the GIL: on one core the loop, woken for a
        # slot, otherwise waited for the scheduler, up to ~3 ms.
        rec.pause = _yield
        while True:
            closing = self._closing.wait(POLL_S)
            while items:
                item = items.popleft()
                try:
                    if isinstance(item, RequestRecord):
                        rec.record(item)
                    elif isinstance(item, int):
                        rec.rotate(item)
                    elif item[0] is CUT:
                        rec.session_cut(*item[1:])
                    else:
                        rec.drop(*item)
                except Exception as exc:  # noqa: BLE001 - kept and raised on the loop's side
                    self._failure = self._failure or exc
            if closing:
                return


def _yield() -> None:
    """Give the core, and the GIL, to whoever waits (Unix; elsewhere nothing)."""
    if hasattr(os, "sched_yield"):
        os.sched_yield()  # releases the GIL around the call


@contextlib.contextmanager
def responsive_gil(seconds: float = 0.0005) -> Iterator[None]:
    """A thread holding the GIL keeps it up to the switch interval (5 ms by
    default) when another wants it: the loop would wait that long behind the
    recorder thread. Shortened for the run, restored after."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
