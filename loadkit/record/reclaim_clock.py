"""How long the server takes to stop working for a client that left.

A server that honours a disconnect aborts the request and counts it in an
abort counter (vLLM's `vllm:request_success_total{finished_reason="abort"}`,
SGLang's `sglang:num_aborted_requests_total`). Matching the clients'
departures, oldest first, with that counter's steps, scrape by scrape, gives
each departure a reclaim time: from the instant the client closed to the
scrape that first counted its abort. It is an upper bound by at most one
scrape interval (the abort happened between two scrapes), so scrape the
server often when this matters (`telemetry.prometheus[].interval`).

Memory stays flat: only departures not yet matched are kept, and one not
matched within HORIZON (a server that never aborts it: a zombie) leaves the
queue as a sample of HORIZON, slower than any sensible threshold. At the
run's end, departures still waiting count at their age then (a lower bound)
if they have had time to be seen, else as unobserved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Scope = tuple[str, str, str]  # phase, scenario, tenant
# (metric, labels its series must carry): the counters of aborted requests.
ABORT_COUNTERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("vllm:request_success_total", {"finished_reason": "abort"}),
    ("sglang:num_aborted_requests_total", {}))
HORIZON_NS = 60 * 1_000_000_000


class ReclaimClock:
    """Departures waiting for their abort; `sample(scope, ns)` takes each
    reclaim time as it becomes known (on the recorder's thread)."""

    def __init__(self, sample: Callable[[Scope, int], None], horizon_ns: int = HORIZON_NS) -> None:
        self._sample = sample
        self.horizon_ns = horizon_ns
        self.waiting: deque[tuple[int, Scope]] = deque()
        self.counters: dict[str, float] = {}  # counter series -> last value seen
        self.reclaimed = 0  # departures matched with an abort
        self.unreclaimed = 0  # not aborted within the horizon, or by the run's end
        self.unobserved = 0  # at the run's end, too recent to tell
        self.observed_ns: int | None = None  # the last scrape seen
        self.counter: str | None = None  # the abort counter, once a scrape has it
        self.unmeasured = ("the server exports no aborted-request counter ("
                           + ", ".join(name for name, _ in ABORT_COUNTERS)
                           + ") on a scraped /metrics")  # why not, while counter is None

    def left(self, t_ns: int, scope: Scope) -> None:
        """A client closed at `t_ns` (monotonic)."""
        self.waiting.append((t_ns, scope))
        if self.counter is None:  # none scraped (yet): keep the horizon's worth only
            while t_ns - self.waiting[0][0] >= self.horizon_ns:
                self.waiting.popleft()

    def counted(self, series: str, t_ns: int, value: float) -> None:
        """One scrape of an abort counter: its steps since the last scrape of
        the same series match that many departures that came before `t_ns`.
        The first scrape of a series is its baseline; a reset restarts it."""
        last = self.counters.get(series)
        self.counters[series] = value
        self.observed_ns = t_ns if self.observed_ns is None else max(self.observed_ns, t_ns)
        if last is None:
            return
        steps = int(round(value - last if value >= last else value))
        while steps > 0 and self.waiting and self.waiting[0][0] <= t_ns:
            left, scope = self.waiting.popleft()
            self._sample(scope, t_ns - left)
            self.reclaimed += 1
            steps -= 1
        self._expire(t_ns)

    def end(self, grace_ns: int) -> None:
        """The run is over: departures older than `grace_ns` at the last
        scrape count at their age (never reclaimed while it ran); younger
        ones are unobserved."""
        now = self.observed_ns
        while self.waiting:
            left, scope = self.waiting.popleft()
            if now is not None and now - left >= grace_ns:
                self._sample(scope, now - left)
                self.unreclaimed += 1
            else:
                self.unobserved += 1

    def _expire(self, now_ns: int) -> None:
        while self.waiting and now_ns - self.waiting[0][0] >= self.horizon_ns:
            _, scope = self.waiting.popleft()
            self._sample(scope, self.horizon_ns)
            self.unreclaimed += 1
