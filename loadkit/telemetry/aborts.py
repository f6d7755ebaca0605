"""Feed the server's abort counter, as scraped, to the reclaim clock.

The Prometheus pollers append each scrape to their stores on their own
threads; this reads the abort counter's new points from there (a listener of
`interval_closed`, on the recorder's thread) and hands them to the
:class:`~loadkit.record.reclaim_clock.ReclaimClock`. Points younger than
LAG are left for the next interval: a client that left just before a scrape
may not have reached the recorder yet, and its abort must not find the queue
empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from loadkit.record.reclaim_clock import ABORT_COUNTERS, ReclaimClock
from loadkit.telemetry.store import Source

LAG_NS = 250_000_000


class AbortFeed:
    """The abort counters of `sources` into `clock`, a few points at a time."""

    def __init__(self, sources: Iterable[Source], clock: ReclaimClock) -> None:
        self.sources = [s for s in sources if s.kind == "prometheus"]
        self.clock = clock
        self._read: dict[str, int] = {}  # series key -> points fed

    def __call__(self, *_: object) -> None:
        """Feed what is older than LAG (an `interval_closed` listener)."""
        self.feed(time.monotonic_ns() - LAG_NS)

    def feed(self, until_ns: int | None = None) -> None:
        """Feed the points scraped up to `until_ns` (None: all, the run is over)."""
        for source in self.sources:
            for key, s in list(source.store.series.items()):
                name = s["metric"].rsplit(".", 1)[-1]  # without a source's prefix
                if s.get("kind") != "counter" or not _is_abort(name, s["labels"]):
                    continue
                self.clock.counter = self.clock.counter or name
                t, v = s["t"], s["v"]
                n, i = min(len(t), len(v)), self._read.get(key, 0)
                while i < n and (until_ns is None or t[i] * 1e9 <= until_ns):
                    self.clock.counted(key, int(t[i] * 1e9), v[i])
                    i += 1
                self._read[key] = i


    def end(self) -> None:
        """The run is over and the last scrape fed: a departure older than
        three scrape intervals (at least 1 s) had time to be counted."""
        grace = max([1.0, *(3 * s.interval for s in self.sources)])
        self.clock.end(int(grace * 1e9))


def _is_abort(metric: str, labels: dict[str, str]) -> bool:
    return any(metric == name and all(labels.get(k) == want for k, want in need.items())
               for name, need in ABORT_COUNTERS)
