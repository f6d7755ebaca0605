"""Arrival times of one process within one phase: pure and seeded.

Each spec says how its times are drawn (workload/arrival_specs.py): exactly
(constant), from independent gaps (poisson, gamma), or from a rate curve
(on/off, diurnal, ramp, steps): a non-homogeneous Poisson process drawn by
thinning (Lewis & Shedler), candidates at the peak rate, each kept with
probability rate(t) / peak.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from loadkit.workload.arrival_specs import ArrivalSpec


def arrival_times(spec: ArrivalSpec, duration: float, rng: random.Random) -> Iterator[float]:
    """Offsets in [0, duration) in order (not for `closed` or `trace`)."""
    if (exact := spec.exact_times(duration)) is not None:
        return exact
    if (gap := spec.gaps(rng)) is not None:
        return _renewal(gap, duration)
    return _thinned(lambda t: spec.rate_at(t, duration), spec.peak(duration), duration, rng)


def mean_rate(spec: ArrivalSpec, duration: float) -> float | None:
    """The declared average rate over a phase, computed exactly; None where
    only a run can tell (closed loops, traces)."""
    return spec.mean_rate(duration)


def _renewal(gap: Callable[[], float], duration: float) -> Iterator[float]:
    t = gap()
    while t < duration:
        yield t
        t += gap()


def _thinned(rate: Callable[[float], float], peak: float, duration: float,
             rng: random.Random) -> Iterator[float]:
    if peak <= 0:
        return
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration:
            return
        if rng.random() * peak < rate(t):
            yield t
