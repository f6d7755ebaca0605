"""A run's per-interval time series, bounded for run.json.

A day at 1-s intervals is 86,400 intervals: run.json keeps at most
TIMESERIES_POINTS points, each merging k consecutive intervals (k the
smallest that fits), so its size does not grow with the run's length. The
full detail stays in journal.jsonl and latency.hlog. While the run goes the
recorder holds them in an `IntervalSeries`: at most 2·TIMESERIES_POINTS
points, adjacent pairs merged whenever it fills (memory flat over days). A merged point keeps
what a reader needs to see a spike: counts are summed, the worst interval's
p99, max and lateness are kept (`latency_p99_low_ms` the best interval's
p99: the envelope), and the other figures are averaged (weighted by the
requests, or the time, they cover). A run shorter than TIMESERIES_POINTS
intervals keeps every one as it is.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from loadkit.result.model import Interval

TIMESERIES_POINTS = 1440  # a day at one point a minute


def merge_factor(n: int, limit: int = TIMESERIES_POINTS) -> int:
    """Intervals per point for n intervals in at most `limit` points."""
    return max(1, math.ceil(n / limit))


def bounded(intervals: Iterable[Interval], limit: int = TIMESERIES_POINTS) -> list[Interval]:
    """The series in at most `limit` points (the intervals themselves when they fit)."""
    points = list(intervals)
    k = merge_factor(len(points), limit)
    if k == 1:
        return points
    return [merged(points[i:i + k]) for i in range(0, len(points), k)]


def merged(group: Sequence[Interval]) -> Interval:
    """One point for consecutive intervals."""
    first, last = group[0], group[-1]
    done = [iv.completed for iv in group]
    seconds = [max(iv.end_s - iv.start_s, 0.0) for iv in group]
    tenants: dict[str, float] = {}
    for iv in group:
        for name, v in iv.tenant_latency_p99_ms.items():
            tenants[name] = max(v, tenants.get(name, v))
    reasons: Counter = Counter()
    for iv in group:
        reasons.update(iv.finish_reasons)
    return Interval(
        start_s=first.start_s, end_s=last.end_s, completed=sum(done),
        errors=sum(iv.errors for iv in group),
        abandoned=sum(iv.abandoned for iv in group),
        output_tokens=sum(iv.output_tokens for iv in group),
        latency_p50_ms=_mean(group, lambda iv: iv.latency_p50_ms, done),
        latency_p99_ms=_extreme(group, lambda iv: iv.latency_p99_ms),
        latency_max_ms=_extreme(group, lambda iv: iv.latency_max_ms),
        cpu_percent=_mean(group, lambda iv: iv.cpu_percent, seconds),
        steal_percent=_mean(group, lambda iv: iv.steal_percent, seconds),
        lateness_p99_ms=_extreme(group, lambda iv: iv.lateness_p99_ms),
        tenant_latency_p99_ms=tenants,
        cached_share=_mean(group, lambda iv: iv.cached_share, done),
        prompt_drift=_mean(group, lambda iv: iv.prompt_drift, done),
        service_mean_ms=_mean(group, lambda iv: iv.service_mean_ms, done),
        finish_reasons=dict(sorted(reasons.items())),
        intervals=sum(iv.intervals for iv in group),
        # A point's own best p99: latency_p99_low_ms once merged, else its p99.
        latency_p99_low_ms=_extreme(group, lambda iv: iv.latency_p99_low_ms
                                    if iv.latency_p99_low_ms is not None
                                    else iv.latency_p99_ms, lowest=True))


def _extreme(group: Sequence[Interval], get: Callable[[Interval], float | None],
             lowest: bool = False) -> float | None:
    values = [v for iv in group if (v := get(iv)) is not None]
    return (min if lowest else max)(values) if values else None


def _mean(group: Sequence[Interval], get: Callable[[Interval], float | None],
          weights: Sequence[float]) -> float | None:
    """The weighted mean of the figures present (plain, where no weight is)."""
    pairs = [(v, w) for iv, w in zip(group, weights, strict=True) if (v := get(iv)) is not None]
    if not pairs:
        return None
    total = sum(w for _v, w in pairs)
    if total <= 0:
        return round(sum(v for v, _w in pairs) / len(pairs), 4)
    return round(sum(v * w for v, w in pairs) / total, 4)


class IntervalSeries:
    """The intervals of a run as they close, in at most 2·limit points: when
    full, adjacent points merge and each point covers twice the intervals.
    An interval is merged only once the next one arrives: the run's handlers
    fill in its last figures (the generator's CPU) after it is appended."""

    def __init__(self, limit: int = TIMESERIES_POINTS) -> None:
        self.limit = limit
        self.size = 1  # intervals per closed point
        self.count = 0  # intervals appended
        self._points: list[Interval] = []
        self._open: list[Interval] = []  # the point being filled
        self._pending: Interval | None = None

    def append(self, iv: Interval) -> None:
        self.count += 1
        if self._pending is not None:
            self._close(self._pending)
        self._pending = iv

    def _close(self, iv: Interval) -> None:
        self._open.append(iv)
        if len(self._open) < self.size:
            return
        self._points.append(self._open[0] if self.size == 1 else merged(self._open))
        self._open = []
        if len(self._points) >= 2 * self.limit:
            self._points = [merged(self._points[i:i + 2])
                            for i in range(0, len(self._points), 2)]
            self.size *= 2

    def points(self) -> list[Interval]:
        tail = self._open + ([self._pending] if self._pending is not None else [])
        return self._points + ([merged(tail)] if len(tail) > 1 else tail)

    def __len__(self) -> int:
        return len(self._points) + bool(self._open or self._pending is not None)

    def __iter__(self) -> Iterator[Interval]:
        return iter(self.points())

    def __getitem__(self, index: int) -> Interval:
        return self.points()[index]
