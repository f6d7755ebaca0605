"""Arrival times of one process within one phase: pure and seeded.

Time-varying rates (on/off, diurnal, ramp, steps) are non-homogeneous Poisson
processes, drawn by thinning (Lewis & Shedler): candidates at the peak rate,
each kept with probability rate(t) / peak.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator

from loadkit.workload.arrival_specs import (
    ArrivalSpec,
    Constant,
    Diurnal,
    Gamma,
    OnOff,
    Poisson,
    Ramp,
    Steps,
)


def arrival_times(spec: ArrivalSpec, duration: float, rng: random.Random) -> Iterator[float]:
    """Offsets in [0, duration) in order (not for `closed` or `trace`)."""
    if isinstance(spec, Constant):
        return (n / spec.rate for n in range(math.ceil(duration * spec.rate - 1e-9)))
    if isinstance(spec, Poisson):
        return _renewal(lambda: rng.expovariate(spec.rate), duration)
    if isinstance(spec, Gamma):
        shape = 1.0 / spec.cv**2  # mean gap shape*scale = 1/rate
        return _renewal(lambda: rng.gammavariate(shape, 1.0 / (spec.rate * shape)), duration)
    rate, peak = rate_function(spec, duration)
    return _thinned(rate, peak, duration, rng)


def mean_rate(spec: ArrivalSpec, duration: float) -> float | None:
    """The declared average rate over a phase, computed exactly; None where
    only a run can tell (closed loops, traces)."""
    if isinstance(spec, (Constant, Poisson, Gamma)):
        return spec.rate
    if isinstance(spec, OnOff):
        active = max(0.0, duration - spec.offset)
        periods, rest = divmod(active, spec.period)
        on = periods * spec.spike_length + min(rest, spec.spike_length)
        return (spec.spike_rate * on + spec.base_rate * (duration - on)) / duration
    if isinstance(spec, Ramp):
        return (spec.from_rate + spec.to_rate) / 2.0
    if isinstance(spec, Steps):
        total, t = 0.0, 0.0
        for step in spec.steps:
            span = min(step.duration, duration - t)
            if span <= 0:
                break
            total, t = total + step.rate * span, t + span
        return (total + spec.steps[-1].rate * max(0.0, duration - t)) / duration
    if isinstance(spec, Diurnal):
        days, rest = divmod(duration, spec.day)
        whole_day = sum(spec.rates) / len(spec.rates)  # trapezoids around the circle
        rate, _ = rate_function(spec, duration)
        n = 2000  # the last partial day: midpoint rule on a fine grid
        partial = sum(rate((i + 0.5) * rest / n) for i in range(n)) / n if rest else 0.0
        return (whole_day * days * spec.day + partial * rest) / duration
    return None


def rate_function(spec: ArrivalSpec, duration: float) -> tuple[Callable[[float], float], float]:
    """(rate at time t, its maximum) of a time-varying process."""
    if isinstance(spec, OnOff):
        def onoff(t: float) -> float:
            on = t >= spec.offset and (t - spec.offset) % spec.period < spec.spike_length
            return spec.spike_rate if on else spec.base_rate
        return onoff, max(spec.spike_rate, spec.base_rate)
    if isinstance(spec, Diurnal):
        n = len(spec.rates)

        def diurnal(t: float) -> float:
            pos = (t % spec.day) / spec.day * n
            i = int(pos)
            a, b = spec.rates[i % n], spec.rates[(i + 1) % n]
            return a + (b - a) * (pos - i)
        return diurnal, max(spec.rates)
    if isinstance(spec, Ramp):
        return (lambda t: spec.from_rate + (spec.to_rate - spec.from_rate) * t / duration,
                max(spec.from_rate, spec.to_rate))
    if isinstance(spec, Steps):
        ends = list(_cumulative(s.duration for s in spec.steps))

        def steps(t: float) -> float:
            for end, step in zip(ends, spec.steps):
                if t < end:
                    return step.rate
            return spec.steps[-1].rate
        return steps, max(s.rate for s in spec.steps)
    rate = spec.rate  # type: ignore[union-attr]  # the remaining specs all have one rate
    return (lambda t: rate), rate


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


def _cumulative(values: Iterable[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total
