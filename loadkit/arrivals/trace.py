"""Request traces replayed by the schedule: windowed, sped up, thinned or
multiplied (the formats and their reading: workload/traces.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator

from loadkit.workload.arrival_specs import Trace
from loadkit.workload.traces import TraceRow


def replay(rows: list[TraceRow], spec: Trace, rng: random.Random
           ) -> Iterator[tuple[float, TraceRow]]:
    """(offset in s from the window's start, row), scaled, windowed, thinned."""
    t0, end = spec.bounds(rows[0].time)
    whole, frac = divmod(spec.rate_scale, 1.0)
    for row in rows:
        if row.time < t0:
            continue
        if row.time >= end:
            return
        offset = (row.time - t0) / spec.speedup
        if row.script and spec.speedup != 1.0:  # a session's later turns keep pace
            row = row._replace(script=tuple((o / spec.speedup, p, out)
                                            for o, p, out in row.script))
        for _ in range(int(whole) + (rng.random() < frac)):
            yield offset, row
