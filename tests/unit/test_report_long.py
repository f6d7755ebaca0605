"""A 24-hour, 1-s-interval run: its report costs about what a short run's
report costs, stays small, and a single 1-s spike survives decimation
(issue 7's bounds)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import numpy as np
import pytest

from loadkit.outputs.html import render_html
from loadkit.result import RunResult, parse_run
from support.synthetic_run import SPIKE_AT, SPIKE_MS, synthetic_day

MAX_BYTES = 5_000_000
# Rendering a day may cost at most this many times rendering ten minutes of
# the same run, both timed here, on this machine, whatever its speed. The day
# has 144 times the intervals, but the charts draw envelopes of at most
# DEFAULT_POINTS points, so little beyond numpy's work grows with the run:
# 1.3-1.6x on the 2-vCPU CI VM (1.4 s against 1.0 s). What it catches: work
# per interval in Python or matplotlib (an artist per interval, a quadratic
# pass), as the 10-s bound it replaces did on this machine only.
MAX_COST_RATIO = 5.0


def timed(run: RunResult) -> tuple[float, str]:
    t0 = time.perf_counter()
    html = render_html(run)
    return time.perf_counter() - t0, html


@pytest.fixture(scope="module")
def day() -> dict[str, Any]:
    return json.loads(json.dumps(synthetic_day()))  # exactly what run.json reads back as


@pytest.fixture(scope="module")
def day_run(day: dict[str, Any]) -> RunResult:
    return parse_run(day)  # module scope: built before settled_gc freezes the heap


@pytest.mark.slow
def test_a_day_renders_like_ten_minutes_and_small_and_keeps_its_spike(day_run: RunResult,
                                                                     settled_gc: None) -> None:
    # settled_gc: the day's ~10^6 objects would otherwise be traversed by
    # every full collection during its rendering and not during the
    # reference's, which would time the collector, not the report.
    ten_minutes = parse_run(json.loads(json.dumps(synthetic_day(intervals=600))))
    timed(ten_minutes)  # import matplotlib and fill its caches before timing
    reference = min(timed(ten_minutes)[0] for _ in range(2))
    elapsed, html = timed(day_run)
    size = len(html.encode("utf-8"))
    print(f"24-h report: {elapsed:.2f} s, 10-min report: {reference:.2f} s, "
          f"{size / 1e6:.2f} MB")
    assert elapsed <= MAX_COST_RATIO * reference, (
        f"a day took {elapsed:.2f} s, {elapsed / reference:.1f}x ten minutes' {reference:.2f} s")
    assert size < MAX_BYTES, f"report is {size / 1e6:.1f} MB"
    assert "could not be drawn" not in html
    # The spike's interval is one of 86,400, yet the p99 and max envelopes keep it:
    # the latency chart's y axis must reach it (log scale: a 10^3 or higher tick).
    latency_svg = html[html.index('id="chart-latency-time"'):html.index('id="throughput"')]
    ticks = [float(x) for x in re.findall(r">(\d+(?:\.\d+)?)</text>", latency_svg)]
    assert max(ticks) >= 1000


def test_the_spike_survives_decimation_of_the_day(day: dict[str, Any]) -> None:
    from loadkit.outputs.decimate import DEFAULT_POINTS, as_array, decimate

    t = as_array(iv["start_s"] for iv in day["timeseries"])
    env = decimate(t, as_array(iv["latency_p99_ms"] for iv in day["timeseries"]))
    assert len(env) <= DEFAULT_POINTS
    assert env.high.max() == SPIKE_MS
    spike_bucket = int(np.argmax(env.high))
    assert env.t[spike_bucket] - 60 <= SPIKE_AT <= env.t[spike_bucket] + 60
