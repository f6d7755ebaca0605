"""run.json's time series stays bounded however long the run
(loadkit.record.intervals): a short run keeps every interval, a long one
merges consecutive intervals into at most TIMESERIES_POINTS points that keep
the counts, the worst p99 (a 1-s spike stays visible) and the best."""

from __future__ import annotations

import pytest

from loadkit.record.intervals import (
    TIMESERIES_POINTS,
    IntervalSeries,
    bounded,
    merge_factor,
    merged,
)
from loadkit.result.model import Interval


def interval(i: int, p99: float = 100.0, completed: int = 10) -> Interval:
    return Interval(start_s=float(i), end_s=float(i + 1), completed=completed, errors=i % 2,
                    output_tokens=5 * completed, latency_p50_ms=p99 / 4, latency_p99_ms=p99,
                    latency_max_ms=p99 * 2, cpu_percent=20.0, lateness_p99_ms=0.5,
                    tenant_latency_p99_ms={"a": p99}, finish_reasons={"stop": completed},
                    cached_share=0.5)


def test_a_short_run_keeps_every_interval() -> None:
    ivs = [interval(i) for i in range(TIMESERIES_POINTS)]
    assert bounded(ivs) == ivs
    assert merge_factor(TIMESERIES_POINTS + 1) == 2


# an hour, a day, three days
@pytest.mark.parametrize("n", [3_600, 86_400, pytest.param(259_200, marks=pytest.mark.slow)])
def test_a_long_run_fits_and_keeps_its_totals_and_its_spike(n: int) -> None:
    ivs = [interval(i, p99=100.0 + i % 7) for i in range(n)]
    ivs[n // 3] = interval(n // 3, p99=7_654.0)
    points = bounded(ivs)
    assert TIMESERIES_POINTS // 2 < len(points) <= TIMESERIES_POINTS
    assert sum(p.intervals for p in points) == n
    assert sum(p.completed for p in points) == sum(iv.completed for iv in ivs)
    assert sum(p.errors for p in points) == sum(iv.errors for iv in ivs)
    assert sum(p.finish_reasons["stop"] for p in points) == 10 * n
    assert max(p.latency_p99_ms or 0 for p in points) == 7_654.0
    assert max(p.latency_max_ms or 0 for p in points) == 2 * 7_654.0
    assert max(p.tenant_latency_p99_ms["a"] for p in points) == 7_654.0
    assert min(p.latency_p99_low_ms or 1e9 for p in points) == 100.0
    assert points[0].start_s == 0 and points[-1].end_s == n
    assert all(a.end_s == b.start_s for a, b in zip(points, points[1:]))
    # Merging again (a rebuilt run, a merged run.json) gives the same envelope.
    again = bounded(points, TIMESERIES_POINTS // 4)
    assert sum(p.intervals for p in again) == n
    assert min(p.latency_p99_low_ms or 1e9 for p in again) == 100.0


def test_a_merged_point_weighs_its_means_by_requests() -> None:
    quiet, busy = interval(0, p99=100.0, completed=1), interval(1, p99=300.0, completed=9)
    quiet.cached_share, busy.cached_share = 0.0, 1.0
    busy.cpu_percent = 40.0
    point = merged([quiet, busy])
    assert point.latency_p50_ms == pytest.approx((25.0 * 1 + 75.0 * 9) / 10)
    assert point.cached_share == pytest.approx(0.9)
    assert point.cpu_percent == pytest.approx(30.0)  # by time: both 1 s
    assert point.latency_p99_ms == 300.0 and point.latency_p99_low_ms == 100.0
    nothing = merged([Interval(start_s=0.0, end_s=1.0), Interval(start_s=1.0, end_s=2.0)])
    assert nothing.latency_p99_ms is None and nothing.latency_p99_low_ms is None
    assert nothing.intervals == 2


@pytest.mark.slow
def test_the_recorders_series_stays_flat_and_keeps_late_figures() -> None:
    """Three days of 1-s intervals in at most 2 x TIMESERIES_POINTS points;
    a figure the run's handlers fill in after the append (the generator's
    CPU) is in the merged points."""
    series = IntervalSeries()
    peak, n = 0, 3 * 86_400
    for i in range(n):
        iv = interval(i, p99=7_654.0 if i == 200_000 else 100.0)
        iv.cpu_percent = None
        series.append(iv)
        iv.cpu_percent = 50.0  # as HealthProbe.mark does, after the append
        peak = max(peak, len(series._points))
        assert len(series._open) < series.size  # the point being filled
    assert peak < 2 * TIMESERIES_POINTS
    assert series.count == n and len(series) == len(series.points())
    points = bounded(series)
    assert len(points) <= TIMESERIES_POINTS and sum(p.intervals for p in points) == n
    assert sum(p.completed for p in points) == 10 * n
    assert all(p.cpu_percent == 50.0 for p in points)
    assert max(p.latency_p99_ms or 0 for p in points) == 7_654.0
    assert series[-1].end_s == n
    short = IntervalSeries()
    for i in range(3):
        short.append(interval(i))
    assert [p.start_s for p in short] == [0.0, 1.0, 2.0]  # nothing merged while it fits
