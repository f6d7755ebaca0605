"""Open-loop arrival schedules: pure, seeded, lazy.

The same workload and seed give the same schedule, bit for bit: every tenant
draws from its own `random.Random` seeded by (seed, tenant name), so adding a
tenant does not shift another tenant's arrivals.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import NamedTuple

from loadkit.workload.models import Arrival, Workload


class Slot(NamedTuple):
    """One scheduled request: when (s from start), for whom, what."""

    at: float
    tenant: int
    scenario: int


def arrival_times(arrival: Arrival, horizon: float, rng: random.Random) -> Iterator[float]:
    """Offsets in [0, horizon) of one process, in order."""
    if arrival.process == "constant":
        gap = 1.0 / arrival.rate
        n = 0
        while (t := n * gap) < horizon:
            yield t
            n += 1
        return
    t = rng.expovariate(arrival.rate)  # poisson: exponential gaps
    while t < horizon:
        yield t
        t += rng.expovariate(arrival.rate)


def schedule(workload: Workload) -> Iterator[Slot]:
    """Every request of the run (warm-up included) in time order."""
    horizon = workload.warmup + workload.duration
    names = [s.name for s in workload.scenarios]
    streams = []
    for ti, tenant in enumerate(workload.all_tenants):
        rng = random.Random(f"{workload.seed}:{tenant.name}")
        allowed = tenant.scenarios or names
        idx = [names.index(n) for n in allowed]
        weights = [workload.scenarios[i].weight for i in idx]
        streams.append(_tag(arrival_times(tenant.arrival, horizon, rng), ti, idx, weights, rng))
    return heapq.merge(*streams)


def _tag(times: Iterator[float], tenant: int, idx: list[int], weights: list[float],
         rng: random.Random) -> Iterator[Slot]:
    for t in times:
        pick = idx[0] if len(idx) == 1 else rng.choices(idx, weights)[0]
        yield Slot(t, tenant, pick)
