"""Fail fast: stop a run whose target refuses it (HTTP 4xx), from the start
or from a moment on (a revoked key, a spent quota).

A recorder listener: it runs at interval rotation, never per request. Over
the newest intervals that hold `requests` finished requests (or all finished
within the last `within` seconds, at low rates), when at least `share` of
them were refused it stops the run, with a reason that says when and why.
Only refusals count: 5xx, timeouts and resets are what a load test is there
to measure (a cold start, an outage), so they never stop it. Distinct from
an SLO's abort: the run is untrusted (exit 3), it measured a refusal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from loadkit.errors import ErrorKind
from loadkit.record.recorder import Interval, Recorder
from loadkit.workload.models import FailFast

REFUSED = ErrorKind.HTTP_4XX.value
MIN_REQUESTS = 10  # never judge fewer


class FailFastWatch:
    def __init__(self, spec: FailFast, recorder: Recorder, stop: Callable[[], None]) -> None:
        self.spec, self.recorder, self.stop = spec, recorder, stop
        self.window: deque[tuple[float, int, int]] = deque()  # (end_s, finished, refused)
        self.finished = self.refused = 0  # over the window
        self.refused_before = 0
        self.reason: str | None = None

    def on_interval(self, iv: Interval, *_: object) -> None:
        if self.reason is not None:
            return
        refused_total = sum(n for (kind, *_), n in self.recorder.errors.items()
                            if kind == REFUSED)
        finished, refused = iv.completed + iv.errors, refused_total - self.refused_before
        self.refused_before = refused_total
        spec, window = self.spec, self.window
        window.append((iv.end_s, finished, refused))
        self.finished += finished
        self.refused += refused
        # Keep the newest intervals that hold `requests`, none older than `within`.
        while len(window) > 1 and (iv.end_s - window[0][0] > spec.within
                                   or self.finished - window[0][1] >= spec.requests):
            _end, f, r = window.popleft()
            self.finished -= f
            self.refused -= r
        finished, refused = self.finished, self.refused
        if (finished >= spec.requests or (iv.end_s >= spec.within and finished >= MIN_REQUESTS)) \
                and refused >= spec.share * finished:
            example = (self.recorder.error_examples.get(REFUSED) or [""])[-1][:200]
            self.reason = (f"the target refuses the load: {refused:,} of the last "
                           f"{finished:,} requests got HTTP 4xx (e.g. {example!r}); stopped "
                           f"at {iv.end_s:.1f} s (client.fail_fast; --no-fail-fast runs on)")
            self.stop()
